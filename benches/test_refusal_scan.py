"""Refusal phrase scan over model responses: frx vs Hyperscan, pyahocorasick, polars, re.

All use the same lexicon (frx's phrases), case-insensitive, with ' and ’ as the same
apostrophe. "scan" peers report every match; "any" peers answer per row whether one occurs.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pytest

from conftest import record, scaled
from frx.judge import judge, lexicon
from frx.refusal import Matcher, load_lexicon

PHRASES, _ = load_lexicon()


def spellings(p: str) -> list[str]:
    return sorted({p.lower(), p.lower().replace("'", "\u2019")})


@pytest.fixture(scope="module")
def data(response_corpus):
    texts, encoded, arr = response_corpus
    return texts, encoded, arr, sum(map(len, encoded))


def compile_hyperscan(phrases: list[str]):
    """A lexicon compiled for Hyperscan: caseless, UTF-8, both apostrophe spellings."""
    hyperscan = pytest.importorskip("hyperscan")
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    exprs = [re.escape(p).replace("\\'", "['\u2019]").encode() for p in phrases]
    flags = [hyperscan.HS_FLAG_CASELESS | hyperscan.HS_FLAG_UTF8] * len(exprs)
    db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=flags)
    return db


def hyperscan_rows(db, encoded: list[bytes]):
    """A function that scans every row and collects every match (pattern, end), as frx's scan does."""
    hits: list = []

    def on_match(pid, start, end, flags, ctx):
        hits.append((pid, end))
        return 0

    def run():
        hits.clear()
        for e in encoded:
            db.scan(e, match_event_handler=on_match)
        return len(hits)

    return run


@pytest.fixture(scope="module")
def hyperscan_db():
    return compile_hyperscan(PHRASES)


@pytest.mark.benchmark(group="refusal scan")
def test_frx_scan(benchmark, data):
    texts, _, arr, nbytes = data
    m = Matcher(PHRASES)
    out = benchmark(m.scan, arr)
    record(benchmark, "frx scan", items=len(texts), unit="rows", bytes=nbytes, matches=out.num_rows)


@pytest.mark.benchmark(group="refusal scan")
def test_frx_any(benchmark, data):
    texts, _, arr, nbytes = data
    m = Matcher(PHRASES)
    out = benchmark(m.any, arr)
    record(benchmark, "frx any", items=len(texts), unit="rows", bytes=nbytes, hits=int(out.sum()))


@pytest.mark.benchmark(group="refusal scan")
def test_hyperscan_rows(benchmark, data, hyperscan_db):
    texts, encoded, _, nbytes = data
    n = benchmark(hyperscan_rows(hyperscan_db, encoded))
    record(benchmark, "hyperscan per row", items=len(texts), unit="rows", bytes=nbytes, matches=n)


@pytest.mark.benchmark(group="refusal scan")
def test_hyperscan_one_buffer(benchmark, data, hyperscan_db):
    texts, encoded, _, nbytes = data
    db = hyperscan_db
    blob = b"\n".join(encoded)
    count = [0]

    def on_match(pid, start, end, flags, ctx):
        count[0] += 1
        return 0

    def run():
        count[0] = 0
        db.scan(blob, match_event_handler=on_match)
        return count[0]

    n = benchmark(run)
    record(benchmark, "hyperscan one buffer (no row split)", items=len(texts), unit="rows", bytes=nbytes, matches=n)


@pytest.mark.benchmark(group="refusal scan")
def test_pyahocorasick(benchmark, data):
    ahocorasick = pytest.importorskip("ahocorasick")
    texts, _, _, nbytes = data
    a = ahocorasick.Automaton()
    for i, p in enumerate(PHRASES):
        for v in spellings(p):
            a.add_word(v, i)
    a.make_automaton()

    def run():
        return sum(1 for t in texts for _ in a.iter(t.lower()))

    n = benchmark.pedantic(run, rounds=3, iterations=1)
    record(benchmark, "pyahocorasick (lower + iter)", items=len(texts), unit="rows", bytes=nbytes, matches=n)


@pytest.mark.benchmark(group="refusal scan")
def test_polars_contains_any(benchmark, data):
    pl = pytest.importorskip("polars")
    texts, _, arr, nbytes = data
    s = pl.Series(arr)
    pats = [v for p in PHRASES for v in spellings(p)]
    out = benchmark(lambda: s.str.contains_any(pats, ascii_case_insensitive=True))
    record(benchmark, "polars contains_any", items=len(texts), unit="rows", bytes=nbytes, hits=int(out.sum()))


