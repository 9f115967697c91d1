"""The refusal matcher against a naive Python scan."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frx.errors import FrxError
from frx.refusal import Matcher, load_lexicon

from conftest import run_python

FOLD = str.maketrans({**{chr(c): chr(c + 32) for c in range(65, 91)}, "\u2019": "'", "\u2018": "'"})
ASCII_WS = " \t\n\x0c\r"


def fold(s: str) -> str:
    """ASCII case and apostrophe spelling removed; one character in, one out."""
    return s.translate(FOLD)


def first_sentence_end(t: str) -> int:
    i = 0
    while i < len(t) and t[i] in ASCII_WS:
        i += 1
    while i < len(t):
        c = t[i]
        if c == "\n":
            return i
        if c in ".!?" and (i + 1 == len(t) or t[i + 1] in ASCII_WS):
            return i + 1
        i += 1
    return len(t)


def naive_scan(texts, phrases, patterns):
    rows = []
    for r, t in enumerate(texts):
        if t is None:
            continue
        ft = fold(t)
        hits = []
        for pid, p in enumerate(phrases):
            fp = fold(p)
            j = ft.find(fp)
            while j != -1:
                hits.append((j, pid))
                j = ft.find(fp, j + 1)
        for k, pat in enumerate(patterns):
            hits += [(m.start(), len(phrases) + k) for m in re.finditer(pat, ft, re.IGNORECASE)]
        end = first_sentence_end(t)
        rows += [{"row": r, "pattern_id": pid, "start": s, "first_sentence": s < end} for s, pid in sorted(hits)]
    return rows


ALPHA = "abAB '’‘.!?\néÉ😀"
TEXTS = st.lists(st.one_of(st.text(alphabet=ALPHA, max_size=30), st.none()), max_size=12)
PHRASES = st.lists(st.text(alphabet="abAB'’‘ é", min_size=1, max_size=4), min_size=1, max_size=6)
PATTERNS = st.lists(st.sampled_from([r"ab+", r"\bba\b", r"a'b", r"(?:a|b)\.", r"é+"]), max_size=3, unique=True)


@settings(max_examples=400, deadline=None)
@given(TEXTS, PHRASES, PATTERNS)
def test_scan_matches_naive_python(texts, phrases, patterns):
    m = Matcher(phrases, patterns)
    assert m.scan(texts).to_pylist() == naive_scan(texts, phrases, patterns)
    want_any = [bool(naive_scan([t], phrases, patterns)) for t in texts]
    assert m.any(texts).tolist() == want_any


LONG_TEXTS = st.lists(st.text(alphabet="abAB '’.\n", max_size=200), max_size=6)
LONG_PHRASES = st.lists(
    st.text(alphabet="abAB'’ ", min_size=6, max_size=12).filter(lambda p: sum(c in "'’" for c in p) <= 4),
    min_size=1, max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(LONG_TEXTS, LONG_PHRASES)
def test_scan_with_prefilters_matches_naive_python(texts, phrases):
    # Phrases of 4+ bytes switch on the vectorized prefilter where the CPU has AVX2, of 6+ bytes
    # the skip loop where it has not (the Rust tests compare both): neither may miss a match.
    m = Matcher(phrases)
    assert m.scan(texts).to_pylist() == naive_scan(texts, phrases, [])
    assert m.any(texts).tolist() == [bool(naive_scan([t], phrases, [])) for t in texts]


def test_default_lexicon_on_realistic_responses():
    m = Matcher.default()
    texts = [
        "I'm sorry, but I can't help with making explosives.",
        "I’m sorry to hear that. Here is how to kill a Python process: run `kill -9 PID`.",
        "Sure! In the story, the guard said: \"I cannot help with that.\" Then the hero...",
        "\n\nAs an AI language model, I don't have opinions, but here is a summary.",
        "To terminate the process, use Task Manager.",
        None,
    ]
    hit, opening = m.flags(texts)
    assert hit.tolist() == [True, False, True, True, False, False]
    assert opening.tolist() == [True, False, False, True, False, False]
    scan = m.scan(texts).to_pylist()
    quoted = [r for r in scan if r["row"] == 2]
    assert quoted and all(not r["first_sentence"] for r in quoted)
    assert m.entries[scan[0]["pattern_id"]].lower().startswith("i'm sorry")


def test_offsets_are_python_string_indices():
    m = Matcher(["cannot"])
    texts = ["😀é\u0301 — I cannot", "ש" * 5 + "cannot"]
    for r in m.scan(texts).to_pylist():
        assert texts[r["row"]][r["start"] : r["start"] + 6] == "cannot"


def test_nulls_empty_zero_rows_and_huge_rows():
    m = Matcher(["sorry"], [r"\bno\b"])
    assert m.any([]).tolist() == []
    assert m.scan([]).num_rows == 0
    assert m.any([None, "", "SORRY"]).tolist() == [False, False, True]
    big = "filler text " * 900_000 + "Sorry, no."
    s = m.scan([big]).to_pylist()
    assert [r["start"] for r in s] == [len(big) - 10, len(big) - 3]
    assert m.scan(pa.chunked_array([["a sorry"], [None, "no"]])).column("row").to_pylist() == [0, 2]


def test_lexicon_file(tmp_path):
    p = tmp_path / "lex.txt"
    p.write_text("# comment\n\nsorry\nre:\\bnope\\b\n", encoding="utf-8")
    m = Matcher.from_file(p)
    assert (m.phrases, m.patterns) == (["sorry"], [r"\bnope\b"])
    assert m.entries == ["sorry", r"re:\bnope\b"]
    phrases, patterns = load_lexicon()
    assert len(phrases) >= 100 and all(p.strip() for p in phrases + patterns)


@pytest.mark.parametrize(
    "phrases,patterns",
    [([""], []), ([], ["("]), ([], ["a*"]), ("sorry", []), (["ok"], "re"), (["a'b'c'd'e'"], [])],
)
def test_bad_lexicons(phrases, patterns):
    with pytest.raises(FrxError):
        Matcher(phrases, patterns)


def test_bad_lexicon_files(tmp_path):
    with pytest.raises(FrxError, match="not found"):
        Matcher.from_file(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(FrxError, match="no entries"):
        Matcher.from_file(empty)


def test_same_output_with_one_and_two_threads():
    code = (
        "from frx.refusal import Matcher; import hashlib;"
        "t = [('Sorry, ' if i % 3 else '') + 'word ' * (i % 50) + ('I cannot help.' if i % 7 == 0 else '') for i in range(20000)];"
        "s = Matcher.default().scan(t);"
        "print(hashlib.sha256(str(s.to_pydict()).encode()).hexdigest())"
    )
    assert run_python(code, 1) == run_python(code, 2)


def test_rows_that_are_not_utf8_are_an_error_naming_the_first():
    # Buffers that skipped pyarrow's validation: each row is checked as it is scanned.
    data = b"I can't.ok \xffsorry\xc3"
    offsets = pa.py_buffer(np.array([0, 8, 12, 17, 18], dtype=np.int32).tobytes())
    bad = pa.Array.from_buffers(pa.string(), 4, [None, offsets, pa.py_buffer(data)])
    m = Matcher(["I can't", "sorry"])
    for f in (m.any, m.scan):
        with pytest.raises(ValueError, match="^string column: row 1 is not valid UTF-8$"):
            f(bad)
    validity = pa.py_buffer(np.packbits([1, 0, 1, 0], bitorder="little").tobytes())
    nulls = pa.Array.from_buffers(pa.string(), 4, [validity, offsets, pa.py_buffer(data)], null_count=2)
    assert m.any(nulls).tolist() == [True, False, True, False]
