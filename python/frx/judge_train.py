"""Training the learned judge: the labelled rows it learns from (every row the fast-path rules
do not settle) and the fast tier's training with out-of-fold calibration. ``frx judge-train``
runs it; :mod:`frx.judge_encoder` trains the encoder tier on the same rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from .classifier import CLASSES, Classifier, fit_temperature
from .errors import FrxError
from .judge import _judge_patterns, learned_rows, rule_ids
from .labelled import label_index

__all__ = ["train", "training_rows"]


def train(table: pa.Table, *, folds: Any = None, balance: bool = True, prompt_dropout: int = 5, **fit_args: Any) -> tuple[Classifier, dict[str, Any]]:
    """Train the learned judge on a labelled table (``response``, ``prompt``, ``label`` as
    :func:`frx.labelled.read_labelled` gives it) and calibrate it.

    The rows the rules settle on their own (:data:`frx.judge.FAST_PATH`) are left out. Every
    ``prompt_dropout``-th row is shown without its prompt, so the model also knows the inputs
    that have none. The temperature is fitted on out-of-fold logits: ``folds`` (a column of
    group names, default the ``source`` column) are left out in turn; with a single group, five
    folds by row position. Returns the model and a report (rows, classes, folds, temperature).
    """
    responses, prompts, rules, conf, y, groups = training_rows(table, folds=folds, prompt_dropout=prompt_dropout)
    weigh = groups if balance else None
    names = sorted(set(groups.tolist()))
    if len(names) < 2:
        groups = np.array([str(i % 5) for i in range(len(y))], dtype=object)
        names = sorted(set(groups.tolist()))
    oof = np.zeros((len(y), len(CLASSES)))
    for g in names:
        held = groups == g
        if len(np.unique(y[~held])) < 2:
            raise FrxError(f"without fold {g!r} the labels hold one class only: cannot calibrate out of fold")
        sub = pa.array(np.flatnonzero(~held))
        m = Classifier.fit(responses.take(sub), prompts.take(sub), rules[~held], conf[~held], y[~held],
                           groups=None if weigh is None else weigh[~held], **fit_args)
        out = pa.array(np.flatnonzero(held))
        oof[held] = m.logits(responses.take(out), prompts.take(out), rules[held], conf[held])
    model = Classifier.fit(responses, prompts, rules, conf, y, groups=weigh, **fit_args)
    model.temperature = fit_temperature(oof, y)
    model.meta["temperature_folds"] = names
    report = {"rows": table.num_rows, "trained_on": int(len(y)), "left_to_rules": int(table.num_rows - len(y)),
              "class_counts": model.meta["class_counts"], "folds": names, "temperature": model.temperature,
              "out_of_fold_accuracy": float(np.mean(oof.argmax(1) == y))}
    return model, report


def training_rows(table: pa.Table, *, folds: Any = None, prompt_dropout: int = 5):
    """The rows of a labelled table a learned judge trains on — every row the rules of
    :data:`frx.judge.FAST_PATH` do not settle — as ``(responses, prompts, rules, confidence,
    y, groups)``: the pattern step's rule ids and confidences, class indices, and each row's
    group (``folds`` or the ``source`` column). Every ``prompt_dropout``-th row loses its
    prompt, so that a model also knows inputs that have none."""
    if table.num_rows == 0:
        raise FrxError("no labelled rows to train on")
    pattern = _judge_patterns(table.column("response"))
    keep = learned_rows(pattern)
    if len(keep) == 0:
        raise FrxError("every labelled row is settled by a rule (null, empty, not English…): nothing to train on")
    idx = pa.array(keep)
    data = table.take(idx)
    pat = pattern.take(idx)
    y = label_index(data.column("label"))
    prompts = data.column("prompt").combine_chunks()
    if prompt_dropout > 0:
        hide = np.zeros(len(y), dtype=bool)
        hide[::prompt_dropout] = True
        prompts = pc_if_hidden(prompts, hide)
    responses = data.column("response").combine_chunks()
    groups = np.asarray((data.column("source") if folds is None else pa.array(folds).take(idx)).to_pylist(), dtype=object)
    return responses, prompts, rule_ids(pat), pat.column("confidence").to_numpy(), y, groups


def pc_if_hidden(prompts: pa.Array, hide: np.ndarray) -> pa.Array:
    """``prompts`` with the rows marked in ``hide`` set to null."""
    import pyarrow.compute as pc

    return pc.if_else(pa.array(hide), pa.nulls(len(prompts), pa.string()), prompts)
