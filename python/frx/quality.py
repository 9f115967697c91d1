"""Quality of a generated prompt set: Self-BLEU and Dist-2 (the paper's Table 1 measures), plus
the funnel and pipeline counts that `frx generate` records.

Self-BLEU: for each prompt, BLEU-4 against all other prompts as references (clipped n-gram
precision, uniform weights, brevity penalty from the closest reference length, zero counts
smoothed to 0.1), averaged; lower = more diverse. It costs O(n²): sets larger than
``max_prompts`` (300 by default; 0 = all) are scored on a seeded sample, and the report says how
many were scored. Dist-2: distinct word bigrams over all word bigrams; higher = more diverse.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow as pa

_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _ngrams(toks: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))


def bleu(hypothesis: list[str], references: Sequence[list[str]], max_n: int = 4) -> float:
    if not hypothesis or not references:
        return 0.0
    log_p = 0.0
    for n in range(1, max_n + 1):
        hyp = _ngrams(hypothesis, n)
        total = sum(hyp.values())
        if total == 0:
            log_p += math.log(0.1 / 1)
            continue
        best: Counter[tuple[str, ...]] = Counter()
        for ref in references:
            for g, c in _ngrams(ref, n).items():
                if c > best[g]:
                    best[g] = c
        clipped = sum(min(c, best[g]) for g, c in hyp.items())
        log_p += math.log((clipped if clipped else 0.1) / total)
    hl = len(hypothesis)
    rl = min((len(r) for r in references), key=lambda r: (abs(r - hl), r))
    bp = 1.0 if hl > rl else math.exp(1 - rl / hl)
    return bp * math.exp(log_p / max_n)


def self_bleu(texts: Sequence[str], max_prompts: int = 300, seed: int = 0) -> float | None:
    """Mean BLEU-4 of each text against all the others; on a seeded sample of ``max_prompts``
    texts when there are more (0: all of them)."""
    toks = _scored(texts, max_prompts, seed)
    if len(toks) < 2:
        return None
    return sum(bleu(h, toks[:i] + toks[i + 1 :]) for i, h in enumerate(toks)) / len(toks)


def _scored(texts: Sequence[str], max_prompts: int, seed: int) -> list[list[str]]:
    toks = [tokens(t) for t in texts if t]
    if max_prompts and len(toks) > max_prompts:
        toks = random.Random(seed).sample(toks, max_prompts)
    return toks


def self_bleu_scored(texts: Sequence[str], max_prompts: int = 300) -> int:
    """How many texts :func:`self_bleu` scores."""
    n = sum(1 for t in texts if t)
    return min(n, max_prompts) if max_prompts else n


def dist_n(texts: Sequence[str], n: int = 2) -> float | None:
    grams: Counter[tuple[str, ...]] = Counter()
    for t in texts:
        if t:
            grams.update(_ngrams(tokens(t), n))
    total = sum(grams.values())
    return len(grams) / total if total else None


def quality_report(dataset: "pa.Table", funnel: list[dict] | None = None, *, max_prompts: int = 300, seed: int = 0) -> dict:
    """Diversity measures overall and per category (``category_text``, else ``category``), plus
    what the funnel says (if given). Self-BLEU is scored on at most ``max_prompts`` prompts
    (0: all), sampled with ``seed``."""
    prompts = dataset.column("prompt").to_pylist()
    cat_col = next((c for c in ("category_text", "category") if c in dataset.column_names), None)
    cats = [None if c is None else str(c) for c in dataset.column(cat_col).to_pylist()] if cat_col else [None] * len(prompts)

    def measures(sel: list[str]) -> dict:
        return {"prompts": len(sel), "self_bleu": _r(self_bleu(sel, max_prompts, seed)),
                "self_bleu_scored": self_bleu_scored(sel, max_prompts), "dist_2": _r(dist_n(sel, 2))}

    rep: dict = {**measures(prompts), "self_bleu_sample": {"max_prompts": max_prompts, "seed": seed},
                 "category_column": cat_col, "per_category": {}}
    for c in sorted({c for c in cats if c is not None}):
        rep["per_category"][c] = measures([p for p, k in zip(prompts, cats) if k == c])
    if funnel:
        step = {f["step"]: f for f in funnel}
        rep["funnel"] = funnel
        v = step.get("validate_pool")
        rep["pool_rejection_rate"] = _r(v.get("refused_by_any", v["rows_out"]) / v["rows_in"]) if v and v["rows_in"] else None
        o = step.get("orchestrate")
        rep["orchestrator_benign_share"] = _r(o["rows_out"] / o["rows_in"]) if o and o["rows_in"] else None
        d = step.get("dedup", {}).get("dropped", {})
        rep["near_duplicates"] = d.get("near duplicate", 0) + d.get("exact duplicate", 0)
        rep["contamination_hits"] = d.get("in a reference set", 0)
        rep["seed_copies"] = d.get("copies a seed", 0)
        calls = sum(f.get("model_calls", 0) + f.get("cache_hits", 0) for f in funnel)
        tokens = sum(f.get("tokens", 0) for f in funnel)
        rep["model_calls"] = calls
        rep["model_calls_per_prompt"] = _r(calls / len(prompts)) if prompts else None
        rep["generated_tokens_per_prompt"] = _r(tokens / len(prompts)) if prompts else None
    return rep


def _na(x: object) -> str:
    return "n/a" if x is None else str(x)


def quality_markdown(rep: dict) -> str:
    scored = rep.get("self_bleu_scored", rep["prompts"])
    sample = rep.get("self_bleu_sample", {})
    note = (f" (on a sample of {scored:,} of {rep['prompts']:,} prompts, seed {sample.get('seed', 0)}; "
            "--self-bleu-sample 0 scores all)") if scored < rep["prompts"] else ""
    lines = ["# frx quality report", "", f"- prompts: {rep['prompts']}",
             f"- Self-BLEU (lower = more diverse): {_na(rep['self_bleu'])}{note}", f"- Dist-2 (higher = more diverse): {_na(rep['dist_2'])}"]
    for k, label in [("pool_rejection_rate", "rejection rate by the validation pool (refused by at least one model)"),
                     ("orchestrator_benign_share", "share the orchestrator judged a valid case"),
                     ("near_duplicates", "exact + near duplicates removed"), ("contamination_hits", "reference-set (contamination) hits"),
                     ("seed_copies", "candidates that copied a seed"),
                     ("model_calls_per_prompt", "model calls per accepted prompt"),
                     ("generated_tokens_per_prompt", "generated tokens per accepted prompt")]:
        if k in rep:
            lines.append(f"- {label}: {_na(rep[k])}")
    if rep.get("funnel"):
        lines += ["", "## Funnel", "", "| step | in | out | dropped | model calls | cache hits | seconds |", "|---|---:|---:|---|---:|---:|---:|"]
        for f in rep["funnel"]:
            drops = ", ".join(f"{k}: {v}" for k, v in f["dropped"].items()) or "–"
            lines.append(f"| {f['step']} | {f['rows_in']} | {f['rows_out']} | {drops} | {f.get('model_calls', 0)} | {f.get('cache_hits', 0)} | {f['seconds']} |")
    if rep["per_category"]:
        lines += ["", f"## Per category (column {rep.get('category_column')})", "", "| category | prompts | Self-BLEU | Dist-2 |",
                  "|---|---:|---:|---:|"]
        for c, v in rep["per_category"].items():
            lines.append(f"| {c} | {v['prompts']} | {_na(v['self_bleu'])} | {_na(v['dist_2'])} |")
    return "\n".join(lines) + "\n"


def report_for_run(out: "Path | str", *, max_prompts: int = 300, seed: int = 0) -> dict:
    """Compute and write ``quality.json`` / ``quality.md`` for a `frx generate` run directory."""
    import json
    from pathlib import Path

    import pyarrow.parquet as pq

    out = Path(out)
    ds = pq.read_table(out / "dataset" / "data")
    funnel = json.loads((out / "funnel.json").read_text())["steps"] if (out / "funnel.json").exists() else None
    rep = quality_report(ds, funnel, max_prompts=max_prompts, seed=seed)
    for d in (out, out / "dataset"):
        (d / "quality.json").write_text(json.dumps(rep, indent=2) + "\n")
        (d / "quality.md").write_text(quality_markdown(rep), encoding="utf-8")
    return rep


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
