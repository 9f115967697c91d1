"""Would sentence embeddings tell a partial refusal from a direct one? A measurement, not a
feature: it decides whether the judge's learned step should read MiniLM embeddings.

    python benches/judge_embeddings.py [--data ../shared/data/xstest] [--threads 2]

It embeds, for each of XSTest's 1,300 labelled responses, the response, its prompt and the
response after its first sentence (where an offer of help or of alternatives is) with the
offline ``minilm`` model, and fits a logistic regression on the rows the learned step judges
(:func:`frx.judge.learned_rows`) with the pattern step's label and confidence beside the
vectors. Like the learned step, a pattern refusal stays a refusal (only partial vs direct is
decided there). Each feature set, regularisation strength and class weighting of a small grid
is scored leave one family out and leave one file out, never on rows it was trained on, next
to the shipped learned step on the same folds. Picking the best cell of the grid is tuning on
the test rows, so read the best cell as an upper bound for this kind of model.

Writes benches/results/judge-embeddings-xstest.json.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from judge_accuracy import CLASSES, MAP, family, learned_leave_one_out, scores
from sklearn.linear_model import LogisticRegression

from frx.embed import embed
from frx.judge import judge, learned_rows

HERE = Path(__file__).resolve().parent
FEATURES = {
    "response": ("response",),
    "response + prompt": ("response", "prompt"),
    "response + after first sentence": ("response", "rest"),
    "response + prompt + after first sentence": ("response", "prompt", "rest"),
}
STRENGTHS = (0.3, 1.0, 3.0)  # sklearn's C: inverse L2 strength
WEIGHTS = {"unweighted": None, "balanced": "balanced"}


def after_first_sentence(text: str) -> str:
    parts = re.split(r"(?<=[.!?])\s+", text.strip(), maxsplit=1)
    return parts[1] if len(parts) > 1 else ""


def fit_predict(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, refusal: np.ndarray,
                strength: float, weight: str | None) -> np.ndarray:
    """Class indices for the ``test`` rows; a pattern refusal is never called compliance."""
    model = LogisticRegression(C=strength, max_iter=5000, class_weight=weight).fit(x[train], y[train])
    proba = np.zeros((int(test.sum()), len(CLASSES)))
    proba[:, model.classes_] = model.predict_proba(x[test])
    proba[refusal[test], 0] = 0.0
    return proba.argmax(axis=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data" / "xstest")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the embedding model")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    files = sorted(args.data.glob("completions_*.csv"))
    if not files:
        raise SystemExit(f"no completions_*.csv under {args.data}")
    tables = {f.name: pacsv.read_csv(f) for f in files}
    names = list(tables)
    responses = [r or "" for k in names for r in tables[k].column("completion").to_pylist()]
    prompts = [p or "" for k in names for p in tables[k].column("prompt").to_pylist()]
    file_of = np.array([k for k in names for _ in range(tables[k].num_rows)])
    gold = [MAP[x] for k in names for x in tables[k].column("final_label").to_pylist()]
    y = np.array([CLASSES.index(g) for g in gold])

    started = time.perf_counter()
    vectors = {"response": embed(responses), "prompt": embed(prompts), "rest": embed([after_first_sentence(t) for t in responses])}
    embed_s = time.perf_counter() - started

    pattern = judge(pa.array(responses, pa.large_string()))
    pattern_labels = pattern.column("label").to_pylist()
    judged = np.zeros(len(responses), dtype=bool)
    judged[learned_rows(pattern)] = True
    refusal = np.array([lab in ("safe_partial_compliance", "direct_refusal") for lab in pattern_labels])
    base = np.hstack([np.array([[lab == c for c in CLASSES] for lab in pattern_labels], dtype=np.float64),
                      pattern.column("confidence").to_numpy()[:, None]])

    folds = {"leave one family out": np.array([family(k) for k in file_of]), "leave one file out": file_of}
    shipped = {"leave one family out": learned_leave_one_out(tables, family), "leave one file out": learned_leave_one_out(tables, lambda k: k)}
    results: dict[str, dict] = {}
    for fold_name, fold in folds.items():
        grid = []
        for feat_name, parts in FEATURES.items():
            x = np.hstack([base] + [vectors[p] for p in parts])
            for strength in STRENGTHS:
                for weight_name, weight in WEIGHTS.items():
                    pred = list(pattern_labels)
                    for hold in sorted(set(fold)):
                        train, test = judged & (fold != hold), judged & (fold == hold)
                        for i, c in zip(np.flatnonzero(test), fit_predict(x, y, train, test, refusal, strength, weight)):
                            pred[i] = CLASSES[c]
                    grid.append({"features": feat_name, "C": strength, "class_weight": weight_name, **scores(gold, pred)})
        best = max(grid, key=lambda r: r["macro_f1"])
        ship = scores(gold, [x for k in names for x in shipped[fold_name][k]])
        results[fold_name] = {"shipped_learned_step": ship, "best_of_grid": best, "grid": grid}
        print(f"\n{fold_name} (learned rows: {int(judged.sum())} of {len(gold)})\n")
        print("| model | features | C | classes | binary acc. | partial recall | 3-way acc. | macro-F1 |")
        print("|---|---|---:|---|---:|---:|---:|---:|")
        print(f"| shipped learned step | hashed n-grams | | 1/√freq | {ship['binary_accuracy']:.3f} | {ship['partial_recall']:.2f} | "
              f"{ship['three_way_accuracy']:.3f} | {ship['macro_f1']:.3f} |")
        for r in sorted(grid, key=lambda r: -r["macro_f1"]):
            print(f"| MiniLM + logistic regression | {r['features']} | {r['C']} | {r['class_weight']} | {r['binary_accuracy']:.3f} | "
                  f"{r['partial_recall']:.2f} | {r['three_way_accuracy']:.3f} | {r['macro_f1']:.3f} |")
    print(f"\nembedding {3 * len(responses)} texts took {embed_s:.0f} s on {args.threads} thread(s): "
          f"{3 * len(responses) / embed_s:.0f} texts/s")
    out = HERE / "results" / "judge-embeddings-xstest.json"
    out.write_text(json.dumps({"embed_seconds": round(embed_s, 1), "threads": args.threads, "texts": 3 * len(responses), **results},
                              indent=2) + "\n")


if __name__ == "__main__":
    main()
