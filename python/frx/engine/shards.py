"""Input discovery and fixed-size shards.

A shard is a run of at most ``shard_rows`` consecutive rows of one input file. Parquet files are
read lazily (only the row groups a shard covers); JSONL and CSV files are parsed whole, once,
while their shards are processed.
"""

from __future__ import annotations

import glob as globlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import FrxError
from ..io import FORMATS, detect_format, read_table

__all__ = ["Shard", "discover", "plan", "ShardReader"]


@dataclass(frozen=True)
class Shard:
    index: int
    path: str
    start: int  # first row within the file
    stop: int  # one past the last row within the file
    offset: int  # position of the first row in the whole input

    @property
    def rows(self) -> int:
        return self.stop - self.start


def discover(path: str, base: Path) -> list[Path]:
    """Input files for ``path`` (a file, a directory or a glob), relative to ``base``, sorted."""
    p = Path(path) if Path(path).is_absolute() else base / path
    if any(ch in path for ch in "*?["):
        files = sorted(Path(f) for f in globlib.glob(str(p), recursive=True) if Path(f).is_file())
        if not files:
            raise FrxError(f"input glob matches no files: {p}")
    elif p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in FORMATS)
        if not files:
            raise FrxError(f"input directory has no Parquet, JSONL or CSV files: {p}")
    elif p.exists():
        files = [p]
    else:
        raise FrxError(f"input not found: {p}")
    for f in files:
        detect_format(f)
    return files


def _file_rows_and_schema(f: Path) -> tuple[int, pa.Schema]:
    if detect_format(f) == "parquet":
        try:
            meta = pq.ParquetFile(f).metadata
            return meta.num_rows, meta.schema.to_arrow_schema()
        except (pa.ArrowInvalid, OSError) as e:
            raise FrxError(f"cannot read {f} as parquet: {str(e).splitlines()[0]}") from None
    t = read_table(f)
    return t.num_rows, t.schema


def plan(files: list[Path], shard_rows: int) -> tuple[list[Shard], pa.Schema]:
    """Shards over all files, and the common schema (every file must have the same one)."""
    shards: list[Shard] = []
    schema: pa.Schema | None = None
    first: Path | None = None
    offset = 0
    for f in files:
        rows, s = _file_rows_and_schema(f)
        if schema is None:
            schema, first = s, f
        elif not s.equals(schema):
            want = {x.name: x.type for x in schema}
            have = {x.name: x.type for x in s}
            diff = sorted(set(want) ^ set(have)) or [n for n in want if want[n] != have.get(n)]
            raise FrxError(f"{f}: schema differs from {first} (column {diff[0]!r})")
        for start in range(0, rows, shard_rows):
            stop = min(rows, start + shard_rows)
            shards.append(Shard(len(shards), str(f), start, stop, offset + start))
        offset += rows
    if schema is None or offset == 0:
        raise FrxError(f"input has no rows: {', '.join(map(str, files)) or '(no files)'}")
    return shards, schema


class ShardReader:
    """Reads shards; keeps the last JSONL/CSV file parsed so its shards share one parse."""

    def __init__(self) -> None:
        self._cached: tuple[str, pa.Table] | None = None

    def read(self, shard: Shard) -> pa.Table:
        f = Path(shard.path)
        try:
            if detect_format(f) == "parquet":
                table = self._parquet_rows(f, shard.start, shard.stop)
            else:
                if self._cached is None or self._cached[0] != shard.path:
                    self._cached = (shard.path, read_table(f))
                table = self._cached[1].slice(shard.start, shard.rows)
        except (pa.ArrowInvalid, OSError) as e:
            raise FrxError(f"cannot read {f} (shard {shard.index}): {str(e).splitlines()[0]}") from None
        if table.num_rows != shard.rows:
            raise FrxError(f"{f}: expected {shard.rows} rows for shard {shard.index}, read {table.num_rows} (file changed?)")
        return table

    @staticmethod
    def _parquet_rows(f: Path, start: int, stop: int) -> pa.Table:
        pf = pq.ParquetFile(f)
        groups, first_row, row = [], None, 0
        for g in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            if row + n > start and row < stop:
                groups.append(g)
                first_row = row if first_row is None else first_row
            row += n
        if not groups:
            return pf.schema_arrow.empty_table()
        t = pf.read_row_groups(groups)
        return t.slice(start - first_row, stop - start)
