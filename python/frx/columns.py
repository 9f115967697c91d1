"""Turn whatever a caller has (a list of str, numpy, pyarrow) into Arrow string buffers.

The Rust kernels read a string column as three buffers: UTF-8 bytes, offsets and an optional
validity mask. For pyarrow input these are Arrow's own buffers, viewed through numpy without a
copy; other inputs are converted to a pyarrow array once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from .errors import FrxError

__all__ = ["Buffers", "to_string_array", "buffers", "to_int64", "put_columns", "pick_column"]


class Buffers(NamedTuple):
    """Arguments of every text kernel in :mod:`frx._core`: ``(data, offsets, valid)``."""

    data: np.ndarray
    offsets: np.ndarray
    valid: np.ndarray | None


def _fix_surrogates(value: str) -> str:
    # Lone surrogates (e.g. from bad JSON or os.fsdecode) cannot be UTF-8; they become U+FFFD.
    return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _from_python(values: Iterable[Any], what: str) -> pa.Array:
    rows = values if isinstance(values, list) else list(values)
    try:
        return pa.array(rows, type=pa.large_string())
    except UnicodeEncodeError:
        rows = [_fix_surrogates(v) if isinstance(v, str) else v for v in rows]
        return pa.array(rows, type=pa.large_string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        for i, v in enumerate(rows):
            if v is not None and not isinstance(v, str):
                raise FrxError(
                    f"{what}: row {i} is {type(v).__name__}, expected str or None"
                ) from None
        raise


def to_string_array(values: Any, what: str = "texts") -> pa.Array:
    """A single, contiguous pyarrow ``string``/``large_string`` array for ``values``.

    Accepts a list or other iterable of ``str``/``None``, a numpy array of str or object, or a
    pyarrow ``Array``/``ChunkedArray`` of strings (no copy for a single chunk).
    """
    if isinstance(values, (str, bytes)):
        raise FrxError(f"{what}: expected a sequence of strings, got a single {type(values).__name__}")
    if isinstance(values, pa.ChunkedArray):
        if values.num_chunks == 1:
            values = values.chunk(0)
        elif values.num_chunks == 0:
            values = pa.array([], type=values.type)
        else:
            values = values.combine_chunks()
    if isinstance(values, pa.Array):
        t = values.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return values
        if pa.types.is_null(t) or pa.types.is_string_view(t):
            return values.cast(pa.large_string())
        raise FrxError(f"{what}: expected a string column, got {t}")
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise FrxError(f"{what}: expected a 1-d array, got shape {values.shape}")
        if values.dtype.kind == "U":
            return pa.array(values, type=pa.large_string())
        if values.dtype.kind != "O":
            raise FrxError(f"{what}: expected strings, got a numpy {values.dtype} array")
        return _from_python(values.tolist(), what)
    return _from_python(values, what)


def buffers(values: Any, what: str = "texts") -> Buffers:
    """The ``(data, offsets, valid)`` buffers of ``values`` (see :func:`to_string_array`)."""
    arr = to_string_array(values, what)
    _, off_buf, data_buf = arr.buffers()
    off_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    n = len(arr)
    if off_buf is None:
        offsets = np.zeros(n + 1, dtype=off_type)
    else:
        offsets = np.frombuffer(off_buf, dtype=off_type)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.empty(0, np.uint8)
    valid = None
    if arr.null_count:
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
    return Buffers(data, offsets, valid)


def to_int64(values: Any, what: str) -> np.ndarray:
    """A contiguous int64 numpy array from a list, numpy or pyarrow integer array (no nulls)."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if values.null_count:
            raise FrxError(f"{what}: has {values.null_count} null values")
        values = values.to_numpy(zero_copy_only=False)
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise FrxError(f"{what}: expected a 1-d array, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise FrxError(f"{what}: expected integers, got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def put_columns(table: pa.Table, columns: dict[str, Any]) -> pa.Table:
    """``table`` with each of ``columns`` appended, replacing a column of the same name."""
    for name, values in columns.items():
        if name in table.column_names:
            table = table.drop_columns([name])
        table = table.append_column(name, values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values))
    return table


def pick_column(names: Any, given: str | None, default: str | None, where: Any) -> str | None:
    """The column to read for an optional role: the one the user named, which must exist (a
    clear error otherwise, never a silent fallback); else ``default`` if the input has it;
    else None."""
    names = list(names)
    if given is not None:
        if given not in names:
            raise FrxError(f"column {given!r} not found in {where}; columns are {', '.join(names) or '(none)'}")
        return given
    return default if default is not None and default in names else None
