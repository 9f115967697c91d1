"""Input discovery and fixed-size shards.

A shard is a run of at most ``shard_rows`` consecutive rows of one input file. Every file is
read as a stream, whatever its layout (a Parquet file with one huge row group or thousands of
tiny ones, a multi-GB JSONL or CSV): consecutive shards continue one open stream, so memory is
bounded by the shard and each byte is decoded once.
"""

from __future__ import annotations

import glob as globlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import FrxError
from ..io import FORMATS, detect_format, iter_batches, schema_of, stream_schema_and_rows

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


def plan(files: list[Path], shard_rows: int) -> tuple[list[Shard], pa.Schema]:
    """Shards over all files, and the common schema (every file must have the same one)."""
    shards: list[Shard] = []
    schema: pa.Schema | None = None
    first: Path | None = None
    offset = 0
    for f in files:
        s, rows = stream_schema_and_rows(f)
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
    """Reads shards. Shards of a file read in order continue one stream (the usual case: the
    engine reads them in order); a shard out of order (a resumed run, a worker process taking
    every n-th shard) opens the file again at that row: whole Parquet row groups before it are
    skipped unread, anything else is read forward to it."""

    #: Rows per batch read from a stream; a shard is one or more batches.
    BATCH_ROWS = 16384
    #: A shard assembled from more chunks than this is made contiguous (thousands of tiny row
    #: groups would otherwise give the kernels thousands of tiny pieces).
    MAX_CHUNKS = 16

    def __init__(self) -> None:
        self._path: str | None = None
        self._next = 0
        self._batches = iter(())
        self._left: pa.RecordBatch | None = None

    def read(self, shard: Shard) -> pa.Table:
        f = Path(shard.path)
        try:
            if shard.path != self._path or shard.start != self._next:
                self._path, self._next, self._left = shard.path, shard.start, None
                self._batches = iter_batches(f, batch_rows=self.BATCH_ROWS, start=shard.start)
            parts: list[pa.RecordBatch] = []
            need = shard.rows
            while need > 0:
                if self._left is None:
                    self._left = next(self._batches, None)
                    if self._left is None:
                        break
                take = self._left.slice(0, need)
                parts.append(take)
                need -= take.num_rows
                self._left = self._left.slice(take.num_rows) if take.num_rows < self._left.num_rows else None
            self._next = shard.stop
        except (pa.ArrowInvalid, OSError) as e:
            self._path = None
            raise FrxError(f"cannot read {f} (shard {shard.index}): {str(e).splitlines()[0]}") from None
        except FrxError:
            self._path = None
            raise
        rows = sum(b.num_rows for b in parts)
        if rows != shard.rows:
            self._path = None
            raise FrxError(f"{f}: expected {shard.rows} rows for shard {shard.index}, read {rows} (file changed?)")
        table = pa.Table.from_batches(parts) if parts else _empty(f)
        return table.combine_chunks() if len(parts) > self.MAX_CHUNKS else table


def _empty(f: Path) -> pa.Table:
    return schema_of(f).empty_table()
