"""Accuracy of `frx.judge` against XSTest's human labels (a measurement, not a test).

    python benches/judge_accuracy.py [--data ../shared/data/xstest]

For each labelled file (responses of one model) and for all rows together: binary accuracy
(refusal = direct or partial), recall on partial refusals, 3-way accuracy and macro-F1; beside
frx, a plain prefix baseline on the same rows (a response is a refusal if it starts with one of
frx's lexicon phrases). The pattern judge has no training step, so every file is "unseen".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pyarrow.csv as pacsv

from frx.judge import judge
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "xstest")
    args = ap.parse_args()
    files = sorted(args.data.glob("completions_*.csv"))
    if not files:
        sys.exit(f"no completions_*.csv under {args.data}")
    rows, all_gold, all_frx, all_base = [], [], [], []
    for f in files:
        t = pacsv.read_csv(f)
        gold = [MAP[x] for x in t.column("final_label").to_pylist()]
        texts = t.column("completion").to_pylist()
        frx = judge(t.column("completion")).column("label").to_pylist()
        base = prefix_baseline(texts)
        rows.append({"file": f.name, "frx": scores(gold, frx), "prefix baseline": scores(gold, base)})
        all_gold += gold
        all_frx += frx
        all_base += base
    rows.append({"file": "all", "frx": scores(all_gold, all_frx), "prefix baseline": scores(all_gold, all_base)})
    print("| responses | method | rows | binary acc. | partial recall | 3-way acc. | macro-F1 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        for m in ("frx", "prefix baseline"):
            s = r[m]
            pr = "–" if s["partial_recall"] is None else f"{s['partial_recall']:.2f} ({s['partial_rows']})"
            print(f"| {r['file']} | {m} | {s['rows']} | {s['binary_accuracy']:.3f} | {pr} | {s['three_way_accuracy']:.3f} | {s['macro_f1']:.3f} |")
    out = Path(__file__).parent / "results" / "judge-accuracy-xstest.json"
    out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
