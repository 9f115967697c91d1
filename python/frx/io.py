"""Reading and writing tables: Parquet, JSONL and CSV in; Parquet (zstd) out, atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from .errors import FrxError

__all__ = ["FORMATS", "detect_format", "read_table", "write_parquet", "check_output"]

FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
}


def detect_format(path: str | Path) -> str:
    """``parquet``, ``jsonl`` or ``csv`` from the file suffix."""
    suffix = Path(path).suffix.lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise FrxError(f"unknown format {suffix or '(no suffix)'!r} for {path}; use one of {known}") from None


def read_table(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """Read a whole Parquet, JSONL or CSV file into a table."""
    p = Path(path)
    fmt = detect_format(p)
    if not p.exists():
        raise FrxError(f"input not found: {p}")
    if p.is_dir():
        raise FrxError(f"input is a directory, expected a file: {p}")
    try:
        if fmt == "parquet":
            table = pq.read_table(p, columns=columns)
        elif fmt == "jsonl":
            table = pajson.read_json(p)
        else:
            table = pacsv.read_csv(p)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FrxError(f"cannot read {p} as {fmt}: {first}") from None
    if columns is not None and fmt != "parquet":
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise FrxError(f"column {missing[0]!r} not found in {p}")
        table = table.select(columns)
    return table


def check_output(
    path: str | Path, *, overwrite: bool, inputs: tuple[str | Path, ...] = (), suffixes: tuple[str, ...] = (".parquet", ".pq")
) -> Path:
    """Refuse an output path that is an input or already exists (unless ``overwrite``)."""
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        raise FrxError(f"output must be a {suffixes[0]} file, got {out}")
    for i in inputs:
        if i is not None and out.resolve() == Path(i).resolve():
            raise FrxError(f"output {out} is the same file as input {i}")
    if out.exists() and not overwrite:
        raise FrxError(f"output {out} already exists (use --overwrite to replace it)")
    if out.exists() and out.is_dir():
        raise FrxError(f"output {out} is a directory")
    return out


def write_parquet(table: pa.Table, path: str | Path) -> None:
    """Write ``table`` as zstd Parquet to a temporary file beside ``path``, then rename it, so a
    crash never leaves a half-written file under the final name."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
