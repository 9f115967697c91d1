"""Accuracy of `frx.judge` against XSTest's human labels (a measurement, not a test).

    python benches/judge_accuracy.py [--data ../shared/data/xstest] [--judge-model SPEC]

For each labelled file (responses of one model) and for all rows together: binary accuracy
(refusal = direct or partial), recall on partial refusals (labelled exactly partial, and found
as a refusal at all: the measure public refusal detectors are quoted with, since they have no
partial class), 3-way accuracy and macro-F1; beside frx, two keyword baselines on the same rows,
with frx's lexicon phrases: a response is a refusal if it starts with one (prefix lists, as
XSTest's and HarmBench's), or if one occurs anywhere in it (substring checks, as GCG's and
JailbreakBench's).

Then, for the pattern step: each rule's precision beside the confidence the kernel gives it
(the confidences are these precisions, smoothed); and the cascade: the share of rows below
`--min-confidence` (default 0.7) that would go to an LLM judge, and the scores if that judge
agreed with the human labels on them (an upper bound for any judge model). With
`--judge-model SPEC` the cascade runs for real with that model (any frx backend) and is scored.

The pattern judge has no training step, so every file is "unseen" to it. The learned step is
evaluated leave-one-out, never on rows it was trained on: "leave one family out" trains on the
other model family's files (GPT-4 ↔ Llama-2) — the honest figure for a model frx has not seen;
"leave one file out" trains on the other three files (same family, other prompts or version).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
import sys
from pathlib import Path

import pyarrow.csv as pacsv

import pyarrow as pa

from frx.classifier import Classifier
from frx.judge import judge, rule_of
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
        "partial_found_as_refusal": round(sum(p != "full_compliance" for p in part) / len(part), 3) if part else None,
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


def anywhere_baseline(texts: list[str]) -> list[str]:
    """A response is a refusal if a lexicon phrase occurs anywhere in it: how substring
    detectors (GCG's and JailbreakBench's) decide, here with frx's own phrases."""
    phrases, _ = load_lexicon()
    low = [p.lower().replace("\u2019", "'") for p in phrases]
    out = []
    for t in texts:
        s = (t or "").lower().replace("\u2019", "'")
        out.append("direct_refusal" if any(p in s for p in low) else "full_compliance")
    return out


def family(name: str) -> str:
    return "gpt4" if "gpt4" in name else "llama2"


def learned_leave_one_out(tables: dict[str, pa.Table], fold, **fit_args) -> dict[str, list[str]]:
    """Labels from the learned mode for each file, trained without the rows of its fold."""
    out = {}
    for hold in sorted({fold(k) for k in tables}):
        train = pa.concat_tables([t for k, t in tables.items() if fold(k) != hold])
        clf = Classifier.train(train.column("completion"), train.column("final_label").to_pylist(), **fit_args)
        for k, t in tables.items():
            if fold(k) == hold:
                out[k] = judge(t.column("completion"), mode="learned", classifier=clf).column("label").to_pylist()
    return out


def rule_table(gold: list[str], verdicts: pa.Table) -> list[dict]:
    """Precision of each pattern rule (evidence with its quoted snippets blanked, and the
    confidence the kernel gave it) on the labelled rows."""
    by: dict[tuple, list[int]] = {}
    for g, r in zip(gold, verdicts.to_pylist()):
        key = (r["label"], rule_of(r["evidence"]), round(r["confidence"], 2))
        cell = by.setdefault(key, [0, 0])
        cell[0] += g == r["label"]
        cell[1] += 1
    return [{"label": k[0], "rule": k[1], "confidence": k[2], "right": v[0], "decided": v[1],
             "smoothed_precision": round((v[0] + 1) / (v[1] + 2), 3)} for k, v in sorted(by.items(), key=lambda kv: -kv[1][1])]


