"""The learned judge: a calibrated three-class classifier that decides every row the rules do
not settle (see :mod:`frx.judge`).

Features (the Rust kernel ``frx_core::features`` computes them per row, in one pass):

- hashed word unigrams and bigrams of the response's opening (the kernel can also tag body
  and closing regions; the shipped settings, :data:`CONFIG`, read the opening only), its
  first tokens by position, and character 4-grams of its opening;
- dense: lists, code, speaker labels (a second persona), and how much of the prompt's content
  the response takes up (does it engage with the request?);
- the pattern step's rule id (one-hot: the rules are features, not decisions) and its
  confidence.

The model is a multinomial logistic regression, trained in Python (full-batch Adam from zero,
a fixed number of steps: deterministic) and run in Rust (the hashed part is summed as the
n-grams are hashed, no feature matrix is built). Its probabilities are divided by a temperature
fitted on out-of-fold predictions (:func:`fit_temperature`), so ``confidence`` is the
probability that the label is right.

Training and calibration are in :mod:`frx.judge_train`. The shipped weights are built by ``frx judge-train`` from every labelled set the project has
(see ``docs/judge.md`` for the command and the mapping of each set's labels).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from . import _core
from .columns import buffers, to_string_array
from .errors import FrxError
from .labelled import CLASSES

__all__ = ["CLASSES", "Classifier", "default_classifier", "fit_temperature", "sample_weights", "softmax"]

RULES = tuple(r[0] for r in _core.judge_rules())
TEXT_DENSE = tuple(_core.feature_names())
DENSE = ("bias",) + TEXT_DENSE + tuple(f"rule:{r}" for r in RULES) + ("pattern_confidence",)
# Hashed n-grams of the opening only (the first 300 bytes: where a response says whether it
# will help). Body and closing n-grams are the family's style and topic, and they did not
# carry over: leave one family out, Llama-2's long refusals read as answers (binary 0.67 with
# the first 2,000 bytes and the last 300, 0.83 with the first 300 and the last 300, 0.87 with
# the first 300 alone; docs/judge.md has the table).
CONFIG = {"bits": 18, "opening_bytes": 300, "closing_bytes": 0, "max_bytes": 300, "char_bytes": 200}
_CHUNK = 65536


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature ``T`` that minimises the log loss of ``softmax(logits / T)`` on labels
    ``y`` (golden-section search over log T in [1/20, 20]; deterministic)."""
    if len(y) == 0:
        raise FrxError("no predictions to calibrate on")
    logits = np.asarray(logits, np.float64)
    y = np.asarray(y)

    def nll(log_t: float) -> float:
        p = softmax(logits / np.exp(log_t))
        return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12))))

    lo, hi = np.log(1 / 20), np.log(20)
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return float(np.exp((lo + hi) / 2))


def _pieces(values: Any, what: str) -> list[pa.Array]:
    if isinstance(values, pa.ChunkedArray):
        return [to_string_array(c, what) for c in values.chunks] or [pa.array([], pa.string())]
    return [to_string_array(values, what)]


def sample_weights(y: np.ndarray, groups: Any, class_weight_power: float) -> np.ndarray:
    """Training weight of each row, summing to 1: a row of class ``c`` weighs
    ``frequency(c) ** -class_weight_power``; with ``groups`` (a label per row: its source),
    each group weighs the same in total, so a large set does not drown a small one."""
    freq = np.bincount(y, minlength=len(CLASSES)).astype(np.float64)
    w = (np.maximum(freq, 1) ** -class_weight_power)[y]
    if groups is not None:
        _, gi = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
        if len(gi) != len(y):
            raise FrxError(f"{len(gi)} groups for {len(y)} rows")
        w = w / np.bincount(gi, weights=w)[gi]
    return w / w.sum()


