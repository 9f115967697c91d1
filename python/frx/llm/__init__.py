"""Model backends behind one batched interface.

Example (loads a model, so not a doctest)::

    from frx.llm import load_model, Sampling
    m = load_model("smollm2-135m")                       # offline, CPU
    [r.text for r in m.generate([[{"role": "user", "content": "Hi"}]], Sampling(max_new_tokens=20))]

Specs: ``hf:<dir>`` or a local directory (transformers), ``vllm:<model>`` (offline engine),
``openai:<model>@<base_url>`` (any OpenAI-compatible server), aliases (:data:`ALIASES`).
Every backend returns :class:`Result` rows in input order; responses are cached by content.
"""

from __future__ import annotations

from typing import Any

from .base import Backend, Conversation, Model, Result, Sampling, Structured
from .cache import ResponseCache, default_cache_dir
from .models import ALIASES, load_model, parse_spec

__all__ = ["ALIASES", "Backend", "Conversation", "Model", "ResponseCache", "Result", "Sampling", "Structured",
           "default_cache_dir", "load_judge_model", "load_model", "parse_spec"]


class _JudgeAdapter:
    """A :class:`Model` as the judge's ``JudgeModel``: greedy, short replies; a failed call
    gives an empty reply, which the judge records as undetermined."""

    def __init__(self, model: Model, max_new_tokens: int = 96):
        self.model = model
        self.sampling = Sampling(max_new_tokens=max_new_tokens)

    def complete(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        return [r.text or "" for r in self.model.generate(conversations, self.sampling)]


def load_judge_model(spec: str, max_new_tokens: int = 96, **options: Any) -> _JudgeAdapter:
    """A model spec (see :func:`load_model`) as the cascade's judge: greedy replies of at most
    ``max_new_tokens`` (the strict two-line verdict fits in 96; a reasoning judge needs more)."""
    return _JudgeAdapter(load_model(spec, **options), max_new_tokens)
