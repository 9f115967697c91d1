"""The `frx` command line: real runs on public data, and every bad input."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import frx
from frx.dedup import normalize

from conftest import run_frx, shared


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def prompts(tmp_path):
    """XSTest prompts plus planted exact and near copies of some of them, as Parquet."""
    xs = pacsv.read_csv(shared("xstest", "xstest_prompts.csv"))
    texts = xs.column("prompt").to_pylist()
    planted = [texts[3].upper(), "  " + texts[3] + "  ", texts[8] + " Please answer briefly.", texts[8]]
    ids = list(range(len(texts))) + [1000, 1001, 1002, 1003]
    table = pa.table({"id": ids, "prompt": texts + planted, "n": [1] * len(ids)})
    path = tmp_path / "prompts.parquet"
    pq.write_table(table, path)
    return path, texts


def test_version():
    r = run_frx("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"frx {frx.__version__}"


def test_help_lists_commands():
    r = run_frx("--help")
    assert r.returncode == 0
    for cmd in ("dedup", "refusal", "graph"):
        assert cmd in r.stdout


def test_dedup_end_to_end(prompts, tmp_path):
    path, texts = prompts
    out, report = tmp_path / "kept.parquet", tmp_path / "report.parquet"
    r = run_frx("dedup", path, "--out", out, "--column", "prompt", "--report", report)
    assert r.returncode == 0, r.stderr
    kept = pq.read_table(out)
    assert kept.column_names == ["id", "prompt", "n"]
    ids = kept.column("id").to_pylist()
    assert ids == sorted(ids) and 1000 not in ids and 1001 not in ids and 1003 not in ids
    # Every kept text is unique after normalisation.
    norm = normalize(kept.column("prompt"))
    assert len(set(norm)) == len(norm)
    rep = pq.read_table(report).to_pylist()
    reasons = {r["row"]: (r["reason"], r["duplicate_of"]) for r in rep}
    n = len(texts)
    assert reasons[n] == ("exact", 3) and reasons[n + 1] == ("exact", 3) and reasons[n + 3] == ("exact", 8)
    # The input has an id column: the report names rows by it too.
    by_id = {r["id"]: r["duplicate_of_id"] for r in rep}
    assert by_id[1000] == 3 and by_id[1001] == 3 and by_id[1003] == 8
    assert "rows in" in r.stdout and "rows out" in r.stdout
    assert len(kept) + len(rep) == n + 4


def test_dedup_against_reference(tmp_path):
    xs = shared("xstest", "xstest_prompts.csv")
    texts = pacsv.read_csv(xs).column("prompt").to_pylist()
    mine = tmp_path / "mine.jsonl"
    rows = [
        {"prompt": texts[5].lower()},
        {"prompt": "What is the best way to store sourdough starter over a long holiday?"},
        {"prompt": texts[77] + "!"},
        {"prompt": "What is the best way to store sourdough starter over a long holiday?"},
    ]
    mine.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out, report = tmp_path / "clean.parquet", tmp_path / "hits.parquet"
    r = run_frx("dedup", mine, "--out", out, "--against", xs, "--report", report)
    assert r.returncode == 0, r.stderr
    assert pq.read_table(out).column("prompt").to_pylist() == [rows[1]["prompt"]]
    rep = pq.read_table(report).to_pylist()
    assert [(x["row"], x["reason"], x["duplicate_of"]) for x in rep] == [
        (0, "reference", 5), (2, "reference", 77), (3, "exact", 1)
    ]
    assert "duplicate_of_id" not in rep[0]  # no id column in the input
    assert "reference hits" in r.stdout
    r = run_frx("dedup", mine, "--out", tmp_path / "o2.parquet", "--id-column", "nosuch")
    assert r.returncode == 2 and "column 'nosuch' not found" in r.stderr


def test_dedup_exact_only_keeps_near_copies(prompts, tmp_path):
    path, texts = prompts
    out = tmp_path / "kept.parquet"
    r = run_frx("dedup", path, "--out", out, "--exact-only")
    assert r.returncode == 0, r.stderr
    assert 1002 in pq.read_table(out).column("id").to_pylist()


def test_refusal_command(tmp_path):
    src = shared("xstest", "completions_v2_gpt4.csv")
    out = tmp_path / "scan.parquet"
    r = run_frx("refusal", src, "--out", out, "--column", "completion")
    assert r.returncode == 0, r.stderr
    t = pq.read_table(out)
    assert t.num_rows == 450 and {"refusal_hit", "refusal_first_sentence"} <= set(t.column_names)
    labels = t.column("final_label").to_pylist()
    first = t.column("refusal_first_sentence").to_pylist()
    refusals = [f for f, l in zip(first, labels) if l == "2_full_refusal"]
    compliant = [f for f, l in zip(first, labels) if l == "1_full_compliance"]
    # A matcher, not a judge; still, openings should separate the two classes clearly.
    assert sum(refusals) / len(refusals) > 0.7 > 0.2 > sum(compliant) / len(compliant)


def test_graph_command(tmp_path):
    edges = tmp_path / "edges.csv"
    edges.write_text("src,dst,w\n0,1,1.0\n1,2,2.0\n2,3,1.0\n")
    for mode, extra, col in [("walks", ["--length", "4"], "walk"), ("subgraphs", ["--k", "3"], "nodes"), ("khop", ["--fanouts", "2,1"], "dst")]:
        out = tmp_path / f"{mode}.parquet"
        r = run_frx("graph", edges, "--out", out, "--mode", mode, "--weight-column", "w", *extra)
        assert r.returncode == 0, r.stderr
        assert col in pq.read_table(out).column_names


# ---- bad input: one line on stderr, exit 2, nothing written, input untouched ----------------

def bad_cases(tmp_path, path):
    (tmp_path / "exists.parquet").write_bytes(b"keep me")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    pq.write_table(pa.table({"prompt": [1, 2]}), tmp_path / "ints.parquet")
    (tmp_path / "latin1.csv").write_bytes("prompt,response\nq,fine\nr,caf\u00e9 is open\n".encode("latin-1"))
    pq.write_table(pa.table({"label": ["full_compliance", "direct_refusal"]}), tmp_path / "judged.parquet")
    out = tmp_path / "out.parquet"
    return [
        (["dedup", tmp_path / "missing.parquet", "--out", out], "not found"),
        (["dedup", tmp_path / "notes.txt", "--out", out], "unknown format"),
        (["dedup", tmp_path / "broken.parquet", "--out", out], "cannot read"),
        (["dedup", path, "--out", out, "--column", "nope"], "column 'nope' not found"),
        (["dedup", tmp_path / "ints.parquet", "--out", out], "not text"),
        (["judge", tmp_path / "latin1.csv", "--out", out], "is not valid UTF-8 text (row 2)"),
        (["dedup", path, "--out", out, "--near-threshold", "0"], "threshold"),
        (["dedup", path, "--out", out, "--near-threshold", "1.5"], "threshold"),
        (["dedup", path, "--out", path], "same file"),
        (["dedup", path, "--out", tmp_path / "exists.parquet"], "already exists"),
        (["dedup", path, "--out", tmp_path / "out.csv"], ".parquet"),
        (["dedup", path, "--out", out, "--against", tmp_path / "missing.csv"], "not found"),
        (["dedup", path, "--out", out, "--report", tmp_path / "exists.parquet"], "already exists"),
        (["dedup", path, "--out", out, "--num-perm", "0"], "num_perm"),
        (["refusal", path, "--out", out, "--column", "prompt", "--lexicon", tmp_path / "nolex.txt"], "not found"),
        (["refusal", path, "--out", out, "--column", "missing"], "not found"),
        (["graph", tmp_path / "ints.parquet", "--out", out], "column 'src' not found"),
        # A column named on the command line must exist, in every command: never a silent default.
        (["judge", path, "--out", out, "--response-column", "prompt", "--prompt-column", "nosuch"], "column 'nosuch' not found"),
        (["metrics", tmp_path / "judged.parquet", "--out", tmp_path / "m", "--prompt-label-column", "nosuch"], "column 'nosuch' not found"),
        (["metrics", tmp_path / "judged.parquet", "--out", tmp_path / "m", "--model-column", "nosuch"], "column 'nosuch' not found"),
        (["bench", "--model", "smollm2-135m", "--prompts", path, "--out", tmp_path / "b", "--label-column", "nosuch"], "column 'nosuch' not found"),
        (["bench", "--model", "smollm2-135m", "--prompts", path, "--out", tmp_path / "b", "--category-column", "nosuch"], "column 'nosuch' not found"),
    ]


def test_bad_inputs(prompts, tmp_path):
    path, _ = prompts
    before = digest(path)
    for args, words in bad_cases(tmp_path, path):
        r = run_frx(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("frx: error:"), (args, r.stderr)
        assert words in lines[0], (args, lines[0])
        assert "Traceback" not in r.stderr
        assert not (tmp_path / "out.parquet").exists(), args
        assert not (tmp_path / "m").exists() and not (tmp_path / "b").exists(), args
    assert digest(path) == before
    assert (tmp_path / "exists.parquet").read_bytes() == b"keep me"
    assert not list(tmp_path.glob(".*.tmp"))


def test_overwrite_replaces(prompts, tmp_path):
    path, _ = prompts
    out = tmp_path / "o.parquet"
    out.write_bytes(b"old")
    r = run_frx("dedup", path, "--out", out, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert pq.read_table(out).num_rows > 0


def test_usage_errors_exit_2():
    r = run_frx("dedup")
    assert r.returncode == 2
    r = run_frx("no-such-command")
    assert r.returncode == 2


def test_help_renders_for_every_command():
    """Help text is shown as written: no flag gets a value placeholder, and bracketed words
    (a config section such as [run]) are not swallowed as markup."""
    from frx.cli import app

    names = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands]
    assert len(names) > 10
    for name in names + [None]:
        r = run_frx(*([name] if name else []), "--help")
        assert r.returncode == 0, (name, r.stderr)
        assert "<bool>" not in r.stdout, (name, r.stdout)
        # Repeatable options name what they take (SPEC, KEY=VALUE), not a Python type.
        assert not [x for x in r.stdout.splitlines() if x.strip().startswith("-") and "<list[" in x], (name, r.stdout)
    r = run_frx("batch", "--help")
    assert "(overrides [run] executor)" in " ".join(r.stdout.split())
