"""Accuracy of `frx judge` against human labels, out of sample (a measurement, not a test).

    python benches/judge_accuracy.py [--data DIR] [--quick]

Labelled sources: XSTest's four completion files (GPT-4 and Llama-2 answers), the three
chatgpt-refusals files (GPT-3.5 answers; tones mapped as `frx.labelled` documents) from the
public data directory (`FRX_DATA`, default `../shared/data`), and frx's own family cases
(`data/judge_cases.jsonl`, written and labelled by the frx authors).

The headline is **leave one model family out**: for GPT-4, Llama-2 and GPT-3.5 in turn, the
learned judge is trained (and calibrated, out of fold) on every other source and scored on the
held-out family, next to the pattern rules and two string baselines (a prefix list, a
substring list) on the same rows. Then **leave one dataset out** (each source in turn). The
shipped weights scored on the rows they were trained on are printed last, labelled in-sample.
Results go to `benches/results/judge-accuracy.json` and `.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from frx.judge_train import train
from frx.judge import judge
from frx.judge_eval import markdown_table, prefix_baseline, scores, substring_baseline
from frx.labelled import read_labelled

ROOT = Path(__file__).resolve().parents[1]
FAMILY = {"completions_v1_gpt4.csv": "GPT-4", "completions_v2_gpt4.csv": "GPT-4",
          "completions_v1_llama2.csv": "Llama-2", "completions_v2_llama2orig.csv": "Llama-2",
          "nyp.json": "GPT-3.5", "political_figures.json": "GPT-3.5", "quora_insincere_hand_labeled.json": "GPT-3.5",
          "judge_cases.jsonl": "frx cases"}


def sources(data: Path) -> dict[str, pa.Table]:
    files = sorted((data / "xstest").glob("completions_*.csv")) + sorted((data / "chatgpt_refusals").glob("*.json"))
    if not files:
        sys.exit(f"no labelled files under {data} (set FRX_DATA to the public data directory)")
    files.append(ROOT / "data" / "judge_cases.jsonl")
    return {f.name: read_labelled(f) for f in files}


def predict(model, t: pa.Table) -> tuple[list[str], np.ndarray]:
    v = judge(t.column("response"), prompts=t.column("prompt"), classifier=model)
    return v.column("label").to_pylist(), v.column("confidence").to_numpy()


def held_out(tables: dict[str, pa.Table], group, names: list[str]) -> dict[str, dict]:
    """For each held-out group: the learned judge trained on the rest, its predictions."""
    out = {}
    for hold in names:
        train_t = pa.concat_tables([t for k, t in tables.items() if group(k) != hold])
        folds = [FAMILY[k] for k in tables if group(k) != hold for _ in range(tables[k].num_rows)]
        model, report = train(train_t, folds=folds)
        test = pa.concat_tables([t for k, t in tables.items() if group(k) == hold])
        labels, conf = predict(model, test)
        out[hold] = {"test": test, "labels": labels, "confidence": conf, "temperature": report["temperature"]}
        print(f"  held out {hold}: {test.num_rows} rows, T={report['temperature']:.2f}", file=sys.stderr)
    return out


def compare(what: str, test: pa.Table, labels: list[str], conf: np.ndarray) -> list[tuple[str, str, dict]]:
    gold = test.column("label").to_pylist()
    resp = test.column("response").to_pylist()
    pat = judge(test.column("response"), mode="pattern")
    return [
        (what, "frx learned (default)", scores(gold, labels, conf)),
        (what, "frx pattern", scores(gold, pat.column("label").to_pylist(), pat.column("confidence").to_numpy())),
        (what, "prefix list", scores(gold, prefix_baseline(resp))),
        (what, "substring list", scores(gold, substring_baseline(resp))),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("FRX_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("--quick", action="store_true", help="leave one family out only")
    args = ap.parse_args()
    tables = sources(args.data)
    result: dict[str, list] = {}
    md = []

    print("leave one model family out", file=sys.stderr)
    fam = held_out(tables, lambda k: FAMILY[k], ["GPT-4", "Llama-2", "GPT-3.5"])
    rows = []
    for hold, r in fam.items():
        rows += compare(f"{hold} (family out)", r["test"], r["labels"], r["confidence"])
    allt = pa.concat_tables([r["test"] for r in fam.values()])
    rows += compare("all three families, each out", allt, sum((r["labels"] for r in fam.values()), []),
                    np.concatenate([r["confidence"] for r in fam.values()]))
    result["leave_one_family_out"] = [{"rows": w, "method": m, **s} for w, m, s in rows]
    md += ["## Leave one model family out (headline)", "", markdown_table(rows), ""]
    reli = rows[-4][2]["reliability"]
    md += ["Reliability of the learned judge, all three families out of family:", "",
           "| confidence | rows | mean confidence | right |", "|---|---:|---:|---:|"]
    md += [f"| {b['bin']} | {b['rows']} | {b['mean_confidence']:.3f} | {b['right']:.3f} |" for b in reli] + [""]

    if not args.quick:
        print("leave one dataset out", file=sys.stderr)
        ds = held_out(tables, lambda k: k, list(tables))
        rows = []
        for hold, r in ds.items():
            rows += compare(f"{hold} (dataset out)", r["test"], r["labels"], r["confidence"])
        result["leave_one_dataset_out"] = [{"rows": w, "method": m, **s} for w, m, s in rows]
        md += ["## Leave one dataset out", "", markdown_table(rows), ""]

        print("in sample", file=sys.stderr)
        everything = pa.concat_tables(list(tables.values()))
        labels, conf = predict(None, everything)  # the shipped weights
        rows = compare("all sources (IN SAMPLE: the shipped weights saw these rows)", everything, labels, conf)[:1]
        result["in_sample"] = [{"rows": w, "method": m, **s} for w, m, s in rows]
        md += ["## In sample (shipped weights, trained on these rows)", "", markdown_table(rows), ""]

    out = ROOT / "benches" / "results" / ("judge-accuracy-quick" if args.quick else "judge-accuracy")
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
