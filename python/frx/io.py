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

__all__ = ["FORMATS", "ParquetSink", "detect_format", "iter_batches", "read_table", "write_parquet", "check_output"]

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
        elif fmt == "jsonl" and _is_json_array(p):
            table = _read_json_array(p)
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


def _is_json_array(p: Path) -> bool:
    """Whether a ``.json`` file holds one JSON array (of records) rather than JSON lines."""
    if p.suffix.lower() != ".json":
        return False
    with open(p, "rb") as f:
        head = f.read(4096).lstrip()
    return head.startswith(b"[")


def _read_json_array(p: Path) -> pa.Table:
    import json

    try:
        rows = json.loads(p.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FrxError(f"cannot read {p} as a JSON array: {e}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise FrxError(f"cannot read {p}: a JSON file must hold an array of objects")
    return pa.Table.from_pylist(rows)


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


def _umask() -> int:
    """The process's umask, read without changing it (Linux: /proc; elsewhere set and reset)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_beside(path: str | Path, *, directory: bool = False) -> Path:
    """A new temporary file (or directory) beside ``path``, to be renamed onto it when complete.
    Unlike :func:`tempfile.mkstemp` (always 0600) it gets the permissions any tool gives a new
    file under the user's umask (0666 or 0777 less the umask), so that teammates can read the
    outputs on shared storage exactly as with files the user writes themselves."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        os.chmod(tmp, 0o777 & ~_umask())
    else:
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
        tmp = Path(name)
    return tmp


def write_parquet(table: pa.Table, path: str | Path) -> None:
    """Write ``table`` as zstd Parquet to a temporary file beside ``path``, then rename it, so a
    crash never leaves a half-written file under the final name."""
    out = Path(path)
    tmp = temp_beside(out)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def iter_batches(path: str | Path, *, batch_rows: int = 65536, start: int = 0, columns: list[str] | None = None):
    """Record batches of at most ``batch_rows`` rows from a Parquet, JSONL or CSV file, from row
    ``start`` on, read as a stream: memory stays bounded by the batch whatever the file's layout
    (a Parquet file is read a page at a time, even when it is one huge row group; whole row
    groups before ``start`` are skipped unread; JSONL and CSV are parsed block by block). With
    ``columns``, only those (a Parquet file reads nothing else)."""

    p = Path(path)
    fmt = detect_format(p)
    if not p.exists():
        raise FrxError(f"input not found: {p}")
    if p.is_dir():
        raise FrxError(f"input is a directory, expected a file: {p}")
    try:
        if fmt == "parquet":
            reader = pq.ParquetFile(p, pre_buffer=False, buffer_size=1 << 22)
            meta, row, first = reader.metadata, 0, 0
            while first < meta.num_row_groups and row + meta.row_group(first).num_rows <= start:
                row += meta.row_group(first).num_rows
                first += 1
            batches = reader.iter_batches(batch_size=batch_rows, row_groups=range(first, meta.num_row_groups), columns=columns)
            yield from _from_row(batches, start - row)
            return
        if fmt == "jsonl" and _is_json_array(p):
            yield from _select(_from_row(iter(read_table(p).to_batches(max_chunksize=batch_rows)), start), columns)
            return
        if fmt == "jsonl":
            stream = pajson.open_json(p, read_options=pajson.ReadOptions(block_size=1 << 24))
        else:
            stream = pacsv.open_csv(p, read_options=pacsv.ReadOptions(block_size=1 << 24))

        def sliced():
            for batch in stream:
                for lo in range(0, batch.num_rows, batch_rows):
                    yield batch.slice(lo, batch_rows)

        yield from _select(_from_row(sliced(), start), columns)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FrxError(f"cannot read {p} as {fmt}: {first_line}") from None


def _select(batches, columns: list[str] | None):
    for batch in batches:
        yield batch if columns is None else batch.select(columns)


def _from_row(batches, skip: int):
    """``batches`` without their first ``skip`` rows."""
    for batch in batches:
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        yield batch.slice(skip) if skip else batch
        skip = 0


def read_columns(path: str | Path, columns: list[str]) -> pa.Table:
    """The named columns of a file (those it has; the rest are left to the caller to report),
    read as a stream: memory holds only these columns, never the whole file (a judged file's
    responses, say, are never loaded to count its labels)."""
    p = Path(path)
    if detect_format(p) == "parquet":
        names = set(schema_of(p).names)
        try:
            return pq.read_table(p, columns=[c for c in dict.fromkeys(columns) if c in names])
        except (pa.ArrowInvalid, OSError) as e:
            raise FrxError(f"cannot read {p} as parquet: {str(e).splitlines()[0]}") from None
    parts, schema = [], None
    for batch in iter_batches(p, batch_rows=1 << 16):
        keep = [c for c in dict.fromkeys(columns) if c in batch.schema.names]
        parts.append(pa.Table.from_batches([batch]).select(keep))
        schema = schema or parts[-1].schema
    if not parts:
        t = read_table(p)
        return t.select([c for c in dict.fromkeys(columns) if c in t.column_names])
    return pa.concat_tables(parts)


def schema_of(path: str | Path) -> pa.Schema:
    """A file's schema, cheaply: Parquet metadata, or the first block of a JSONL or CSV stream
    (whose later blocks must match it)."""
    p = Path(path)
    if detect_format(p) == "parquet":
        return stream_schema_and_rows(p)[0]
    first = next(iter_batches(p, batch_rows=1024), None)
    return first.schema if first is not None else read_table(p).schema


def stream_schema_and_rows(path: str | Path) -> tuple[pa.Schema, int]:
    """The schema and row count of a file, from its metadata (Parquet) or one streaming pass
    (JSONL, CSV): never the whole file in memory."""
    p = Path(path)
    if detect_format(p) == "parquet":
        try:
            meta = pq.ParquetFile(p).metadata
            return meta.schema.to_arrow_schema(), meta.num_rows
        except (pa.ArrowInvalid, OSError) as e:
            raise FrxError(f"cannot read {p} as parquet: {str(e).splitlines()[0]}") from None
    schema, rows = None, 0
    for batch in iter_batches(p, batch_rows=1 << 20):
        schema = schema or batch.schema
        rows += batch.num_rows
    if schema is None:
        schema = read_table(p).schema
    return schema, rows


class ParquetSink:
    """Writes batches to a temporary Parquet file beside ``path`` and renames it on
    :meth:`close`; on error (:meth:`abort`, or leaving a ``with`` block by an exception) the
    temporary file is removed and ``path`` is untouched."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.tmp = temp_beside(self.path)
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.tmp, table.schema, compression="zstd")
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self, schema: pa.Schema | None = None) -> None:
        if self._writer is None:  # no batch: an empty file with the schema
            pq.write_table((schema or pa.schema([])).empty_table(), self.tmp, compression="zstd")
        else:
            self._writer.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "ParquetSink":
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is not None:
            self.abort()
