"""`frx sft`: fine-tune a model against over-refusal with TRL, then measure it with `frx bench`.

Rows of a FalseReject-schema dataset become conversational prompt/completion pairs, so only the
answer carries loss: ``instruct`` trains on ``instruct_response``; ``cot`` on
``<think>\\n{reasoning_content}\\n</think>\\n\\n{solution}`` from ``cot_response``. General
instruction data (``prompt`` + ``response``/``completion``, or ``messages``) can be mixed in.
LoRA (PEFT) by default, full fine-tuning with ``lora_r=0``. Checkpoints go to
``OUT/checkpoints``; a re-run with the same OUT resumes from the last one. At the end OUT holds
``adapter/`` (LoRA), ``merged/`` (with ``merge=True``), ``training.json`` and ``TRAINING.md`` (the
exact data files with hashes, the mix, every hyperparameter and the loss curve); ``_SUCCESS``
is written last, so a directory without it is not a finished run.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import FrxError


@dataclass
class SftConfig:
    base: str
    data: list[Path]
    out: Path
    format: str = "instruct"
    general: Path | None = None
    mix: float = 0.5
    lora_r: int = 16
    lora_alpha: int | None = None
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    epochs: float = 1.0
    lr: float = 2e-4
    max_steps: int = -1
    max_seq_len: int = 1024
    batch_size: int = 4
    grad_accum: int = 1
    save_steps: int = 50
    logging_steps: int = 5
    seed: int = 0
    merge: bool = False
    threads: int | None = None


def think_completion(reasoning: str, solution: str) -> str:
    return f"<think>\n{reasoning.strip()}\n</think>\n\n{solution.strip()}"


def to_conversations(table: Any, fmt: str, source: str) -> list[dict[str, Any]]:
    """FalseReject-schema rows → conversational prompt/completion rows."""
    import pyarrow as pa

    if fmt not in ("instruct", "cot"):
        raise FrxError(f"--format must be instruct or cot, got {fmt!r}")
    need = ["prompt", "instruct_response" if fmt == "instruct" else "cot_response"]
    missing = [c for c in need if c not in table.column_names]
    if missing:
        raise FrxError(f"{source}: the {fmt} format needs column(s) {', '.join(missing)}; columns are {', '.join(table.column_names)}")
    if table.num_rows == 0:
        raise FrxError(f"{source}: no rows")
    rows = []
    prompts = table.column("prompt").to_pylist()
    if fmt == "instruct":
        for i, (p, r) in enumerate(zip(prompts, table.column("instruct_response").to_pylist())):
            if not p or not r:
                raise FrxError(f"{source}: row {i} has an empty prompt or instruct_response")
            rows.append({"prompt": [{"role": "user", "content": p}], "completion": [{"role": "assistant", "content": r}]})
        return rows
    col = table.column("cot_response")
    if not pa.types.is_struct(col.type):
        raise FrxError(f"{source}: cot_response must be a struct of reasoning_content and solution, not {col.type}")
    bad = 0
    for i, (p, c) in enumerate(zip(prompts, col.to_pylist())):
        reasoning = (c or {}).get("reasoning_content")
        solution = (c or {}).get("solution")
        if not p or not solution or not reasoning or not str(reasoning).strip():
            bad += 1
            continue
        rows.append({"prompt": [{"role": "user", "content": p}],
                     "completion": [{"role": "assistant", "content": think_completion(reasoning, solution)}]})
    if bad:
        raise FrxError(f"{source}: --format cot needs reasoning_content and solution on every row; {bad} of {table.num_rows} rows lack them")
    return rows


def general_conversations(table: Any, source: str) -> list[dict[str, Any]]:
    """General instruction data: prompt + response/completion strings, or a messages list."""
    cols = table.column_names
    if "messages" in cols:
        out = []
        for m in table.column("messages").to_pylist():
            if not m or m[-1].get("role") != "assistant":
                continue
            out.append({"prompt": [dict(role=x["role"], content=x["content"]) for x in m[:-1]],
                        "completion": [{"role": "assistant", "content": m[-1]["content"]}]})
        return out
    answer = next((c for c in ("response", "completion", "output") if c in cols), None)
    if "prompt" not in cols or answer is None:
        raise FrxError(f"{source}: general data needs prompt + response (or completion/output), or messages; columns are {', '.join(cols)}")
    return [{"prompt": [{"role": "user", "content": p}], "completion": [{"role": "assistant", "content": r}]}
            for p, r in zip(table.column("prompt").to_pylist(), table.column(answer).to_pylist()) if p and r]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _read(path: Path) -> Any:
    import pyarrow as pa

    from .io import read_table

    if not path.exists():
        raise FrxError(f"dataset {path} does not exist")
    if path.is_dir():
        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise FrxError(f"no Parquet files under {path}")
        return pa.concat_tables([read_table(f) for f in files], promote_options="default")
    return read_table(path)


def build_rows(cfg: SftConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    sources = []
    for d in cfg.data:
        r = to_conversations(_read(d), cfg.format, str(d))
        rows += r
        sources.append({"path": str(d), "sha256": _sha256(d), "rows": len(r), "role": "over-refusal"})
    n_frx = len(rows)
    n_general = 0
    if cfg.general is not None:
        if not 0 <= cfg.mix < 1:
            raise FrxError(f"--mix must be in [0, 1), got {cfg.mix}")
        general = general_conversations(_read(cfg.general), str(cfg.general))
        want = round(n_frx * cfg.mix / (1 - cfg.mix))
        rng = random.Random(cfg.seed)
        picked = rng.sample(general, min(want, len(general)))
        rows += picked
        n_general = len(picked)
        sources.append({"path": str(cfg.general), "sha256": _sha256(cfg.general), "rows": n_general, "role": "general",
                        "available": len(general), "wanted": want})
    random.Random(cfg.seed).shuffle(rows)
    return rows, {"sources": sources, "rows": len(rows), "over_refusal_rows": n_frx, "general_rows": n_general,
                  "general_share": round(n_general / len(rows), 4) if rows else 0.0}


def build_trainer(cfg: SftConfig, log: Callable[[str], None] = print) -> tuple[Any, Any, Any, list[dict[str, float]], dict[str, Any], Path]:
    """Check everything, load the base model and data, and set up TRL's SFTTrainer.
    Returns ``(trainer, tokenizer, peft_config, loss_log, data_record, base_dir)``."""
    try:
        import torch
        from datasets import Dataset
        from peft import LoraConfig
        from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
        from trl import SFTConfig as TrlConfig
        from trl import SFTTrainer
    except ImportError as e:
        raise FrxError(f"frx sft needs the train extra ({e.name} is missing): pip install 'frx-engine[train]'") from None
    from .llm.hf import default_threads
    from .llm.models import parse_spec, resolve_hf_path

    spec = parse_spec(cfg.base)
    if spec.kind != "hf":
        raise FrxError(f"--base must be a local model (hf:<dir>, a directory or smollm2-135m), not {cfg.base!r}")
    base_dir = resolve_hf_path(spec.model)
    if not (base_dir / "config.json").exists():
        raise FrxError(f"base model {base_dir} does not exist or is not a transformers model directory")
    for name, v, lo in [("--lora-r", cfg.lora_r, 0), ("--batch-size", cfg.batch_size, 1), ("--max-seq-len", cfg.max_seq_len, 16),
                        ("--grad-accum", cfg.grad_accum, 1), ("--save-steps", cfg.save_steps, 1)]:
        if v < lo:
            raise FrxError(f"{name} must be at least {lo}, got {v}")
    if cfg.lr <= 0 or cfg.epochs <= 0:
        raise FrxError("--lr and --epochs must be positive")
    if cfg.max_steps == 0:
        raise FrxError("--max-steps must be positive (or -1 for whole epochs)")
    rows, data_record = build_rows(cfg)
    if (cfg.out / "_SUCCESS").exists():
        raise FrxError(f"{cfg.out} holds a finished run; choose another --out")
    cfg.out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(cfg.threads or default_threads())
    tok = AutoTokenizer.from_pretrained(base_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not getattr(tok, "chat_template", None):
        raise FrxError(f"base model {base_dir} has no chat template in its tokenizer")
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
    peft_config = None
    if cfg.lora_r > 0:
        names = {n.split(".")[-1] for n, _ in model.named_modules()}
        targets = [t for t in cfg.lora_targets if t in names]
        if not targets:
            raise FrxError(f"none of the LoRA target modules {cfg.lora_targets} exist in {base_dir}")
        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha or 2 * cfg.lora_r, target_modules=targets,
                                 lora_dropout=0.0, task_type="CAUSAL_LM")
    ckpt_dir = cfg.out / "checkpoints"
    per_step = cfg.batch_size * cfg.grad_accum
    if len(rows) < per_step:
        log(f"warning: {len(rows)} training rows, fewer than one batch ({cfg.batch_size} x {cfg.grad_accum} accumulation): "
            "every step sees the same rows")
    steps = cfg.max_steps if cfg.max_steps > 0 else max(1, math.ceil(cfg.epochs * math.ceil(len(rows) / per_step)))
    # A short run still logs its loss a few times (at least every quarter of the run).
    logging_steps = max(1, min(cfg.logging_steps, steps // 4))
    args = TrlConfig(output_dir=str(ckpt_dir), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps, learning_rate=cfg.lr,
                     per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
                     max_length=cfg.max_seq_len, logging_steps=logging_steps, logging_first_step=True, save_steps=cfg.save_steps,
                     save_total_limit=2, seed=cfg.seed, data_seed=cfg.seed, report_to="none", use_cpu=not cuda,
                     bf16=dtype == torch.bfloat16, completion_only_loss=True, disable_tqdm=False)
    losses: list[dict[str, float]] = []

    class Record(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                losses.append({"step": state.global_step, "loss": float(logs["loss"])})
                log(f"step {state.global_step}: loss {float(logs['loss']):.4f}")

    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                         peft_config=peft_config, callbacks=[Record()])
    return trainer, tok, peft_config, losses, data_record, base_dir


def run_sft(cfg: SftConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train and save; returns the training record (also written to OUT/training.json)."""
    import torch
    from transformers.trainer_utils import get_last_checkpoint

    trainer, tok, peft_config, losses, data_record, base_dir = build_trainer(cfg, log)
    cuda = torch.cuda.is_available()
    dtype = next(trainer.model.parameters()).dtype
    ckpt_dir = cfg.out / "checkpoints"
    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    if last:
        log(f"resuming from {last}")
    t0 = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=last)
    except torch.cuda.OutOfMemoryError:
        raise FrxError("out of GPU memory: lower --batch-size or --max-seq-len (or raise --grad-accum)") from None
    except MemoryError:
        raise FrxError("out of memory: lower --batch-size or --max-seq-len") from None
    seconds = time.perf_counter() - t0
    last_loss = f", last logged {losses[-1]['loss']:.4f} at step {losses[-1]['step']}" if losses else ""
    log(f"trained {trainer.state.global_step} steps in {seconds:.0f} s: mean loss {float(result.training_loss):.4f}{last_loss}")
    final = trainer.model
    adapter_dir = cfg.out / ("adapter" if peft_config else "model")
    _save_atomic(adapter_dir, lambda d: (final.save_pretrained(d), tok.save_pretrained(d)))
    merged_dir = None
    if cfg.merge and peft_config:
        merged = final.merge_and_unload()
        merged_dir = cfg.out / "merged"
        _save_atomic(merged_dir, lambda d: (merged.save_pretrained(d), tok.save_pretrained(d)))
    record = {
        "base": cfg.base, "base_dir": str(base_dir), "format": cfg.format, "data": data_record,
        "hyperparameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()
                            if k not in ("data", "general", "out", "base")},
        "method": "lora" if peft_config else "full", "lora_targets": peft_config.target_modules if peft_config else None,
        "steps": trainer.state.global_step, "train_loss": float(result.training_loss), "loss_curve": losses,
        "seconds": round(seconds, 2), "device": "cuda" if cuda else "cpu", "dtype": str(dtype).replace("torch.", ""),
        "resumed_from": last, "adapter": str(adapter_dir), "merged": str(merged_dir) if merged_dir else None,
    }
    if isinstance(record["lora_targets"], set):
        record["lora_targets"] = sorted(record["lora_targets"])
    (cfg.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    (cfg.out / "TRAINING.md").write_text(training_card(record), encoding="utf-8")
    (cfg.out / "_SUCCESS").write_text("")
    return record


def _save_atomic(target: Path, save: Callable[[Path], Any]) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def training_card(r: dict[str, Any]) -> str:
    src = "\n".join(f"| {s['role']} | `{s['path']}` | {s['rows']} | `{s['sha256'][:16]}…` |" for s in r["data"]["sources"])
    hp = "\n".join(f"| {k} | {v} |" for k, v in r["hyperparameters"].items())
    curve = ", ".join(f"{p['step']}: {p['loss']:.3f}" for p in r["loss_curve"]) or "–"
    return f"""# frx sft training card

Base model `{r['base']}` ({r['base_dir']}), {r['method']} fine-tuning in the {r['format']} format,
{r['steps']} steps in {r['seconds']} s on {r['device']} ({r['dtype']}). Final training loss {r['train_loss']:.4f}.

## Data ({r['data']['rows']} rows; general share {r['data']['general_share']})

| role | file | rows used | sha256 |
|---|---|---:|---|
{src}

## Hyperparameters

| name | value |
|---|---|
{hp}

## Loss curve (step: loss)

{curve}
"""


def eval_before_after(base: str, trained_dir: Path, prompts: Path, out: Path, *, limit: int | None = None,
                      sample: int | None = None, seed: int = 0, max_new_tokens: int = 128, prompt_column: str = "prompt", label_column: str | None = None,
                      category_column: str | None = None) -> str:
    """`frx bench` on the base and the trained model over the same prompts; returns (and writes
    to ``out/before_after.md``) the before/after table."""
    import pyarrow.parquet as pq

    from .bench import BenchConfig, run_bench

    trained = f"hf:{trained_dir}"
    run_bench(BenchConfig(models=[base, trained], prompts=prompts, out=out, prompt_column=prompt_column,
                          category_column=category_column, label_column=label_column, limit=limit, sample=sample, seed=seed,
                          max_new_tokens=max_new_tokens))
    m = pq.read_table(out / "metrics.parquet").to_pylist()
    cell = {}
    for r in m:
        if r.get("category", "all") == "all":
            cell[(r["model"], r["metric"])] = r
    which = f" (first {limit})" if limit else f" (a stratified sample of {sample}, seed {seed})" if sample else ""
    lines = ["# Before / after fine-tuning", "", f"Prompts: `{prompts}`{which}", "",
             "| model | compliance on benign prompts | useful safety on toxic prompts (refusal or safe partial) |", "|---|---|---|"]
    for name, spec in (("before (base)", base), ("after (trained)", trained)):
        def fmt(metric: str) -> str:
            r = cell.get((spec, metric))
            if r is None or r["n"] == 0:
                return "–"
            return f"{r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] (n={r['n']})"
        lines.append(f"| {name} | {fmt('compliance_rate')} | {fmt('usr_toxic')} |")
    text = "\n".join(lines) + "\n"
    (out / "before_after.md").write_text(text, encoding="utf-8")
    return text
