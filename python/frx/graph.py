"""Graph sampling in Rust: seeded random walks, k-hop fan-out samples, connected subgraphs.

frx uses it to draw connected groups of entities from the entity graph extracted from seeds;
it works on any graph given as edge arrays. Node ids are integers ``0..num_nodes``.

Example::

    >>> from frx.graph import Graph
    >>> g = Graph.from_edges([0, 1, 2], [1, 2, 3])          # the path 0-1-2-3, undirected
    >>> g.random_walks([0], length=3, seed=1).shape
    (1, 4)
    >>> sorted(g.subgraphs([0], k=3, seed=0)[0].tolist())
    [0, 1, 2]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from . import _core
from .columns import to_int64
from .errors import FrxError

__all__ = ["Graph"]


def _seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise FrxError(f"seed must be a non-negative 64-bit integer, got {seed!r}")
    return int(seed)


class Graph:
    """A compressed sparse row graph, immutable once built."""

    def __init__(self, core: _core.Graph):
        self._g = core

    @classmethod
    def from_edges(
        cls,
        src: Any,
        dst: Any,
        weight: Any = None,
        num_nodes: int | None = None,
        *,
        edge_type: Any = None,
        directed: bool = False,
    ) -> Graph:
        """Build from edge arrays (lists, numpy or pyarrow).

        ``weight`` (non-negative floats) makes every step pick an edge with probability
        proportional to its weight; ``edge_type`` (ints, e.g. relation ids) is carried into
        :meth:`khop` results. ``num_nodes`` defaults to the largest id + 1. An undirected graph
        (the default) stores each edge both ways.
        """
        s, d = to_int64(src, "src"), to_int64(dst, "dst")
        w = None
        if weight is not None:
            if isinstance(weight, (pa.Array, pa.ChunkedArray)):
                if weight.null_count:
                    raise FrxError(f"weight: has {weight.null_count} null values")
                weight = weight.to_numpy(zero_copy_only=False)
            w = np.ascontiguousarray(weight, dtype=np.float64)
        t = None
        if edge_type is not None:
            t = to_int64(edge_type, "edge_type")
            if t.size and (t.min() < -(2**31) or t.max() >= 2**31):
                raise FrxError("edge_type values must fit in int32")
            t = t.astype(np.int32)
        if num_nodes is not None and (isinstance(num_nodes, bool) or int(num_nodes) < 0):
            raise FrxError(f"num_nodes must be a non-negative integer, got {num_nodes!r}")
        try:
            core = _core.Graph(s, d, w, t, None if num_nodes is None else int(num_nodes), bool(directed))
        except ValueError as e:
            raise FrxError(str(e)) from None
        return cls(core)

    @property
    def num_nodes(self) -> int:
        return self._g.num_nodes

    @property
    def num_edges(self) -> int:
        """Stored directed edges (twice the input edges for an undirected graph)."""
        return self._g.num_edges

    @property
    def directed(self) -> bool:
        return self._g.directed

    def csr(self) -> tuple[np.ndarray, np.ndarray]:
        """``(indptr, indices)``: out-neighbours of node v are ``indices[indptr[v]:indptr[v+1]]``."""
        return self._g.csr()

    def __repr__(self) -> str:
        kind = "directed" if self.directed else "undirected"
        return f"Graph({kind}, num_nodes={self.num_nodes}, num_edges={self.num_edges})"

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except ValueError as e:
            raise FrxError(str(e)) from None

    def random_walks(self, starts: Any, length: int, seed: int = 0) -> np.ndarray:
        """One walk of ``length`` steps per start: int64 array ``(len(starts), length + 1)``,
        the start in column 0; -1 after a walk reaches a node without out-edges."""
        if isinstance(length, bool) or int(length) < 0:
            raise FrxError(f"length must be a non-negative integer, got {length!r}")
        return self._call(self._g.random_walks, to_int64(starts, "starts"), int(length), _seed(seed))

    def khop(self, starts: Any, fanouts: Sequence[int], seed: int = 0) -> pa.Table:
        """Fan-out sample: from each start up to ``fanouts[0]`` distinct edges, from each node
        reached up to ``fanouts[1]``, and so on (without replacement; by weight if weighted).

        Returns a table with one row per sampled edge: ``sample`` (index into ``starts``),
        ``hop`` (0-based), ``src``, ``dst`` and ``edge_type`` (0 when the graph has none)."""
        fan = [int(f) for f in fanouts]
        if any(f < 0 for f in fan):
            raise FrxError(f"fanouts must be non-negative, got {fan}")
        sample, hop, src, dst, et = self._call(
            self._g.khop, to_int64(starts, "starts"), fan, _seed(seed)
        )
        return pa.table({"sample": sample, "hop": hop, "src": src, "dst": dst, "edge_type": et})

    def subgraphs(self, starts: Any, k: int, seed: int = 0) -> np.ndarray:
        """A connected set of ``k`` distinct nodes around each start, grown across random edges
        leaving the set: int64 ``(len(starts), k)``, the start first, -1-padded when the start's
        component is smaller than ``k``."""
        if isinstance(k, bool) or not 1 <= int(k) <= 64:
            raise FrxError(f"k must be between 1 and 64, got {k!r}")
        return self._call(self._g.subgraphs, to_int64(starts, "starts"), int(k), _seed(seed))
