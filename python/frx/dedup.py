"""Exact and near-duplicate removal for text columns, in Rust.

* :func:`normalize` — the normalisation every dedup step compares on: NFKC, Unicode case
  folding, curly quotes to straight, whitespace runs to one space, trimmed.
* :func:`exact` — keep mask, first occurrence of each normalised text kept.
* :func:`near` — MinHash/LSH near-duplicate clusters (word n-gram shingles, union-find).
* :class:`NearIndex` — the same, grown batch by batch: dedup across shards, or check a set of
  prompts against a reference set ("which of my prompts are near-copies of XSTest?").
* :func:`dedup_table` — all of it on a :class:`pyarrow.Table`, as ``frx dedup`` runs it.

Null rows are never duplicates of anything and are always kept. Texts with no word
characters (empty, punctuation only) are exact-duplicates of each other but near-duplicates of
nothing.

Example::

    >>> import frx.dedup
    >>> frx.dedup.exact(["Hello  world", "hello world", "Bye"]).tolist()
    [True, False, True]
    >>> frx.dedup.near(["the cat sat on the mat today", "The cat sat on the mat today!",
    ...                 "a dog"]).tolist()
    [0, 0, 2]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import _core
from .columns import buffers, to_string_array
from .errors import FrxError

__all__ = [
    "normalize", "exact", "exact_groups", "ExactIndex", "near", "NearIndex", "dedup_table", "dedup_file", "decide",
    "Decision", "DedupSummary",
]


def normalize(texts: Any) -> list[str | None]:
    """The normalised form of each text (``None`` stays ``None``)."""
    return _core.normalize(*buffers(texts))


def exact_groups(texts: Any) -> np.ndarray:
    """For each row, the index of the first row with the same normalised text (int64)."""
    return _core.exact_dedup(*buffers(texts))[1]


def exact(texts: Any) -> np.ndarray:
    """Keep mask (bool): ``True`` for the first row of each group of equal normalised texts."""
    return _core.exact_dedup(*buffers(texts))[0]


class ExactIndex:
    """Exact dedup across batches (shards): remembers the key of every row it has seen.

    ``add(texts)`` returns, per new row, the global id of the first row with the same
    normalised text; keep row ``i`` (global id) iff the answer equals ``i``. Memory: about 32
    bytes per distinct text.
    """

    def __init__(self) -> None:
        self._index = _core.ExactIndex()

    def __len__(self) -> int:
        return len(self._index)

    def add(self, texts: Any) -> np.ndarray:
        return self._index.add(*buffers(texts))


def _check_params(threshold: float, num_perm: int, ngram: int, seed: int) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise FrxError(f"threshold must be a number in (0, 1], got {threshold!r}")
    if not 0.0 < float(threshold) <= 1.0:
        raise FrxError(f"threshold must be in (0, 1], got {threshold}")
    if not 1 <= int(num_perm) <= 1024:
        raise FrxError(f"num_perm must be between 1 and 1024, got {num_perm}")
    if not 1 <= int(ngram) <= 16:
        raise FrxError(f"ngram must be between 1 and 16, got {ngram}")
    if not 0 <= int(seed) < 2**64:
        raise FrxError(f"seed must be a non-negative 64-bit integer, got {seed}")


class NearIndex:
    """An incremental MinHash-LSH index with union-find clusters.

    Rows get ids in the order they are added, across calls. A row's cluster id is the smallest
    id in its cluster, so "keep row i iff ``ids[i] == i``" keeps the first of each cluster.
    Two rows are joined when their estimated Jaccard similarity (share of equal MinHash values)
    over word n-gram shingles is at least ``threshold``; clusters are the transitive closure.
    Bands and rows per band are chosen from ``threshold`` and ``num_perm``.

    Memory: about ``4 * num_perm + 28 * bands`` bytes per row (≈ 1.1 KB at the defaults).
    """

    def __init__(self, threshold: float = 0.7, num_perm: int = 128, ngram: int = 3, seed: int = 0):
        _check_params(threshold, num_perm, ngram, seed)
        self._index = _core.NearIndex(float(threshold), int(num_perm), int(ngram), int(seed))

    threshold = property(lambda self: self._index.threshold, doc="Jaccard threshold.")
    num_perm = property(lambda self: self._index.num_perm, doc="MinHash permutations.")
    ngram = property(lambda self: self._index.ngram, doc="Words per shingle.")
    seed = property(lambda self: self._index.seed, doc="Seed of the hash functions.")
    bands = property(lambda self: self._index.bands, doc="LSH bands.")
    rows = property(lambda self: self._index.rows, doc="MinHash values per band.")

    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        return (
            f"NearIndex(threshold={self.threshold}, num_perm={self.num_perm}, ngram={self.ngram},"
            f" seed={self.seed}, bands={self.bands}, rows={self.rows}, size={len(self)})"
        )

    def add(self, texts: Any) -> np.ndarray:
        """Index ``texts``; return, per new row, its cluster id at the moment it was added (int64).

        A row is a near-duplicate of an earlier row iff its answer differs from its own id. The
        answer for a row depends only on the rows added before it, so it is the same however the
        rows are split into batches (shards). A later row can still bridge two earlier clusters:
        :meth:`clusters` gives that final view, which :func:`near` returns.
        """
        return self._index.add(*buffers(texts))

    def query(self, texts: Any, return_similarity: bool = False):
        """For each text, the id of the most similar indexed row (estimated Jaccard >=
        threshold), or -1. The index is not changed. With ``return_similarity`` also the
        estimated similarities (float64, 0.0 where there is no match)."""
        ids, sims = self._index.query(*buffers(texts))
        return (ids, sims) if return_similarity else ids

    def clusters(self) -> np.ndarray:
        """Cluster id of every row added so far."""
        return self._index.clusters()

    def signatures(self, texts: Any) -> np.ndarray:
        """MinHash signatures, shape ``(len(texts), num_perm)``, uint32 (not indexed)."""
        return self._index.signatures(*buffers(texts))


def near(
    texts: Any, threshold: float = 0.7, num_perm: int = 128, ngram: int = 3, seed: int = 0
) -> np.ndarray:
    """Near-duplicate cluster id of each row: the index of its cluster's first row (int64).

    A row is kept iff its id equals its own index. Clusters are the transitive closure of the
    verified pairs over all rows. See :class:`NearIndex` for the method.
    """
    index = NearIndex(threshold, num_perm, ngram, seed)
    index.add(texts)
    return index.clusters()


@dataclass
class DedupSummary:
    rows_in: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    reference_hits: int = 0
    rows_out: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {
            "rows_in": self.rows_in,
            "exact_duplicates": self.exact_duplicates,
            "near_duplicates": self.near_duplicates,
            "reference_hits": self.reference_hits,
            "rows_out": self.rows_out,
        }


@dataclass
class Decision:
    """Per input row: why it is dropped (if it is) and which row it repeats."""

    exact_dup: np.ndarray  # bool
    near_dup: np.ndarray  # bool
    ref_hit: np.ndarray  # bool: copies a reference row (exactly or nearly)
    dup_of: np.ndarray  # int64: the input row it repeats, or the reference row it copies

    @property
    def drop(self) -> np.ndarray:
        return self.exact_dup | self.near_dup | self.ref_hit

    def summary(self) -> DedupSummary:
        n = len(self.drop)
        return DedupSummary(rows_in=n, exact_duplicates=int(self.exact_dup.sum()), near_duplicates=int(self.near_dup.sum()),
                            reference_hits=int(self.ref_hit.sum()), rows_out=int(n - self.drop.sum()))

    def report(self, lo: int, texts: pa.Array, column: str, ids: Any = None, id_column: str | None = None) -> pa.Table:
        """The report rows of input rows ``lo …`` (``texts``: their texts; ``ids``: the id column
        of the whole input, for ``duplicate_of_id``)."""
        hi = lo + len(texts)
        local = np.flatnonzero(self.drop[lo:hi])
        rows = lo + local
        reason = np.where(self.exact_dup[rows], "exact", np.where(self.near_dup[rows], "near", "reference"))
        out = pa.table({"row": pa.array(rows, type=pa.int64()), "reason": pa.array(reason.tolist(), type=pa.string()),
                        "duplicate_of": pa.array(self.dup_of[rows], type=pa.int64()),
                        column: texts.take(pa.array(local, type=pa.int64()))})
        if id_column is not None:
            of = pa.array(np.where(self.ref_hit[rows], 0, self.dup_of[rows]), type=pa.int64())
            out = out.append_column(id_column, ids.take(pa.array(rows, type=pa.int64())))
            out = out.append_column("duplicate_of_id", pc.if_else(pa.array(self.ref_hit[rows]), pa.scalar(None, ids.type), ids.take(of)))
        return out


def decide(chunks: Any, *, near_threshold: float | None = 0.7, num_perm: int = 128, ngram: int = 3, seed: int = 0,
           reference: Any = None) -> Decision:
    """Which rows of a text column are duplicates, reading it once, chunk by chunk (``chunks``:
    an iterable of string arrays, in row order): memory holds the indexes, not the texts.

    Exact: equal normalised text to an earlier row, or to a reference row. Near: the rows left
    are added to one MinHash-LSH index after the reference rows; a row is dropped when its final
    cluster (the transitive closure over every row) starts at an earlier row — so the result
    does not depend on how the column is cut into chunks."""
    ref = None if reference is None else to_string_array(reference, what="reference")
    r = 0 if ref is None else len(ref)
    exact_index = ExactIndex()
    near_index = None if near_threshold is None else NearIndex(near_threshold, num_perm, ngram, seed)
    if ref is not None:
        exact_index.add(ref)
        if near_index is not None:
            near_index.add(ref)
    groups, survivors, n = [], [], 0
    for chunk in chunks:
        texts = to_string_array(chunk, what="texts")
        g = exact_index.add(texts).astype(np.int64)
        own = np.arange(r + n, r + n + len(texts))
        groups.append(g)
        keep = (g >= r) & (g == own)  # neither a reference copy nor an exact duplicate
        if near_index is not None and keep.any():
            near_index.add(texts.filter(pa.array(keep)))
        survivors.append(n + np.flatnonzero(keep))
        n += len(texts)
    g = np.concatenate(groups) if groups else np.zeros(0, np.int64)
    ref_hit = g < r
    exact_dup = ~ref_hit & (g != np.arange(r, r + n))
    dup_of = np.where(ref_hit, g, g - r)
    near_dup = np.zeros(n, dtype=bool)
    if near_index is not None:
        surv = np.concatenate(survivors) if survivors else np.zeros(0, np.int64)
        ids = near_index.clusters()[r:]
        hit = ids < r
        dropped = ~hit & (ids != np.arange(r, r + len(surv)))
        ref_hit[surv[hit]] = True
        dup_of[surv[hit]] = ids[hit]
        near_dup[surv[dropped]] = True
        dup_of[surv[dropped]] = surv[ids[dropped] - r]
    return Decision(exact_dup, near_dup, ref_hit, dup_of)


def dedup_table(
    table: pa.Table,
    column: str,
    *,
    near_threshold: float | None = 0.7,
    num_perm: int = 128,
    ngram: int = 3,
    seed: int = 0,
    reference: Any = None,
    id_column: str | None = None,
) -> tuple[pa.Table, pa.Table, DedupSummary]:
    """Remove exact and near duplicates of ``table[column]``, and rows matching ``reference``.

    Returns ``(kept, report, summary)``. ``kept`` holds the first row of each cluster, in input
    order. ``report`` has one row per dropped row: ``row`` (its input index), ``reason``
    (``exact``, ``near`` or ``reference``), ``duplicate_of`` (the input row it repeats, or the
    reference row it copies) and the text; with ``id_column``, also the dropped row's id (under
    that column's name) and ``duplicate_of_id``, the id of the input row it repeats (null for a
    reference hit). ``near_threshold=None`` does exact dedup only. :func:`dedup_file` does the
    same on a file, streamed.
    """
    if column not in table.column_names:
        raise FrxError(f"column {column!r} not found; columns are {', '.join(table.column_names)}")
    if id_column is not None and id_column not in table.column_names:
        raise FrxError(f"id column {id_column!r} not found; columns are {', '.join(table.column_names)}")
    texts = to_string_array(table.column(column), what=f"column {column!r}")
    dec = decide([texts], near_threshold=near_threshold, num_perm=num_perm, ngram=ngram, seed=seed, reference=reference)
    kept = table.filter(pa.array(~dec.drop))
    report = dec.report(0, texts, column, table.column(id_column) if id_column else None, id_column)
    return kept, report, dec.summary()


def dedup_file(path: Any, out: Any, column: str, *, report: Any = None, near_threshold: float | None = 0.7, num_perm: int = 128,
               ngram: int = 3, seed: int = 0, reference: Any = None, id_column: str | None = None,
               batch_rows: int = 65536) -> DedupSummary:
    """:func:`dedup_table` on a file, streamed: one pass reads only ``column`` (and the id
    column) to decide, a second writes the kept rows to ``out`` (and the dropped ones to
    ``report``) batch by batch. Memory: the indexes (~1.1 KB per row for near dedup) and the id
    column, never the whole file. Outputs are written atomically; on error neither appears."""
    from .io import ParquetSink, iter_batches, schema_of

    first = [column] + ([id_column] if id_column else [])
    ids: list[pa.Array] = []

    def texts():
        for batch in iter_batches(path, batch_rows=batch_rows, columns=first):
            if id_column:
                ids.append(batch.column(id_column))
            yield batch.column(column)

    dec = decide(texts(), near_threshold=near_threshold, num_perm=num_perm, ngram=ngram, seed=seed, reference=reference)
    all_ids = pa.chunked_array(ids).combine_chunks() if id_column and ids else None
    sinks = [ParquetSink(out)] + ([ParquetSink(report)] if report is not None else [])
    try:
        lo, schema = 0, None
        for batch in iter_batches(path, batch_rows=batch_rows):
            t = pa.Table.from_batches([batch])
            schema = t.schema
            m = t.num_rows
            sinks[0].write(t.filter(pa.array(~dec.drop[lo : lo + m])))
            if report is not None:
                txt = to_string_array(t.column(column), what=f"column {column!r}")
                sinks[1].write(dec.report(lo, txt, column, all_ids, id_column))
            lo += m
        if lo != len(dec.drop):
            raise FrxError(f"{path}: read {lo} rows, then {len(dec.drop)} (file changed while reading?)")
        # An input without rows still gives files with the right columns.
        empty = schema_of(path) if schema is None else None
        sinks[0].close(empty)
        if report is not None:
            fields = [("row", pa.int64()), ("reason", pa.string()), ("duplicate_of", pa.int64()), (column, pa.string())]
            if empty is not None and id_column:
                t = empty.field(id_column).type
                fields += [(id_column, t), ("duplicate_of_id", t)]
            sinks[1].close(pa.schema(fields) if empty is not None else None)
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise
    return dec.summary()