@pytest.mark.benchmark(group="refusal scan")
def test_python_re(benchmark, data):
    texts, encoded, _, _ = data
    sub = texts[: max(1, len(texts) // 64)]
    rx = re.compile("|".join(re.escape(p).replace("'", "['\u2019]") for p in PHRASES), re.IGNORECASE)
    n = benchmark.pedantic(lambda: sum(1 for t in sub for _ in rx.finditer(t)), rounds=3, iterations=1)
    record(benchmark, "python re (1/64 of the data)", items=len(sub), unit="rows",
           bytes=sum(len(t.encode()) for t in sub), matches=n)


# ---- the whole pattern step of the judge: find the phrases and decide a label per row ----------

JUDGE_PHRASES = [p for g in ("decline", "sympathy", "pivot", "alternative", "hedge") for p in lexicon()[g]]


@pytest.mark.benchmark(group="refusal judge")
def test_frx_judge_pattern(benchmark, data):
    texts, _, arr, nbytes = data
    out = benchmark(judge, arr)
    counts = {c["values"]: c["counts"] for c in out.column("label").value_counts().to_pylist()}
    record(benchmark, "frx judge (pattern: scan + decide)", items=len(texts), unit="rows", bytes=nbytes, **counts)


@pytest.mark.benchmark(group="refusal judge")
def test_frx_scan_judge_lexicon(benchmark, data):
    texts, _, arr, nbytes = data
    m = Matcher(JUDGE_PHRASES)
    out = benchmark(m.scan, arr)
    record(benchmark, "frx scan of the judge's phrases (no decision)", items=len(texts), unit="rows", bytes=nbytes, matches=out.num_rows)


@pytest.mark.benchmark(group="refusal judge")
def test_hyperscan_judge_lexicon(benchmark, data):
    """Only finding the judge's phrases (no decision), per row, with Hyperscan."""
    texts, encoded, _, nbytes = data
    n = benchmark(hyperscan_rows(compile_hyperscan(JUDGE_PHRASES), encoded))
    record(benchmark, "hyperscan scan of the judge's phrases (no decision)", items=len(texts), unit="rows", bytes=nbytes, matches=n)


@pytest.mark.benchmark(group="refusal judge")
def test_prefix_baseline_judge(benchmark, data):
    """The public keyword baseline: a refusal if the response starts with a refusal prefix."""
    texts, _, _, nbytes = data
    prefixes = tuple(p.lower().replace("\u2019", "'") for p in PHRASES)

    def run():
        return sum((t.lstrip()[:80].lower().replace("\u2019", "'")).startswith(prefixes) for t in texts)

    n = benchmark(run)
    record(benchmark, "prefix baseline (Python startswith; reads 80 characters a row)", items=len(texts), unit="rows", bytes=nbytes, refusals=n)


# ---- the judge on long responses full of declines that do not count ------------------------------

# Each unit holds a decline the judge reads and sets aside (quoted, a blockquote, inside a code
# fence, a turn of phrase, an example after a colon), so it reads on to the end of the response.
# Before the judge kept what it knows about the text so far as it moves on, it re-read the text
# up to each such decline: one 2 MB row took 3.7-5.7 s (quoted, turns of phrase, examples) and
# 110 s (inside code fences); now 8-15 ms each.
SET_ASIDE = [
    'She said "I can\'t do this." ',
    "I can't stress this enough. ",
    "> I can't help with that\n",
    "```\nI can't\n```\n",
    "You could say: I can't make it, but thanks. ",
]


@pytest.fixture(scope="module")
def long_rows():
    size = scaled(2_000_000, floor=20_000)
    texts = [unit * (size // len(unit)) for unit in SET_ASIDE]
    encoded = [t.encode() for t in texts]
    return texts, encoded, pa.array(texts, pa.large_string()), sum(map(len, encoded))


@pytest.mark.benchmark(group="refusal judge, long responses of set-aside declines")
def test_frx_judge_long_rows(benchmark, long_rows):
    texts, _, arr, nbytes = long_rows
    out = benchmark(judge, arr)
    assert out.column("label").to_pylist() == ["full_compliance"] * len(texts)
    record(benchmark, "frx judge (pattern: scan + decide)", items=len(texts), unit="rows", bytes=nbytes)


@pytest.mark.benchmark(group="refusal judge, long responses of set-aside declines")
def test_hyperscan_long_rows(benchmark, long_rows):
    """Only finding the judge's phrases (no decision), per row, with Hyperscan."""
    texts, encoded, _, nbytes = long_rows
    n = benchmark(hyperscan_rows(compile_hyperscan(JUDGE_PHRASES), encoded))
    record(benchmark, "hyperscan scan of the judge's phrases (no decision)", items=len(texts), unit="rows", bytes=nbytes, matches=n)
