"""Graph sampling against known graphs and plain-Python references."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import networkx as nx
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frx.errors import FrxError
from frx.graph import Graph

from conftest import run_python

EDGES = st.lists(st.tuples(st.integers(0, 15), st.integers(0, 15)), max_size=40)


def adjacency(edges, directed):
    adj = defaultdict(set)
    for s, d in edges:
        adj[s].add(d)
        if not directed:
            adj[d].add(s)
    return adj


@settings(max_examples=200, deadline=None)
@given(EDGES, st.booleans(), st.integers(0, 12), st.integers(0, 2**63))
def test_walks_follow_existing_edges(edges, directed, length, seed):
    n = 16
    g = Graph.from_edges([e[0] for e in edges], [e[1] for e in edges], num_nodes=n, directed=directed)
    adj = adjacency(edges, directed)
    starts = np.arange(n)
    walks = g.random_walks(starts, length, seed)
    assert walks.shape == (n, length + 1)
    for row in walks:
        assert row[0] >= 0
        for a, b in zip(row[:-1], row[1:]):
            if a == -1:
                assert b == -1
            elif b == -1:
                assert not adj[a], "stopped although the node has out-edges"
            else:
                assert b in adj[a]
    assert (walks == g.random_walks(starts, length, seed)).all()


# Upper 0.1% points of the chi-square distribution, by degrees of freedom.
CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52}


def test_weighted_steps_follow_weights_chi_square():
    weights = [1.0, 2.0, 3.0, 4.0, 10.0]
    g = Graph.from_edges([0] * 5, [1, 2, 3, 4, 5], weights, directed=True)
    n = 60_000
    first = g.random_walks(np.zeros(n, dtype=np.int64), 1, seed=11)[:, 1]
    counts = Counter(first.tolist())
    total = sum(weights)
    chi2 = sum((counts[i + 1] - n * w / total) ** 2 / (n * w / total) for i, w in enumerate(weights))
    assert chi2 < CHI2_999[4], (chi2, counts)


def test_multistep_transitions_follow_weights():
    rng = np.random.default_rng(3)
    src = rng.integers(0, 50, 400)
    dst = rng.integers(0, 50, 400)
    w = rng.uniform(0.1, 5.0, 400)
    g = Graph.from_edges(src, dst, w)
    expected = defaultdict(Counter)  # expected[a][b] = total weight of edges a-b
    for s, d, x in zip(src, dst, w):
        expected[s][d] += x
        expected[d][s] += x
    walks = g.random_walks(np.repeat(np.arange(50), 40), 50, seed=4)
    seen = defaultdict(Counter)
    for row in walks:
        for a, b in zip(row[:-1], row[1:]):
            seen[a][b] += 1
    stat, dof = 0.0, 0
    for a, nb in expected.items():
        total_n = sum(seen[a].values())
        total_w = sum(nb.values())
        for b, x in nb.items():
            e = total_n * x / total_w
            stat += (seen[a][b] - e) ** 2 / e
        dof += len(nb) - 1
        assert set(seen[a]) <= set(nb)
    # Pooled chi-square: within 4 standard deviations of its mean.
    assert (stat - dof) / math.sqrt(2 * dof) < 4, (stat, dof)


def test_khop_against_reference():
    rng = np.random.default_rng(0)
    src, dst = rng.integers(0, 200, 1500), rng.integers(0, 200, 1500)
    g = Graph.from_edges(src, dst)
    adj = defaultdict(list)
    for s, d in zip(src.tolist(), dst.tolist()):
        adj[s].append(d)
        adj[d].append(s)
    starts = np.arange(0, 200, 7)
    t = g.khop(starts, [4, 3], seed=1)
    assert t.column_names == ["sample", "hop", "src", "dst", "edge_type"]
    rows = t.to_pylist()
    by = defaultdict(list)
    for r in rows:
        assert r["dst"] in adj[r["src"]]
        by[(r["sample"], r["hop"], r["src"])].append(r["dst"])
    for i, s in enumerate(starts.tolist()):
        hop0 = by[(i, 0, s)]
        assert len(hop0) == min(4, len(adj[s]))
        assert Counter(hop0) <= Counter(adj[s])  # without replacement
        srcs1 = Counter(r["src"] for r in rows if r["sample"] == i and r["hop"] == 1)
        for v, c in srcs1.items():
            assert c == Counter(hop0)[v] * min(3, len(adj[v]))
    assert t.equals(g.khop(starts, [4, 3], seed=1))


def test_khop_carries_edge_types():
    g = Graph.from_edges([0, 0], [1, 2], edge_type=[7, 9], directed=True)
    t = g.khop([0], [5]).to_pylist()
    assert {(r["dst"], r["edge_type"]) for r in t} == {(1, 7), (2, 9)}


@settings(max_examples=150, deadline=None)
@given(EDGES, st.integers(1, 6), st.integers(0, 2**63))
def test_subgraphs_are_connected_and_sized(edges, k, seed):
    n = 16
    g = Graph.from_edges([e[0] for e in edges], [e[1] for e in edges], num_nodes=n)
    ref = nx.Graph()
    ref.add_nodes_from(range(n))
    ref.add_edges_from(edges)
    sets = g.subgraphs(np.arange(n), k, seed)
    for start, row in enumerate(sets):
        nodes = [v for v in row.tolist() if v >= 0]
        assert nodes[0] == start
        assert len(set(nodes)) == len(nodes)
        assert (row[len(nodes):] == -1).all()
        assert len(nodes) == min(k, len(nx.node_connected_component(ref, start)))
        assert nx.is_connected(ref.subgraph(nodes))


def test_subgraphs_cover_the_neighbourhood():
    # A star: every leaf must show up as the second node of some sample.
    g = Graph.from_edges([0] * 6, [1, 2, 3, 4, 5, 6])
    second = Counter(g.subgraphs(np.zeros(6000, dtype=np.int64), 2, seed=2)[:, 1].tolist())
    assert set(second) == {1, 2, 3, 4, 5, 6}
    assert min(second.values()) > 800


def test_inputs_and_errors():
    g = Graph.from_edges(pa.array([0, 1]), pa.chunked_array([[1], [2]]), num_nodes=4)
    assert (g.num_nodes, g.num_edges) == (4, 4)
    indptr, indices = g.csr()
    assert indptr.tolist() == [0, 1, 3, 4, 4] and indices.tolist() == [1, 0, 2, 1]
    assert g.random_walks([], 3).shape == (0, 4)
    assert g.random_walks([3], 2).tolist() == [[3, -1, -1]]
    empty = Graph.from_edges([], [], num_nodes=0)
    assert empty.num_nodes == 0
    bad = [
        lambda: Graph.from_edges([0], [1, 2]),
        lambda: Graph.from_edges([0], [-1]),
        lambda: Graph.from_edges([0], [5], num_nodes=3),
        lambda: Graph.from_edges([0], [1], [-1.0]),
        lambda: Graph.from_edges([0], [1], [float("nan")]),
        lambda: Graph.from_edges([0.5], [1]),
        lambda: Graph.from_edges(pa.array([0, None]), [1, 2]),
        lambda: g.random_walks([9], 3),
        lambda: g.random_walks([0], -1),
        lambda: g.subgraphs([0], 0),
        lambda: g.subgraphs([0], 65),
        lambda: g.khop([0], []),
        lambda: g.khop([0], [-1]),
        lambda: g.random_walks([0], 3, seed=-5),
    ]
    for f in bad:
        with pytest.raises(FrxError):
            f()


def test_same_output_with_one_and_two_threads():
    code = (
        "import numpy as np, hashlib; from frx.graph import Graph;"
        "r = np.random.default_rng(1); s, d = r.integers(0, 5000, 30000), r.integers(0, 5000, 30000);"
        "g = Graph.from_edges(s, d, r.uniform(0.1, 2, 30000)); st = np.arange(5000);"
        "h = hashlib.sha256(); h.update(g.random_walks(st, 20, 3).tobytes()); h.update(g.subgraphs(st, 4, 3).tobytes());"
        "h.update(str(g.khop(st, [3, 2], 3).to_pydict()).encode()); print(h.hexdigest())"
    )
    assert run_python(code, 1) == run_python(code, 2)
