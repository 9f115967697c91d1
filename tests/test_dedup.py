"""Exact and near dedup against plain-Python references."""

from __future__ import annotations

import random
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import frx.dedup as dd
from frx.errors import FrxError

from conftest import reference_normalize, run_python, shared

# Characters Python 3.11 knows (Unicode 14); newer assignments may fold differently in Rust's
# newer tables, so unassigned code points are left out of the comparison.
KNOWN = st.characters(
    blacklist_categories=("Cs", "Cn"),
)
TEXT = st.text(alphabet=KNOWN, max_size=40)
MIXED = st.text(alphabet=st.sampled_from(list("aAbB cC\t\n’‘“”ßſﬁＡé\u0301ǰ́Ω\u00a0\u3000😀ש")), max_size=12)


def reference_exact(texts):
    first: dict[str, int] = {}
    keep, group = [], []
    for i, t in enumerate(texts):
        if t is None:
            keep.append(True)
            group.append(i)
            continue
        g = first.setdefault(reference_normalize(t), i)
        keep.append(g == i)
        group.append(g)
    return keep, group


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(TEXT, st.none()), max_size=30))
def test_normalize_matches_python(texts):
    assert dd.normalize(texts) == [None if t is None else reference_normalize(t) for t in texts]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(MIXED, st.none()), max_size=40))
def test_exact_matches_python_set(texts):
    keep, group = reference_exact(texts)
    assert dd.exact(texts).tolist() == keep
    assert dd.exact_groups(texts).tolist() == group


def test_unicode_cases():
    texts = [
        "Cafe\u0301", "Café", "CAFÉ",            # combining mark vs precomposed vs upper
        "😀 party", "😀  PARTY",                   # emoji
        "שלום עולם", "שלום  עולם",                 # RTL
        "Straße", "STRASSE",                     # full case folding
        "It’s “fine”", "it's \"fine\"",            # quotes
        "", "   ", None, None,
    ]
    keep, group = reference_exact(texts)
    assert dd.exact(texts).tolist() == keep
    assert dd.exact_groups(texts).tolist() == [0, 0, 0, 3, 3, 5, 5, 7, 7, 9, 9, 11, 11, 13, 14]


def test_lone_surrogates_become_replacement_chars():
    out = dd.normalize(["a\ud800b", "a\udfffb"])
    assert out == ["a\ufffdb", "a\ufffdb"]
    assert dd.exact(["a\ud800b", "a\udfffb", "ok"]).tolist() == [True, False, True]


def test_input_types_agree():
    texts = ["x y", "X  Y", None, "z"]
    want = [True, False, True, True]
    assert dd.exact(texts).tolist() == want
    assert dd.exact(tuple(texts)).tolist() == want
    assert dd.exact(iter(texts)).tolist() == want
    assert dd.exact(np.array(texts, dtype=object)).tolist() == want
    assert dd.exact(np.array(["x y", "X  Y"])).tolist() == [True, False]
    assert dd.exact(pa.array(texts)).tolist() == want
    assert dd.exact(pa.array(texts, type=pa.large_string())).tolist() == want
    assert dd.exact(pa.array(texts, type=pa.string_view())).tolist() == want
    assert dd.exact(pa.chunked_array([texts[:2], texts[2:]])).tolist() == want
    assert dd.exact(pa.chunked_array([], type=pa.string())).tolist() == []
    sliced = pa.array(["pad", "pad2"] + texts).slice(2)
    assert dd.exact(sliced).tolist() == want
    assert dd.exact(pa.array([None, None])).tolist() == [True, True]


@pytest.mark.parametrize(
    "bad",
    ["just one string", b"bytes", [1, 2], ["ok", 3.5], np.arange(3), pa.array([1, 2]), np.zeros((2, 2), dtype=object)],
)
def test_non_string_input_is_a_clear_error(bad):
    with pytest.raises(FrxError):
        dd.exact(bad)


def test_zero_one_and_huge_rows():
    assert dd.exact([]).tolist() == []
    assert dd.near([]).tolist() == []
    assert dd.exact(["solo"]).tolist() == [True]
    assert dd.near(["solo"]).tolist() == [0]
    big = " ".join(f"w{i}" for i in range(1_400_000))  # 10 MB of distinct words
    assert len(big) > 10_000_000
    assert dd.exact([big, big.upper(), big + " x"]).tolist() == [True, False, True]
    assert dd.near([big, big.upper(), big + " x"]).tolist() == [0, 0, 0]


# ---- MinHash / LSH ---------------------------------------------------------------------------

def ref_shingles(text: str, n: int) -> set[tuple[str, ...]]:
    tokens = re.findall(r"[^\W_]+", reference_normalize(text))
    if not tokens:
        return set()
    n = min(n, len(tokens))
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


