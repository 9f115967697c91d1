"""Uniform random walks on a 100k-node / 500k-edge graph: frx vs batched numpy CSR and
networkx (a Python walker over its adjacency)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from conftest import record
from frx.graph import Graph

LENGTH = 20


@pytest.fixture(scope="module")
def graph(walk_graph):
    n, src, dst = walk_graph
    return n, src, dst, Graph.from_edges(src, dst, num_nodes=n)


@pytest.mark.benchmark(group="random walks")
def test_frx_walks(benchmark, graph):
    n, _, _, g = graph
    starts = np.arange(n, dtype=np.int64)
    benchmark(g.random_walks, starts, LENGTH, 0)
    record(benchmark, "frx random_walks", items=n * LENGTH, unit="steps")


@pytest.mark.benchmark(group="random walks")
def test_numpy_batched_csr(benchmark, graph):
    n, _, _, g = graph
    indptr, indices = (a.astype(np.int64) for a in g.csr())
    deg = np.diff(indptr)
    rng = np.random.default_rng(0)
    starts = np.arange(n, dtype=np.int64)

    def run():
        walks = np.empty((n, LENGTH + 1), dtype=np.int64)
        cur = starts.copy()
        walks[:, 0] = cur
        for step in range(1, LENGTH + 1):
            d = deg[cur]
            pick = (rng.random(n) * d).astype(np.int64)
            nxt = np.where(d > 0, indices[np.minimum(indptr[cur] + pick, len(indices) - 1)], -1)
            walks[:, step] = nxt
            cur = np.where(nxt >= 0, nxt, cur)
        return walks

    benchmark(run)
    record(benchmark, "numpy batched CSR", items=n * LENGTH, unit="steps")


@pytest.mark.benchmark(group="random walks")
def test_networkx_walks(benchmark, graph):
    nx = pytest.importorskip("networkx")
    n, src, dst, _ = graph
    G = nx.MultiGraph()
    G.add_nodes_from(range(n))
    G.add_edges_from(zip(src.tolist(), dst.tolist()))
    adj = {v: list(G.neighbors(v)) for v in range(0, n, 10)}
    rnd = random.Random(0)
    starts = list(range(0, n, 10))

    def run():
        steps = 0
        for s in starts:
            v = s
            for _ in range(LENGTH):
                nb = adj.get(v)
                if nb is None:
                    nb = adj[v] = list(G.neighbors(v))
                if not nb:
                    break
                v = rnd.choice(nb)
                steps += 1
        return steps

    benchmark.pedantic(run, rounds=3, iterations=1)
    record(benchmark, "networkx (python walker, 1/10 of the starts)", items=len(starts) * LENGTH, unit="steps")
