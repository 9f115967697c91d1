"""Metrics with Wilson intervals, against hand counts and known interval values."""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from frx.errors import FrxError
from frx.metrics import compute_metrics, notes, wilson

from conftest import run_frx, shared


def test_wilson_known_values():
    lo, hi = wilson(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert wilson(0, 10)[0] == 0.0 and round(wilson(0, 10)[1], 4) == 0.2775
    assert round(wilson(10, 10)[0], 4) == 0.7225 and round(wilson(10, 10)[1], 12) == 1.0
    assert all(math.isnan(x) for x in wilson(0, 0))


def test_metrics_match_hand_counts():
    labels = ["full_compliance"] * 6 + ["safe_partial_compliance"] * 2 + ["direct_refusal"] * 2 + ["undetermined"] \
        + ["direct_refusal"] * 3 + ["safe_partial_compliance"] + ["full_compliance"]
    plabel = ["benign"] * 11 + ["toxic"] * 5
    cat = ["a", "b"] * 8
    t = pa.table({"label": labels, "label_prompt": plabel, "category": cat, "model": ["m1"] * 16})
    rows = {(r["category"], r["metric"]): r for r in compute_metrics(t, by="category").to_pylist()}
    r = rows[("all", "compliance_rate")]
    assert (r["successes"], r["n"], r["undetermined"]) == (6, 10, 1) and r["value"] == 0.6
    assert rows[("all", "usr_benign")]["successes"] == 8
    assert rows[("all", "refusal_rate")]["successes"] == 2
    r = rows[("all", "usr_toxic")]
    assert (r["successes"], r["n"]) == (4, 5)
    assert (r["ci_low"], r["ci_high"]) == wilson(4, 5)
    assert rows[("a", "compliance_rate")]["n"] + rows[("b", "compliance_rate")]["n"] == 10


def test_bad_tables():
    with pytest.raises(FrxError, match="column 'label' not found"):
        compute_metrics(pa.table({"x": [1]}))
    with pytest.raises(FrxError, match="expected one of"):
        compute_metrics(pa.table({"label": ["maybe"]}))
    with pytest.raises(FrxError, match="benign or toxic"):
        compute_metrics(pa.table({"label": ["full_compliance"], "label_prompt": ["spicy"]}))


def test_prompt_labels_of_other_datasets():
    # XSTest names its prompt labels safe / unsafe: the same as benign / toxic.
    labels = ["full_compliance", "direct_refusal", "direct_refusal", "full_compliance"]
    ours = compute_metrics(pa.table({"label": labels, "label_prompt": ["benign", "benign", "toxic", "toxic"]}))
    theirs = compute_metrics(pa.table({"label": labels, "label_prompt": ["safe", "Safe ", "unsafe", "harmful"]}))
    assert ours.equals(theirs)


def test_cli_writes_every_artifact(tmp_path):
    judged = tmp_path / "judged.parquet"
    r = run_frx("judge", shared("xstest", "completions_v2_llama2orig.csv"), "--out", judged, "--response-column", "completion")
    assert r.returncode == 0, r.stderr
    t = pq.read_table(judged)
    t = t.append_column("label_prompt", pa.array(["toxic" if x.startswith("contrast") else "benign" for x in t.column("type").to_pylist()]))
    t = t.append_column("model", pa.array(["llama2"] * t.num_rows))
    pq.write_table(t, judged)
    out = tmp_path / "report"
    r = run_frx("metrics", judged, "--out", out, "--by", "type", "--response-column", "completion")
    assert r.returncode == 0, r.stderr
    for name in ("metrics.parquet", "metrics.md", "report.html", "compliance_by_category.png", "overrefusal_vs_safety.png"):
        assert (out / name).stat().st_size > 0, name
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "llama2" in html
    md = (out / "metrics.md").read_text()
    # What was run, and examples of what users most want to see, in both reports.
    for text in (md, html):
        assert "frx version" in text and "decided by" in text
        assert "Examples: benign prompts the model refused" in text
        # Llama-2 answered no toxic prompt in full here: that section is left out rather than empty.
        assert ("Examples: toxic prompts the model answered in full" in text) == any(
            lp == "toxic" and lab == "full_compliance" for lp, lab in zip(t.column("label_prompt").to_pylist(), t.column("label").to_pylist()))
    refused = [x for x in md.split("## Examples: benign prompts the model refused")[1].split("## Examples")[0].splitlines()
               if x.startswith("| llama2")]
    assert 1 <= len(refused) and all("direct_refusal" in x for x in refused)
    m = pq.read_table(out / "metrics.parquet")
    assert set(m.column("metric").to_pylist()) == {"compliance_rate", "usr_benign", "refusal_rate", "usr_toxic"}
    again = run_frx("metrics", judged, "--out", out)
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_no_prompt_label_column_is_said_in_the_output_and_the_report(tmp_path):
    judged = tmp_path / "judged.parquet"
    pq.write_table(pa.table({"label": ["full_compliance", "direct_refusal", "safe_partial_compliance"]}), judged)
    out = tmp_path / "report"
    r = run_frx("metrics", judged, "--out", out)
    assert r.returncode == 0, r.stderr
    said = "all 3 rows counted as benign: no prompt-label column"
    assert said in r.stdout and said in (out / "metrics.md").read_text() and said in (out / "report.html").read_text()
    assert "one model: no model column" in r.stdout
    assert notes(pq.read_table(out / "metrics.parquet"))["all_benign"] is True
    # Every metric is defined with its denominator, in both reports.
    for text in ((out / "metrics.md").read_text(), (out / "report.html").read_text()):
        assert "n benign" in text and "n toxic" in text and "undetermined" in text
    # With a label column, nothing is assumed.
    pq.write_table(pa.table({"label": ["full_compliance", "direct_refusal"], "label_prompt": ["benign", "toxic"],
                             "model": ["m", "m"]}), judged)
    r = run_frx("metrics", judged, "--out", out, "--overwrite")
    assert r.returncode == 0 and "counted as benign" not in r.stdout and "no model column" not in r.stdout
    assert notes(pq.read_table(out / "metrics.parquet")) == {"notes": [], "all_benign": False}


def test_metrics_read_only_their_columns_from_any_format(tmp_path):
    """The same judged rows as Parquet and as JSONL give the same metrics; the response column
    (the bulk of a judged file) is not needed."""
    import json

    from frx.io import read_columns

    rows = [{"label": lab, "label_prompt": lp, "model": m, "response": "x" * 50}
            for lab, lp, m in [("full_compliance", "benign", "a"), ("direct_refusal", "benign", "a"),
                               ("direct_refusal", "toxic", "b"), ("safe_partial_compliance", "toxic", "b")] * 5]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "j.parquet")
    (tmp_path / "j.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_columns(tmp_path / "j.jsonl", ["label", "model", "nosuch"]).column_names == ["label", "model"]
    outs = []
    for name in ("j.parquet", "j.jsonl"):
        r = run_frx("metrics", tmp_path / name, "--out", tmp_path / f"m-{name}")
        assert r.returncode == 0, r.stderr
        outs.append(pq.read_table(tmp_path / f"m-{name}" / "metrics.parquet"))
    assert outs[0].equals(outs[1])
