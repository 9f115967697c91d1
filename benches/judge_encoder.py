"""Does the encoder tier (MiniLM fine-tuned, :mod:`frx.judge_encoder`) beat the fast tier out
of family? A measurement, not a test.

    python benches/judge_encoder.py [--data DIR] [--families GPT-4,Llama-2,GPT-3.5] [--epochs 2]

For each model family in turn, both tiers are trained on every other labelled source (as
`judge_accuracy.py` loads them) and scored on the held-out family, on the same rows, with the
same fast-path rules in front. Also reports the encoder's training and inference speed on this
machine (rows/s, torch threads). Results go to `benches/results/judge-encoder.json` and `.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pyarrow as pa
import torch
from judge_accuracy import FAMILY, ROOT, sources
from report import machine

from frx.judge_train import train
from frx.judge import judge
from frx.judge_encoder import DEFAULTS, train_encoder
from frx.judge_eval import markdown_table, prefix_baseline, scores


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("FRX_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("--families", default="GPT-4,Llama-2,GPT-3.5")
    ap.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    ap.add_argument("--max-tokens", type=int, default=DEFAULTS["max_tokens"])
    ap.add_argument("--limit", type=int, default=None, help="rows per source (a smoke run; default all)")
    args = ap.parse_args()
    tables = {k: t.slice(0, args.limit) for k, t in sources(args.data).items()}
    rows, runs = [], []
    gold_all, enc_all, fast_all = [], [], []
    for hold in args.families.split(","):
        train_t = pa.concat_tables([t for k, t in tables.items() if FAMILY[k] != hold])
        test = pa.concat_tables([t for k, t in tables.items() if FAMILY[k] == hold])
        folds = [FAMILY[k] for k in tables if FAMILY[k] != hold for _ in range(tables[k].num_rows)]
        fast, _ = train(train_t, folds=folds)
        t0 = time.perf_counter()
        enc, report = train_encoder(train_t, folds=folds, epochs=args.epochs, max_tokens=args.max_tokens)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ev = judge(test.column("response"), prompts=test.column("prompt"), mode="encoder", classifier=enc)
        infer_s = time.perf_counter() - t0
        fv = judge(test.column("response"), prompts=test.column("prompt"), classifier=fast)
        gold = test.column("label").to_pylist()
        what = f"{hold} (family out)"
        rows += [(what, "encoder tier", scores(gold, ev.column("label").to_pylist(), ev.column("confidence").to_numpy())),
                 (what, "fast tier (default)", scores(gold, fv.column("label").to_pylist(), fv.column("confidence").to_numpy())),
                 (what, "prefix list", scores(gold, prefix_baseline(test.column("response").to_pylist())))]
        gold_all += gold
        enc_all.append(ev)
        fast_all.append(fv)
        encoded = int((ev.column("label_source").to_numpy(zero_copy_only=False) == "encoder").sum())
        runs.append({"held_out": hold, "train_rows": report["trained_on"], "train_seconds": round(train_s, 1),
                     "train_rows_per_s": round(report["trained_on"] * args.epochs / train_s, 1),
                     "test_rows": test.num_rows, "encoder_rows": encoded, "infer_seconds": round(infer_s, 1),
                     "infer_rows_per_s": round(encoded / infer_s, 1), "temperature": report["temperature"],
                     "loss_first_50": report["loss_first_50"], "loss_last_50": report["loss_last_50"]})
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    ev, fv = pa.concat_tables(enc_all), pa.concat_tables(fast_all)
    what = "all held-out families"
    rows += [(what, "encoder tier", scores(gold_all, ev.column("label").to_pylist(), ev.column("confidence").to_numpy())),
             (what, "fast tier (default)", scores(gold_all, fv.column("label").to_pylist(), fv.column("confidence").to_numpy()))]
    result = {"command": "python benches/judge_encoder.py " + " ".join(sys.argv[1:]), "machine": machine(),
              "torch_threads": torch.get_num_threads(), "device": "cuda" if torch.cuda.is_available() else "cpu",
              "settings": {**DEFAULTS, "epochs": args.epochs, "max_tokens": args.max_tokens}, "runs": runs,
              "scores": [{"rows": w, "method": m, **s} for w, m, s in rows]}
    out = ROOT / "benches" / "results" / "judge-encoder"
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    md = ["## Encoder tier vs fast tier, leave one model family out", "", markdown_table(rows), "",
          "| held out | train rows | train s | train rows/s | encoder rows | infer rows/s |", "|---|---:|---:|---:|---:|---:|"]
    md += [f"| {r['held_out']} | {r['train_rows']} | {r['train_seconds']} | {r['train_rows_per_s']} | {r['encoder_rows']} | "
           f"{r['infer_rows_per_s']} |" for r in runs]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