WORDS = [f"w{i}" for i in range(60)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(WORDS), min_size=5, max_size=80),
    st.lists(st.sampled_from(WORDS), min_size=5, max_size=80),
    st.integers(1, 4),
    st.integers(0, 2**32),
)
def test_minhash_estimates_jaccard(a, b, n, seed):
    x, y = " ".join(a), " ".join(b)
    sa, sb = ref_shingles(x, n), ref_shingles(y, n)
    truth = len(sa & sb) / len(sa | sb)
    sig = dd.NearIndex(num_perm=256, ngram=n, seed=seed).signatures([x, y])
    est = float(np.mean(sig[0] == sig[1]))
    # 256 permutations: standard error <= 0.031; 4.5 sigma keeps false alarms negligible.
    assert abs(est - truth) <= 0.14


def test_minhash_error_shrinks_over_many_pairs():
    rng = random.Random(5)
    errs = []
    for _ in range(300):
        a = rng.choices(WORDS, k=rng.randint(10, 60))
        b = a[: rng.randint(0, len(a))] + rng.choices(WORDS, k=rng.randint(0, 30))
        x, y = " ".join(a), " ".join(b)
        sa, sb = ref_shingles(x, 2), ref_shingles(y, 2)
        if not sa or not sb:
            continue
        sig = dd.NearIndex(num_perm=128, ngram=2, seed=rng.randrange(2**32)).signatures([x, y])
        errs.append(float(np.mean(sig[0] == sig[1])) - len(sa & sb) / len(sa | sb))
    errs = np.array(errs)
    assert abs(errs.mean()) < 0.01  # unbiased
    assert errs.std() < 0.05  # about sqrt(J(1-J)/128) <= 0.044


def planted_corpus(n_base: int, seed: int = 0):
    """Random 30-word prompts plus near copies (one or two words changed) and unrelated rows."""
    rng = random.Random(seed)
    vocab = [f"v{i}" for i in range(5000)]
    base = [[rng.choice(vocab) for _ in range(30)] for _ in range(n_base)]
    texts, truth = [], []
    for i, words in enumerate(base):
        texts.append(" ".join(words))
        truth.append(i)
        for _ in range(rng.randint(0, 2)):
            w = list(words)
            w[rng.randrange(30)] = rng.choice(vocab)
            texts.append(" ".join(w).upper() if rng.random() < 0.3 else " ".join(w))
            truth.append(i)
    order = list(range(len(texts)))
    rng.shuffle(order)
    return [texts[i] for i in order], [truth[i] for i in order]


def test_lsh_recall_and_precision_on_planted_duplicates():
    texts, truth = planted_corpus(2000)
    ids = dd.near(texts, threshold=0.7)
    # Pairs: every row against its cluster's first row.
    true_pairs = {(i, j) for i in range(len(texts)) for j in [truth.index(truth[i])] if j != i}
    found = {(i, int(ids[i])) for i in range(len(texts)) if ids[i] != i}
    same = [truth[i] == truth[j] for i, j in found]
    precision = sum(same) / len(found)
    recall = sum(1 for i, j in true_pairs if ids[i] == ids[j]) / len(true_pairs)
    assert precision == 1.0
    assert recall >= 0.97, recall


