"""Exact and near-duplicate removal: frx vs a Python set, rensa and datasketch.

Prompts are ~30 words with planted exact copies (case/space variants) and near copies (one or
two words changed). Near-dup peers use their usual Python shingling (lower-cased word 3-grams)
and report recall/precision of the planted copies, like frx.
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest

import frx.dedup as dd
from conftest import recall_precision, record

QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def py_normalize(t: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", t).casefold().translate(QUOTES).split())


def shingles(text: str, n: int = 3) -> list[str]:
    w = text.lower().split()
    return [" ".join(w[i : i + n]) for i in range(max(1, len(w) - n + 1))]


# ---- exact -----------------------------------------------------------------------------------

@pytest.mark.benchmark(group="exact dedup")
def test_frx_exact(benchmark, prompt_corpus):
    texts, _, arr = prompt_corpus
    keep = benchmark(dd.exact, arr)
    record(benchmark, "frx exact", items=len(texts), unit="rows", kept=int(keep.sum()))


@pytest.mark.benchmark(group="exact dedup")
def test_python_normalise_set(benchmark, prompt_corpus):
    texts, _, _ = prompt_corpus

    def run():
        seen, keep = set(), []
        for t in texts:
            k = py_normalize(t)
            keep.append(k not in seen)
            seen.add(k)
        return keep

    keep = benchmark.pedantic(run, rounds=3, iterations=1)
    assert keep == dd.exact(texts).tolist()
    record(benchmark, "python normalise + set", items=len(texts), unit="rows", kept=sum(keep))


# ---- text -> MinHash signature -----------------------------------------------------------------

@pytest.mark.benchmark(group="minhash signatures")
def test_frx_signatures(benchmark, prompt_corpus):
    texts, _, arr = prompt_corpus
    idx = dd.NearIndex(num_perm=128, ngram=3)
    benchmark(idx.signatures, arr)
    record(benchmark, "frx text -> signature", items=len(texts), unit="docs")


@pytest.mark.benchmark(group="minhash signatures")
def test_rensa_signatures(benchmark, prompt_corpus):
    rensa = pytest.importorskip("rensa")
    texts, _, _ = prompt_corpus

    def run():
        out = []
        for t in texts:
            m = rensa.RMinHash(num_perm=128, seed=0)
            m.update(shingles(t))
            out.append(m)
        return out

    benchmark.pedantic(run, rounds=3, iterations=1)
    record(benchmark, "rensa (python shingling)", items=len(texts), unit="docs")


@pytest.mark.benchmark(group="minhash signatures")
def test_datasketch_signatures(benchmark, prompt_corpus):
    datasketch = pytest.importorskip("datasketch")
    texts, _, _ = prompt_corpus
    sub = texts[: max(1000, len(texts) // 10)]

    def run():
        out = []
        for t in sub:
            m = datasketch.MinHash(num_perm=128, seed=0)
            m.update_batch([s.encode() for s in shingles(t)])
            out.append(m)
        return out

    benchmark.pedantic(run, rounds=3, iterations=1)
    record(benchmark, "datasketch (1/10 of the data)", items=len(sub), unit="docs")


# ---- end-to-end near-duplicate detection ---------------------------------------------------------

@pytest.mark.benchmark(group="near dedup end to end")
def test_frx_near(benchmark, prompt_corpus):
    texts, truth, arr = prompt_corpus
    ids = benchmark(dd.near, arr, 0.7)
    flagged = set(np.flatnonzero(ids != np.arange(len(ids))).tolist())
    r, p = recall_precision(flagged, truth)
    record(benchmark, "frx near", items=len(texts), unit="docs", recall=r, precision=p)


def _lsh_dedup(texts, make_minhash, make_lsh, insert, query, similar):
    lsh = make_lsh()
    kept, flagged = [], set()
    for i, t in enumerate(texts):
        m = make_minhash(t)
        if any(similar(kept[j], m) for j in query(lsh, m)):
            flagged.add(i)
        kept.append(m)
        insert(lsh, i, m)
    return flagged


@pytest.mark.benchmark(group="near dedup end to end")
def test_rensa_near(benchmark, prompt_corpus):
    rensa = pytest.importorskip("rensa")
    texts, truth, _ = prompt_corpus

    def mh(t):
        m = rensa.RMinHash(num_perm=128, seed=0)
        m.update(shingles(t))
        return m

    def run():
        return _lsh_dedup(
            texts, mh, lambda: rensa.RMinHashLSH(threshold=0.7, num_perm=128, num_bands=16),
            lambda lsh, i, m: lsh.insert(i, m), lambda lsh, m: lsh.query(m),
            lambda a, b: a.jaccard(b) >= 0.7,
        )

    flagged = benchmark.pedantic(run, rounds=3, iterations=1)
    r, p = recall_precision(flagged, truth)
    record(benchmark, "rensa (python shingling + RMinHashLSH)", items=len(texts), unit="docs", recall=r, precision=p)


@pytest.mark.benchmark(group="near dedup end to end")
def test_datasketch_near(benchmark, prompt_corpus):
    datasketch = pytest.importorskip("datasketch")
    texts, truth, _ = prompt_corpus
    sub, sub_truth = texts[: max(1000, len(texts) // 10)], truth[: max(1000, len(texts) // 10)]

    def mh(t):
        m = datasketch.MinHash(num_perm=128, seed=0)
        m.update_batch([s.encode() for s in shingles(t)])
        return m

    def run():
        return _lsh_dedup(
            sub, mh, lambda: datasketch.MinHashLSH(threshold=0.7, num_perm=128),
            lambda lsh, i, m: lsh.insert(i, m), lambda lsh, m: lsh.query(m),
            lambda a, b: a.jaccard(b) >= 0.7,
        )

    flagged = benchmark.pedantic(run, rounds=1, iterations=1)
    r, p = recall_precision(flagged, sub_truth)
    record(benchmark, "datasketch MinHashLSH (1/10 of the data)", items=len(sub), unit="docs", recall=r, precision=p)
