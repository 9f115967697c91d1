"""`frx bench`: run models on a prompt set, judge the answers, report side by side.

Writes ``responses.parquet`` (one row per model × prompt), ``judged.parquet`` (+ label,
label_source, evidence, confidence), ``metrics.parquet``/``metrics.md``/``report.html`` and plots
to the output directory. Generation goes through the response cache, so a re-run (or a run
after an interruption) only pays for what is missing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa

from .columns import pick_column
from .errors import FrxError

BENIGN = {"safe", "benign", "harmless", "0", "false", "contrast"}
TOXIC = {"unsafe", "toxic", "harmful", "1", "true"}
CHUNK = 64


@dataclass
class BenchConfig:
    models: list[str]
    prompts: Path
    out: Path
    prompt_column: str = "prompt"
    category_column: str | None = None  # None: "category" if the prompt file has it
    label_column: str | None = None  # None: "label" if the prompt file has it
    limit: int | None = None
    sample: int | None = None  # a sample of N prompts, stratified by label and category
    seed: int = 0
    max_new_tokens: int = 256
    system_prompt: str | None = None
    mode: str = "learned"
    judge_model: str | None = None
    judge_max_tokens: int = 96
    model_options: dict[str, Any] | None = None


def prompt_labels(values: list[Any], column: str) -> list[str]:
    """benign/toxic from a label column (XSTest's safe/unsafe, 0/1, benign/toxic…)."""
    out = []
    for i, v in enumerate(values):
        s = str(v).strip().lower() if v is not None else ""
        if s in BENIGN:
            out.append("benign")
        elif s in TOXIC:
            out.append("toxic")
        else:
            raise FrxError(f"column {column!r}, row {i}: {v!r} is neither benign ({', '.join(sorted(BENIGN))}) "
                           f"nor toxic ({', '.join(sorted(TOXIC))})")
    return out


def stratified_sample(strata: list[Any], n: int, seed: int = 0) -> list[int]:
    """Indices (in input order) of ``n`` rows drawn without replacement so that every stratum
    (a row's key, e.g. its (label, category)) keeps its share: ``n * size / total`` rows,
    rounded by largest remainder, and at least one row from every stratum when ``n`` is at least
    the number of strata. The same seed gives the same rows; ``n`` at least the row count gives
    every row."""
    import random

    total = len(strata)
    if n >= total:
        return list(range(total))
    groups: dict[Any, list[int]] = {}
    for i, key in enumerate(strata):
        groups.setdefault(key, []).append(i)
    keys = sorted(groups, key=lambda k: groups[k][0])  # in order of first appearance
    quota = {k: n * len(groups[k]) / total for k in keys}
    take = {k: int(quota[k]) for k in keys}
    if n >= len(keys):  # every stratum keeps at least one row, taken from the most over-served
        for k in keys:
            take[k] = max(take[k], 1)
        while sum(take.values()) > n:
            k = max((k for k in keys if take[k] > 1), key=lambda k: (take[k] - quota[k], -groups[k][0]))
            take[k] -= 1
    # The rest by largest remainder (ties: the stratum seen first).
    order = sorted((k for k in keys if take[k] < len(groups[k])), key=lambda k: (-(quota[k] - take[k]), groups[k][0]))
    for k in order[: n - sum(take.values())]:
        take[k] += 1
    rng = random.Random(seed)
    picked = [i for k in keys for i in rng.sample(groups[k], take[k])]
    return sorted(picked)


def load_prompts(cfg: BenchConfig) -> pa.Table:
    from .io import read_table

    t = read_table(cfg.prompts)
    if cfg.prompt_column not in t.column_names:
        raise FrxError(f"column {cfg.prompt_column!r} not found in {cfg.prompts}; columns are {', '.join(t.column_names)}")
    if not pa.types.is_string(t.schema.field(cfg.prompt_column).type) and not pa.types.is_large_string(t.schema.field(cfg.prompt_column).type):
        raise FrxError(f"column {cfg.prompt_column!r} in {cfg.prompts} is not text")
    category = pick_column(t.column_names, cfg.category_column, "category", cfg.prompts)
    label = pick_column(t.column_names, cfg.label_column, "label", cfg.prompts)
    if cfg.limit is not None and cfg.sample is not None:
        raise FrxError("--limit and --sample exclude each other: the first N prompts, or a sample of N")
    if cfg.limit is not None:
        if cfg.limit < 1:
            raise FrxError(f"--limit must be at least 1, got {cfg.limit}")
        t = t.slice(0, cfg.limit)
    if cfg.sample is not None:
        if cfg.sample < 1:
            raise FrxError(f"--sample must be at least 1, got {cfg.sample}")
        strata = list(zip(*(t.column(c).to_pylist() for c in (label, category) if c))) if (label or category) else [()] * t.num_rows
        t = t.take(pa.array(stratified_sample(strata, cfg.sample, cfg.seed)))
    if t.num_rows == 0:
        raise FrxError(f"no prompts in {cfg.prompts}")
    cols: dict[str, Any] = {"prompt_id": pa.array(range(t.num_rows), pa.int64()), "prompt": t.column(cfg.prompt_column)}
    if category:
        cols["category"] = pa.array([None if x is None else str(x) for x in t.column(category).to_pylist()], pa.string())
    if label:
        cols["label_prompt"] = pa.array(prompt_labels(t.column(label).to_pylist(), label))
    return pa.table(cols)


def run_bench(cfg: BenchConfig, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Generate, judge and report. Returns a summary (rows, seconds, cache stats per model)."""
    from .judge import judge
    from .llm import Sampling, load_judge_model, load_model, parse_spec
    from .metrics import compute_metrics
    from .report import write_report

    if not cfg.models:
        raise FrxError("give at least one --model")
    if len(set(cfg.models)) != len(cfg.models):
        raise FrxError("the same --model is given twice")
    for spec in cfg.models + ([cfg.judge_model] if cfg.judge_model else []):
        parse_spec(spec)
    prompts = load_prompts(cfg)
    sampling = Sampling(max_new_tokens=cfg.max_new_tokens)
    system = [] if cfg.system_prompt is None else [{"role": "system", "content": cfg.system_prompt}]
    texts = prompts.column("prompt").to_pylist()
    parts, summary = [], {"prompts": prompts.num_rows, "models": {}}
    for spec in cfg.models:
        model = load_model(spec, **(cfg.model_options or {}))
        t0 = time.perf_counter()
        results = []
        idx = [i for i, p in enumerate(texts) if p is not None]
        for lo in range(0, len(idx), CHUNK):
            chunk = idx[lo : lo + CHUNK]
            results += model.generate([system + [{"role": "user", "content": texts[i]}] for i in chunk], sampling)
            if progress:
                progress(spec, min(lo + CHUNK, len(idx)), len(idx))
        by_row = dict(zip(idx, results))
        n = prompts.num_rows
        get = lambda i, f, d: getattr(by_row[i], f) if i in by_row else d  # noqa: E731
        part = prompts.append_column("model", pa.array([spec] * n))
        for name, typ, default in [("text", pa.string(), None), ("finish_reason", pa.string(), "error"),
                                   ("prompt_tokens", pa.int32(), 0), ("completion_tokens", pa.int32(), 0),
                                   ("latency_s", pa.float32(), 0.0), ("error", pa.string(), "null prompt")]:
            part = part.append_column("response" if name == "text" else name, pa.array([get(i, name, default) for i in range(n)], typ))
        parts.append(part)
        summary["models"][spec] = {"seconds": round(time.perf_counter() - t0, 2), **model.stats,
                                   "completion_tokens": sum(r.completion_tokens for r in results)}
        model.close()
    responses = pa.concat_tables(parts)
    judge_model = load_judge_model(cfg.judge_model, max_new_tokens=cfg.judge_max_tokens) if cfg.judge_model else None
    verdict = judge(responses.column("response"), responses.column("finish_reason"), prompts=responses.column("prompt"),
                    mode=cfg.mode, judge_model=judge_model)
    judged = responses
    for name in verdict.column_names:
        judged = judged.append_column(name, verdict.column(name))
    from .io import write_parquet

    cfg.out.mkdir(parents=True, exist_ok=True)
    write_parquet(responses, cfg.out / "responses.parquet")
    write_parquet(judged, cfg.out / "judged.parquet")
    by = "category" if "category" in judged.column_names else None
    plabel = "label_prompt" if "label_prompt" in judged.column_names else None
    metrics = compute_metrics(judged, by=by, prompt_label_column=plabel)
    from .report import pick_examples

    which = (f"first {cfg.limit}" if cfg.limit else f"stratified sample of {cfg.sample} (seed {cfg.seed})" if cfg.sample else "all")
    context = {
        "models": ", ".join(cfg.models), "prompts": f"{cfg.prompts} ({prompts.num_rows:,} prompts: {which})",
        "sampling": f"greedy (temperature {sampling.temperature:g}), at most {sampling.max_new_tokens} new tokens",
        "system prompt": cfg.system_prompt or "none",
        "judge": f"mode {cfg.mode}" + (f", LLM judge {cfg.judge_model} below confidence 0.7" if cfg.judge_model else ""),
    }
    examples = pick_examples([judged], prompt_label_column=plabel, model_column="model", by=by)
    summary["files"] = [str(p) for p in write_report(metrics, cfg.out, title=f"frx bench: {cfg.prompts.name}", context=context,
                                                     examples=examples)]
    summary["labels"] = {m: {} for m in cfg.models}
    for m, lab in zip(judged.column("model").to_pylist(), judged.column("label").to_pylist()):
        summary["labels"][m][lab] = summary["labels"][m].get(lab, 0) + 1
    return summary