@dataclass
class Classifier:
    """Weights ``(2**bits + len(DENSE), 3)``, the feature settings, and the temperature."""

    weights: np.ndarray
    config: dict[str, int] = field(default_factory=lambda: dict(CONFIG))
    temperature: float = 1.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return 1 << self.config["bits"]

    # -- features ---------------------------------------------------------------------------
    @staticmethod
    def _pattern_dense(rules: np.ndarray, confidence: np.ndarray, text_dense: np.ndarray) -> np.ndarray:
        n = len(rules)
        out = np.zeros((n, len(DENSE)), dtype=np.float32)
        out[:, 0] = 1.0
        out[:, 1 : 1 + len(TEXT_DENSE)] = text_dense.reshape(n, len(TEXT_DENSE))
        base = 1 + len(TEXT_DENSE)
        out[np.arange(n), base + rules.astype(np.int64)] = 1.0
        out[:, -1] = confidence
        return out

    def design(self, responses: Any, prompts: Any, rules: np.ndarray, confidence: np.ndarray):
        """The features for training: ``(indptr, indices, row_scale, dense)``."""
        resp = to_string_array(responses, "responses")
        pr = None if prompts is None else buffers(to_string_array(prompts, "prompts"), "prompts")
        indptr, indices, text_dense = _core.features(tuple(buffers(resp, "responses")), None if pr is None else tuple(pr), **self.config)
        row_scale = (1.0 / np.sqrt(np.maximum(np.diff(indptr), 1))).astype(np.float32)
        return indptr, indices, row_scale, self._pattern_dense(np.asarray(rules), np.asarray(confidence, np.float32), text_dense)

    def reference_logits(self, design) -> np.ndarray:
        """Logits from a training design, in numpy: the reference the Rust path must equal."""
        indptr, indices, row_scale, dense = design
        n = len(indptr) - 1
        rows = np.repeat(np.arange(n), np.diff(indptr))
        out = dense.astype(np.float64) @ self.weights[self.dim :].astype(np.float64)
        vals = row_scale[rows].astype(np.float64)
        for c in range(len(CLASSES)):
            out[:, c] += np.bincount(rows, weights=self.weights[indices, c].astype(np.float64) * vals, minlength=n)
        return out

    def logits(self, responses: Any, prompts: Any, rules: np.ndarray, confidence: np.ndarray) -> np.ndarray:
        """Uncalibrated logits ``(n, 3)``; the hashed part summed in Rust as it is hashed."""
        resp = to_string_array(responses, "responses")
        pr = None if prompts is None else tuple(buffers(to_string_array(prompts, "prompts"), "prompts"))
        hashed, text_dense = _core.feature_scores(tuple(buffers(resp, "responses")), pr, weights=self._hashed_weights(), **self.config)
        dense = self._pattern_dense(np.asarray(rules), np.asarray(confidence, np.float32), text_dense)
        return hashed.reshape(len(resp), len(CLASSES)).astype(np.float64) + dense @ self.weights[self.dim :].astype(np.float64)

    def _hashed_weights(self) -> np.ndarray:
        w = self.__dict__.get("_hw")
        if w is None or w.shape[0] != self.dim:
            w = np.ascontiguousarray(self.weights[: self.dim], np.float32)
            self.__dict__["_hw"] = w
        return w

    def proba(self, responses: Any, prompts: Any, rules: Any, confidence: Any) -> np.ndarray:
        """Calibrated class probabilities ``(n, 3)`` in :data:`CLASSES` order. ``rules`` and
        ``confidence`` are the pattern step's rule ids and confidences for the same rows. A
        chunked column is read chunk by chunk, in pieces of at most 65,536 rows."""
        rules = np.asarray(rules)
        confidence = np.asarray(confidence, np.float32)
        p: Any = None
        chunks = _pieces(responses, "responses")
        n = sum(len(c) for c in chunks)
        if len(rules) != n or len(confidence) != n:
            raise FrxError(f"{len(rules)} rule ids and {len(confidence)} confidences for {n} responses")
        if prompts is not None:
            p = prompts if isinstance(prompts, (pa.Array, pa.ChunkedArray)) else to_string_array(prompts, "prompts")
            if len(p) != n:
                raise FrxError(f"prompts: {len(p)} values for {n} responses")
        out = np.empty((n, len(CLASSES)), dtype=np.float32)
        lo = 0
        for chunk in chunks:
            for start in range(0, len(chunk), _CHUNK):
                piece = chunk.slice(start, _CHUNK)
                m = len(piece)
                pp = None if prompts is None else p.slice(lo, m)
                if isinstance(pp, pa.ChunkedArray):
                    pp = pp.combine_chunks()
                z = self.logits(piece, pp, rules[lo : lo + m], confidence[lo : lo + m])
                out[lo : lo + m] = softmax(z / self.temperature)
                lo += m
        return out

    # -- training ---------------------------------------------------------------------------
    @classmethod
    def fit(cls, responses: Any, prompts: Any, rules: np.ndarray, confidence: np.ndarray, labels: np.ndarray, *,
            l2: float = 1e-4, steps: int = 300, lr: float = 0.05, class_weight_power: float = 0.5,
            groups: Any = None, config: dict[str, int] | None = None) -> "Classifier":
        """Fit on labelled rows (``labels``: class indices into :data:`CLASSES`). A row of
        class ``c`` weighs ``frequency(c) ** -class_weight_power``; with ``groups`` (a label per
        row: its source), each group weighs the same in total, so a large set does not drown a
        small one. Temperature stays 1: set it from out-of-fold logits (:func:`fit_temperature`)."""
        y = np.asarray(labels, dtype=np.int64)
        if len(y) == 0:
            raise FrxError("no labelled rows to train on")
        if len(np.unique(y)) < 2:
            raise FrxError(f"the labels hold one class only ({CLASSES[int(y[0])]}): a classifier needs at least two")
        model = cls(np.zeros((0, len(CLASSES)), np.float32), dict(config or CONFIG))
        dim = model.dim
        design = model.design(responses, prompts, rules, confidence)
        indptr, indices, row_scale, dense = design
        n = len(y)
        if n != len(indptr) - 1:
            raise FrxError(f"{n} labels for {len(indptr) - 1} responses")
        from scipy import sparse

        rows = np.repeat(np.arange(n), np.diff(indptr))
        freq = np.bincount(y, minlength=len(CLASSES)).astype(np.float64)
        sample_w = sample_weights(y, groups, class_weight_power)
        onehot = np.eye(len(CLASSES))[y]
        # Only the buckets some row uses can move: train on those, as one sparse matrix (hashed
        # columns, then the dense features), duplicates summed.
        used, local = np.unique(indices, return_inverse=True)
        k = len(used)
        hashed_part = sparse.csr_matrix((row_scale[rows].astype(np.float64), local.ravel(), indptr), shape=(n, k))
        hashed_part.sum_duplicates()
        x = sparse.hstack([hashed_part, sparse.csr_matrix(dense.astype(np.float64))], format="csr")
        xt = x.T.tocsr()
        penalty = np.zeros((k + len(DENSE), 1))
        penalty[:k] = l2  # the dense weights (bias, rules) are not penalised
        w = np.zeros((k + len(DENSE), len(CLASSES)))
        m = np.zeros_like(w)
        v = np.zeros_like(w)
        b1, b2, eps = 0.9, 0.999, 1e-8
        for t in range(1, steps + 1):
            g_rows = (softmax(x @ w) - onehot) * sample_w[:, None]
            grad = xt @ g_rows + penalty * w
            m = b1 * m + (1 - b1) * grad
            v = b2 * v + (1 - b2) * grad * grad
            w -= lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        full = np.zeros((dim + len(DENSE), len(CLASSES)), dtype=np.float32)
        full[used] = w[:k]
        full[dim:] = w[k:]
        model.weights = full
        model.meta = {"rows": int(n), "class_counts": {c: int(x) for c, x in zip(CLASSES, freq)}, "l2": l2, "steps": steps,
                      "lr": lr, "class_weight_power": class_weight_power,
                      "balanced_groups": groups is not None}
        return model

    # -- storage ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the weights (only non-zero hashed rows, as float16) and settings to an
        ``.npz``; the same model gives the same bytes."""
        dim = self.dim
        nz = np.flatnonzero(np.any(self.weights[:dim] != 0, axis=1)).astype(np.uint32)
        settings = {"config": self.config, "temperature": self.temperature, "meta": self.meta, "classes": list(CLASSES),
                    "dense": list(DENSE)}
        arrays = {"rows": nz, "hashed": self.weights[nz].astype(np.float16), "dense": self.weights[dim:].astype(np.float32),
                  "settings": np.frombuffer(json.dumps(settings, sort_keys=True).encode(), dtype=np.uint8)}
        # np.savez stamps each member with the current time: write the zip ourselves, fixed.
        import io
        import zipfile

        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for name, arr in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, buf.getvalue())

    @classmethod
    def load(cls, path: Any) -> "Classifier":
        try:
            with np.load(path) as z:
                settings = json.loads(bytes(z["settings"]).decode())
                if settings.get("classes") != list(CLASSES) or settings.get("dense") != list(DENSE):
                    raise FrxError(f"{path}: classifier was saved with other classes or features (retrain it with frx judge-train)")
                config = {k: int(v) for k, v in settings["config"].items()}
                dim = 1 << config["bits"]
                w = np.zeros((dim + len(DENSE), len(CLASSES)), dtype=np.float32)
                w[z["rows"].astype(np.int64)] = z["hashed"].astype(np.float32)
                w[dim:] = z["dense"]
        except (OSError, ValueError, KeyError) as e:
            raise FrxError(f"cannot read classifier {path}: {e}") from None
        return cls(w, config, float(settings.get("temperature", 1.0)), settings.get("meta", {}))


_DEFAULT: Classifier | None = None


def default_classifier() -> Classifier:
    """The weights shipped with frx (see the module doc)."""
    global _DEFAULT
    if _DEFAULT is None:
        with resources.files("frx").joinpath("data/refusal_classifier.npz").open("rb") as f:
            _DEFAULT = Classifier.load(f)
    return _DEFAULT