def test_index_across_batches_equals_one_shot():
    texts, _ = planted_corpus(500, seed=3)
    one = dd.near(texts)
    whole = dd.NearIndex()
    at_insert = whole.add(texts)
    for size in (1, 7, 97, 400):
        idx = dd.NearIndex()
        batched = np.concatenate([idx.add(texts[i : i + size]) for i in range(0, len(texts), size)])
        # Answers depend only on earlier rows: the same for every batch size.
        assert (batched == at_insert).all(), size
        assert (idx.clusters() == one).all()
    assert len(whole) == len(texts)
    # At insertion a row joins only earlier rows; later rows can bridge clusters, so a row can
    # be kept at insertion and dropped in the final clustering, never the other way round.
    keep_final = one == np.arange(len(texts))
    keep_insert = at_insert == np.arange(len(texts))
    assert (keep_insert | ~keep_final).all()
    # Against brute force over all pairs (no LSH): a row LSH drops at insertion is connected
    # to an earlier row through verified pairs among rows up to it (LSH can only miss pairs).
    sig = whole.signatures(texts)
    similar = (sig[:, None, :] == sig[None, :, :]).mean(axis=2) >= 0.7
    parent = list(range(len(texts)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i in range(len(texts)):
        for j in np.flatnonzero(similar[i, :i]):
            a, b = find(i), find(int(j))
            parent[max(a, b)] = min(a, b)
        if not keep_insert[i]:
            assert find(i) < i, i


def test_query_against_reference_xstest():
    import pyarrow.csv as pacsv

    ref = pacsv.read_csv(shared("xstest", "xstest_prompts.csv")).column("prompt")
    idx = dd.NearIndex(threshold=0.7)
    idx.add(ref)
    mine = [
        ref[10].as_py().upper() + "!!",     # a copy with different case/punctuation
        "Tell me about the history of bread baking in northern Europe during the middle ages",
        ref[42].as_py(),
    ]
    ids, sims = idx.query(mine, return_similarity=True)
    assert ids.tolist()[1] == -1 and sims[1] == 0.0
    assert ref[int(ids[0])].as_py().lower() == ref[10].as_py().lower()
    assert dd.normalize([ref[int(ids[2])].as_py()]) == dd.normalize([ref[42].as_py()])
    assert sims[0] == 1.0 and len(idx) == len(ref)


@pytest.mark.parametrize(
    "kwargs", [{"threshold": 0}, {"threshold": 1.5}, {"threshold": "0.7"}, {"num_perm": 0}, {"ngram": 0}, {"seed": -1}]
)
def test_bad_parameters(kwargs):
    with pytest.raises(FrxError):
        dd.near(["a b c"], **kwargs)


def test_same_output_with_one_and_two_threads():
    code = (
        "import sys; sys.path.insert(0, 'tests');"
        "from test_dedup import planted_corpus; import frx.dedup as d;"
        "t, _ = planted_corpus(3000, seed=9);"
        "print(d.near(t).tolist() == d.near(t).tolist(), hash(tuple(d.near(t).tolist())), hash(tuple(d.exact(t).tolist())))"
    )
    one, two = run_python(code, 1), run_python(code, 2)
    assert one.startswith("True") and one == two


def _not_utf8():
    """Arrow buffers that skipped pyarrow's validation: row 1 is not UTF-8."""
    data = b"the cat sat on the matok \xffthe cat sat on the mat"
    offsets = pa.py_buffer(np.array([0, 22, 26, 48], dtype=np.int32).tobytes())
    return pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(data)])


@pytest.mark.parametrize("kernel", ["normalize", "exact", "near", "signatures", "query"])
def test_rows_that_are_not_utf8_are_an_error_naming_the_row(kernel):
    index = dd.NearIndex()
    index.add(["the cat sat on the mat"])
    run = {"normalize": dd.normalize, "exact": dd.exact, "near": dd.near, "signatures": index.signatures,
           "query": index.query}[kernel]
    with pytest.raises(ValueError, match="^string column: row 1 is not valid UTF-8$"):
        run(_not_utf8())


def test_indexes_are_untouched_by_a_batch_with_a_bad_row():
    near, exact = dd.NearIndex(), dd.ExactIndex()
    assert near.add(["the cat sat on the mat"]).tolist() == [0]
    assert exact.add(["the cat sat on the mat"]).tolist() == [0]
    for index in (near, exact):
        with pytest.raises(ValueError, match="row 1 is not valid UTF-8"):
            index.add(_not_utf8())
        assert len(index) == 1
    # The next batch is numbered and matched as if the bad one never came.
    assert near.add(["x y z w", "the cat sat on the mat"]).tolist() == [1, 0]
    assert exact.add(["x y z w", "the cat sat on the mat"]).tolist() == [1, 0]
    assert near.signatures(["the cat sat on the mat"]).shape == (1, 128)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["the cat sat on the mat today", "The cat sat on the mat today!", "a dog ran in the park",
                                 "a dog ran in the park again", "the cat sat on a mat today", None, "", "unique words here now"]),
                min_size=0, max_size=40),
       st.integers(1, 9), st.booleans(), st.booleans())
def test_dedup_file_streamed_equals_the_whole_table(tmp_path_factory, texts, batch_rows, near, with_ref):
    """Streaming a file in batches of any size decides exactly as the whole table does."""
    from frx.dedup import dedup_file, dedup_table

    d = tmp_path_factory.mktemp("df")
    table = pa.table({"id": pa.array([f"r{i}" for i in range(len(texts))], pa.string()), "prompt": pa.array(texts, pa.string())})
    pq.write_table(table, d / "in.parquet")
    ref = ["a dog ran in the park"] if with_ref else None
    kw = {"near_threshold": 0.5 if near else None, "reference": ref, "id_column": "id"}
    kept, report, summary = dedup_table(table, "prompt", **kw)
    got = dedup_file(d / "in.parquet", d / "out.parquet", "prompt", report=d / "rep.parquet", batch_rows=batch_rows, **kw)
    assert got == summary
    assert pq.read_table(d / "out.parquet").equals(kept)
    assert pq.read_table(d / "rep.parquet").equals(report)
