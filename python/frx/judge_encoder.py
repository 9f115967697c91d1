"""The judge's encoder tier: a small transformer encoder (by default the offline MiniLM,
all-MiniLM-L6-v2) fine-tuned as a three-class refusal classifier on the same labelled rows
as the fast tier (:func:`frx.judge_train.training_rows`).

It reads the prompt and the opening of the response as one pair (``[CLS] prompt [SEP]
response [SEP]``, cut to ``max_tokens`` from the end of the longer of the two), and is trained
with the fast tier's weighting (classes by ``frequency ** -0.5``, each source the same total
weight). Its temperature is fitted on a held-out slice of the training rows (every
``calibration_every``-th row, never trained on), so ``confidence`` is again the calibrated
probability that the label is right.

A model directory holds the encoder and its tokenizer as Hugging Face writes them
(``save_pretrained``) and ``frx_encoder.json`` (classes, temperature, settings, training
report). It runs on the GPU when there is one, else on the CPU; needs ``frx-engine[train]``.

    frx judge-train LABELLED... --encoder --out DIR       # fine-tune
    frx judge RESPONSES --mode encoder --encoder DIR      # use it
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from .classifier import CLASSES, fit_temperature, sample_weights, softmax
from .judge_train import training_rows
from .columns import to_string_array
from .errors import FrxError

META = "frx_encoder.json"
DEFAULTS = {"base": "minilm", "epochs": 2, "batch_size": 16, "lr": 5e-5, "max_tokens": 128, "seed": 0,
            "calibration_every": 8, "class_weight_power": 0.5}


def _torch():
    try:
        import torch
        import transformers
    except ImportError:
        raise FrxError("the encoder judge needs torch and transformers: pip install 'frx-engine[train]'") from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return torch, transformers


def _device(device: str | None) -> str:
    torch, _ = _torch()
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class EncoderJudge:
    """A fine-tuned encoder with its tokenizer and temperature."""

    tier = "encoder"  # what frx.judge calls this learned step (its label_source)
    model: Any
    tokenizer: Any
    temperature: float = 1.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def max_tokens(self) -> int:
        return int(self.meta.get("settings", {}).get("max_tokens", DEFAULTS["max_tokens"]))

    def _encode(self, prompts: list[str | None], responses: list[str]):
        first = [p or "" for p in prompts]
        return self.tokenizer(first, responses, truncation="longest_first", max_length=self.max_tokens, padding=True,
                              return_tensors="pt")

    def logits(self, responses: Any, prompts: Any = None, *, batch_size: int = 64,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Uncalibrated logits ``(n, 3)`` in :data:`frx.classifier.CLASSES` order."""
        torch, _ = _torch()
        resp = [r or "" for r in to_string_array(responses, "responses").to_pylist()]
        asked = [None] * len(resp) if prompts is None else to_string_array(prompts, "prompts").to_pylist()
        if len(asked) != len(resp):
            raise FrxError(f"prompts: {len(asked)} values for {len(resp)} responses")
        out = np.zeros((len(resp), len(CLASSES)), dtype=np.float64)
        dev = next(self.model.parameters()).device
        self.model.eval()
        # Sorted by length, so a batch pads to its own longest row, not the input's.
        order = np.argsort([len(r) for r in resp], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(resp), batch_size):
                idx = order[start : start + batch_size]
                enc = self._encode([asked[i] for i in idx], [resp[i] for i in idx]).to(dev)
                out[idx] = self.model(**enc).logits.float().cpu().numpy()
                if progress:
                    progress(len(idx))
        return out

    def proba(self, responses: Any, prompts: Any = None, **kw: Any) -> np.ndarray:
        """Calibrated class probabilities ``(n, 3)``."""
        return softmax(self.logits(responses, prompts, **kw) / self.temperature).astype(np.float32)

    def save(self, path: str | Path) -> None:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(p, safe_serialization=True)
        self.tokenizer.save_pretrained(p)
        meta = {"classes": list(CLASSES), "temperature": self.temperature, **self.meta}
        (p / META).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> "EncoderJudge":
        p = Path(path)
        if not (p / META).is_file():
            raise FrxError(f"{p} is not an encoder judge directory (no {META}; make one with frx judge-train --encoder)")
        meta = json.loads((p / META).read_text())
        if meta.get("classes") != list(CLASSES):
            raise FrxError(f"{p}: encoder judge was saved with other classes (retrain it with frx judge-train --encoder)")
        _, transformers = _torch()
        try:
            tok = transformers.AutoTokenizer.from_pretrained(p)
            model = transformers.AutoModelForSequenceClassification.from_pretrained(p).to(_device(device))
        except (OSError, ValueError) as e:
            raise FrxError(f"cannot load encoder judge {p}: {str(e).splitlines()[0]}") from None
        return cls(model, tok, float(meta.pop("temperature")), meta)


