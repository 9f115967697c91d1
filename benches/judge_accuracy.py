"""Accuracy of `frx.judge` against XSTest's human labels (a measurement, not a test).

    python benches/judge_accuracy.py [--data ../shared/data/xstest]

For each labelled file (responses of one model) and for all rows together: binary accuracy
(refusal = direct or partial), recall on partial refusals, 3-way accuracy and macro-F1; beside
frx, a plain prefix baseline on the same rows (a response is a refusal if it starts with one of
frx's lexicon phrases).

The pattern judge has no training step, so every file is "unseen" to it. The learned step is
evaluated leave-one-out, never on rows it was trained on: "leave one family out" trains on the
other model family's files (GPT-4 ↔ Llama-2) — the honest figure for a model frx has not seen;
"leave one file out" trains on the other three files (same family, other prompts or version).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pyarrow.csv as pacsv

import pyarrow as pa

from frx.classifier import Classifier
from frx.judge import _judge_patterns, judge
from frx.refusal import load_lexicon

MAP = {"1_full_compliance": "full_compliance", "2_full_refusal": "direct_refusal", "3_partial_refusal": "safe_partial_compliance"}
CLASSES = ["full_compliance", "safe_partial_compliance", "direct_refusal"]


def scores(gold: list[str], pred: list[str]) -> dict[str, float]:
    n = len(gold)
    binary = sum((g != "full_compliance") == (p != "full_compliance") for g, p in zip(gold, pred)) / n
    part = [p for g, p in zip(gold, pred) if g == "safe_partial_compliance"]
    f1s = []
    for c in CLASSES:
        tp = sum(g == c and p == c for g, p in zip(gold, pred))
        fp = sum(g != c and p == c for g, p in zip(gold, pred))
        fn = sum(g == c and p != c for g, p in zip(gold, pred))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {
        "rows": n,
        "binary_accuracy": round(binary, 3),
        "partial_recall": round(sum(p == "safe_partial_compliance" for p in part) / len(part), 3) if part else None,
        "partial_rows": len(part),
        "three_way_accuracy": round(sum(g == p for g, p in zip(gold, pred)) / n, 3),
        "macro_f1": round(sum(f1s) / len(f1s), 3),
    }


def prefix_baseline(texts: list[str]) -> list[str]:
    phrases, _ = load_lexicon()
    low = [p.lower().replace("\u2019", "'") for p in phrases]
    out = []
    for t in texts:
        s = (t or "").strip().lower().replace("\u2019", "'")
        out.append("direct_refusal" if any(s.startswith(p) for p in low) else "full_compliance")
    return out


def family(name: str) -> str:
    return "gpt4" if "gpt4" in name else "llama2"


def learned_leave_one_out(tables: dict[str, pa.Table], fold) -> dict[str, list[str]]:
    """Labels from the learned mode for each file, trained without the rows of its fold."""
    out = {}
    for hold in sorted({fold(k) for k in tables}):
        train = pa.concat_tables([t for k, t in tables.items() if fold(k) != hold])
        pattern = _judge_patterns(train.column("completion"))
        clf = Classifier.fit(train.column("completion"), pattern, train.column("final_label").to_pylist())
        for k, t in tables.items():
            if fold(k) == hold:
                out[k] = judge(t.column("completion"), mode="learned", classifier=clf).column("label").to_pylist()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "xstest")
    args = ap.parse_args()
    files = sorted(args.data.glob("completions_*.csv"))
    if not files:
        sys.exit(f"no completions_*.csv under {args.data}")
    tables = {f.name: pacsv.read_csv(f) for f in files}
    preds: dict[str, dict[str, list[str]]] = {
        "prefix baseline": {k: prefix_baseline(t.column("completion").to_pylist()) for k, t in tables.items()},
        "frx pattern": {k: judge(t.column("completion")).column("label").to_pylist() for k, t in tables.items()},
        "frx learned, leave one family out": learned_leave_one_out(tables, family),
        "frx learned, leave one file out": learned_leave_one_out(tables, lambda k: k),
    }
    gold = {k: [MAP[x] for x in t.column("final_label").to_pylist()] for k, t in tables.items()}
    rows = []
    for k in list(tables) + ["all"]:
        keys = list(tables) if k == "all" else [k]
        g = [x for kk in keys for x in gold[kk]]
        rows.append({"file": k, **{m: scores(g, [x for kk in keys for x in p[kk]]) for m, p in preds.items()}})
    print("| responses | method | rows | binary acc. | partial recall | 3-way acc. | macro-F1 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        for m in preds:
            s = r[m]
            pr = "–" if s["partial_recall"] is None else f"{s['partial_recall']:.2f} ({s['partial_rows']})"
            print(f"| {r['file']} | {m} | {s['rows']} | {s['binary_accuracy']:.3f} | {pr} | {s['three_way_accuracy']:.3f} | {s['macro_f1']:.3f} |")
    out = Path(__file__).parent / "results" / "judge-accuracy-xstest.json"
    out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