def cascade_rows(gold: list[str], verdicts: pa.Table, min_confidence: float, llm: list[str] | None = None) -> dict:
    """Scores when the pattern rows below ``min_confidence`` are relabelled: by the human label
    (``llm`` None: the upper bound of any judge model) or by a judge model's labels."""
    conf = verdicts.column("confidence").to_numpy()
    source = verdicts.column("label_source").to_pylist()
    pred = verdicts.column("label").to_pylist()
    routed = [i for i in range(len(pred)) if source[i] == "pattern" and conf[i] < min_confidence]
    before = sum(pred[i] == gold[i] for i in routed)
    for k, i in enumerate(routed):
        pred[i] = gold[i] if llm is None else llm[k]
    out = {"min_confidence": min_confidence, "routed_rows": len(routed), "routed_share": round(len(routed) / len(pred), 3),
           **scores(gold, pred)}
    if llm is not None:  # how the judge model did on the rows it was sent
        out["judge_agrees_on_routed"] = round(sum(llm[k] == gold[i] for k, i in enumerate(routed)) / max(len(routed), 1), 3)
        out["judge_labels_on_routed"] = dict(sorted(Counter(llm).items()))
        out["pattern_agrees_on_routed"] = round(before / max(len(routed), 1), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "xstest")
    ap.add_argument("--min-confidence", type=float, default=0.7)
    ap.add_argument("--judge-model", help="run the cascade for real with this model spec (slow on CPU)")
    args = ap.parse_args()
    files = sorted(args.data.glob("completions_*.csv"))
    if not files:
        sys.exit(f"no completions_*.csv under {args.data}")
    tables = {f.name: pacsv.read_csv(f) for f in files}
    preds: dict[str, dict[str, list[str]]] = {
        "prefix baseline": {k: prefix_baseline(t.column("completion").to_pylist()) for k, t in tables.items()},
        "anywhere baseline": {k: anywhere_baseline(t.column("completion").to_pylist()) for k, t in tables.items()},
        "frx pattern": {k: judge(t.column("completion")).column("label").to_pylist() for k, t in tables.items()},
        "frx learned, leave one family out": learned_leave_one_out(tables, family),
        "frx learned, leave one file out": learned_leave_one_out(tables, lambda k: k),
        # The class weighting the shipped step does not use, for the trade-off: balanced classes.
        "frx learned (balanced classes), leave one file out": learned_leave_one_out(tables, lambda k: k, class_weight_power=1.0),
    }
    gold = {k: [MAP[x] for x in t.column("final_label").to_pylist()] for k, t in tables.items()}
    rows = []
    for k in list(tables) + ["all"]:
        keys = list(tables) if k == "all" else [k]
        g = [x for kk in keys for x in gold[kk]]
        rows.append({"file": k, **{m: scores(g, [x for kk in keys for x in p[kk]]) for m, p in preds.items()}})
    print("| responses | method | rows | binary acc. | partial recall (exact) | partial found as refusal | 3-way acc. | macro-F1 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        for m in preds:
            s = r[m]
            pr = "–" if s["partial_recall"] is None else f"{s['partial_recall']:.2f} ({s['partial_rows']})"
            pf = "–" if s["partial_found_as_refusal"] is None else f"{s['partial_found_as_refusal']:.2f}"
            print(f"| {r['file']} | {m} | {s['rows']} | {s['binary_accuracy']:.3f} | {pr} | {pf} | {s['three_way_accuracy']:.3f} | {s['macro_f1']:.3f} |")

    names = list(tables)
    all_gold = [x for k in names for x in gold[k]]
    responses = pa.concat_arrays([tables[k].column("completion").combine_chunks() for k in names])
    prompts = pa.concat_arrays([tables[k].column("prompt").combine_chunks() for k in names])
    verdicts = judge(responses)
    rules = rule_table(all_gold, verdicts)
    print("\nPattern rules on all rows: precision vs the kernel's confidence\n")
    print("| label | rule | decided | right | smoothed precision | confidence |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rules:
        print(f"| {r['label']} | {r['rule']} | {r['decided']} | {r['right']} | {r['smoothed_precision']:.2f} | {r['confidence']:.2f} |")

    cascade = {f"upper bound at {t}": cascade_rows(all_gold, verdicts, t) for t in sorted({0.5, args.min_confidence, 0.9, 0.95})}
    if args.judge_model:
        from frx.llm import load_judge_model

        model = load_judge_model(args.judge_model)
        real = judge(responses, prompts=prompts, mode="cascade", judge_model=model, min_confidence=args.min_confidence)
        llm = [lab for lab, src in zip(real.column("label").to_pylist(), real.column("label_source").to_pylist()) if src == "llm"]
        cascade[args.judge_model] = cascade_rows(all_gold, verdicts, args.min_confidence, llm)
    print("\nCascade, all rows: pattern decisions below --min-confidence go to the LLM judge\n")
    print("| LLM judge on the routed rows | --min-confidence | routed rows | binary acc. | partial recall (exact) | 3-way acc. | macro-F1 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, c in cascade.items():
        who = "agrees with the human labels (upper bound)" if name.startswith("upper bound") else name
        print(f"| {who} | {c['min_confidence']} | {c['routed_rows']} ({c['routed_share']:.1%}) | {c['binary_accuracy']:.3f} | "
              f"{c['partial_recall']:.2f} | {c['three_way_accuracy']:.3f} | {c['macro_f1']:.3f} |")
    for name, c in cascade.items():
        if "judge_agrees_on_routed" in c:
            print(f"\n{name} on the {c['routed_rows']} rows sent to it: agrees with the human labels on "
                  f"{c['judge_agrees_on_routed']:.1%} (the pattern step's labels: {c['pattern_agrees_on_routed']:.1%}); "
                  f"its labels: {c['judge_labels_on_routed']}")
    out = Path(__file__).parent / "results" / "judge-accuracy-xstest.json"
    out.write_text(json.dumps({"files": rows, "pattern_rules": rules, "cascade": cascade}, indent=2) + "\n")


if __name__ == "__main__":
    main()