def train_encoder(table: pa.Table, *, folds: Any = None, balance: bool = True, device: str | None = None,
                  progress: Callable[[int, int], None] | None = None, **settings: Any) -> tuple[EncoderJudge, dict[str, Any]]:
    """Fine-tune the encoder on a labelled table (as :func:`frx.judge_train.train` takes it).
    ``settings`` override :data:`DEFAULTS`. ``progress(done, total)`` is called after each
    training step. Deterministic on the CPU for a given seed; returns the model and a report."""
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise FrxError(f"unknown encoder settings: {', '.join(sorted(unknown))}")
    cfg = {**DEFAULTS, **settings}
    for key in ("epochs", "batch_size", "max_tokens", "calibration_every"):
        if int(cfg[key]) < (2 if key == "calibration_every" else 1):
            raise FrxError(f"encoder setting {key} must be at least {2 if key == 'calibration_every' else 1}, got {cfg[key]}")
    torch, transformers = _torch()
    from .embed import model_path

    responses, prompts, _, _, y, groups = training_rows(table, folds=folds)
    if len(np.unique(y)) < 2:
        raise FrxError(f"the labels hold one class only ({CLASSES[int(y[0])]}): a classifier needs at least two")
    calib = np.zeros(len(y), dtype=bool)
    calib[:: int(cfg["calibration_every"])] = True
    fit_idx = np.flatnonzero(~calib)
    w = sample_weights(y[fit_idx], groups[fit_idx] if balance else None, float(cfg["class_weight_power"]))
    w = w * len(fit_idx)  # mean 1, so the loss keeps the scale of plain cross-entropy

    torch.manual_seed(int(cfg["seed"]))
    base = model_path(str(cfg["base"]))
    try:
        tok = transformers.AutoTokenizer.from_pretrained(base)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=len(CLASSES), id2label=dict(enumerate(CLASSES)), label2id={c: i for i, c in enumerate(CLASSES)})
    except (OSError, ValueError) as e:
        raise FrxError(f"cannot load base encoder {cfg['base']!r}: {str(e).splitlines()[0]}") from None
    dev = _device(device)
    model.to(dev)
    judge = EncoderJudge(model, tok, 1.0, {"settings": cfg})
    resp = [r or "" for r in responses.to_pylist()]
    asked = prompts.to_pylist()
    bs, epochs = int(cfg["batch_size"]), int(cfg["epochs"])
    steps_per_epoch = -(-len(fit_idx) // bs)
    total = steps_per_epoch * epochs
    opt = torch.optim.AdamW(model.parameters(), lr=float(cfg["lr"]), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, total // 10)) * max(0.0, (total - s) / total))
    rng = np.random.default_rng(int(cfg["seed"]))
    yt = torch.as_tensor(y, dtype=torch.long)
    wt = torch.as_tensor(w, dtype=torch.float32)
    step = 0
    losses: list[float] = []
    model.train()
    for _ in range(epochs):
        perm = rng.permutation(len(fit_idx))
        for start in range(0, len(perm), bs):
            local = perm[start : start + bs]
            rows = fit_idx[local]
            enc = judge._encode([asked[i] for i in rows], [resp[i] for i in rows]).to(dev)
            logits = model(**enc).logits
            loss_rows = torch.nn.functional.cross_entropy(logits, yt[rows].to(dev), reduction="none")
            loss = (loss_rows * wt[local].to(dev)).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            step += 1
            if progress:
                progress(step, total)
    held = pa.array(np.flatnonzero(calib))
    z = judge.logits(responses.take(held), prompts.take(held))
    judge.temperature = fit_temperature(z, y[calib])
    report = {"rows": table.num_rows, "trained_on": int(len(fit_idx)), "calibration_rows": int(calib.sum()),
              "left_to_rules": int(table.num_rows - len(y)), "steps": total, "device": dev,
              "loss_first_50": float(np.mean(losses[:50])), "loss_last_50": float(np.mean(losses[-50:])),
              "temperature": judge.temperature, "calibration_accuracy": float(np.mean(z.argmax(1) == y[calib]))}
    judge.meta["report"] = report
    return judge, report

