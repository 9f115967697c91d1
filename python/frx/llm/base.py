"""What every backend shares: sampling settings, results, the batched interface, structured
output with bounded retries, and the response cache in front of it all."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import FrxError
from .cache import ResponseCache

Conversation = list[dict[str, str]]

FINISH_REASONS = ("stop", "length", "content_filter", "refusal", "error")


class Sampling(BaseModel):
    """Sampling settings, the same for every backend (vLLM/OpenAI names)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.0, ge=0.0, description="0 = greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(256, ge=1, description="Most tokens to generate per response.")
    seed: int = Field(0, description="Random seed (sampling only; greedy ignores it).")
    stop: tuple[str, ...] = Field((), description="Stop strings: generation ends before them.")


@dataclass
class Result:
    """One response. ``error`` is set (and ``finish_reason`` is ``error``) when the call failed
    for good; the row is kept, never dropped."""

    text: str | None
    finish_reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None
    refusal: str | None = None  # an API-level refusal message, if the provider gave one
    cached: bool = False
    attempts: int = 1
    parsed: Any = None  # structured output, validated

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("cached")
        d.pop("parsed")
        return json.dumps(d)

    @classmethod
    def from_json(cls, s: str) -> "Result":
        return cls(**json.loads(s), cached=True)


@dataclass
class Structured:
    """A structured-output request: a pydantic model (JSON) or a list of choices."""

    schema: type[BaseModel] | None = None
    choices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if (self.schema is None) == (self.choices is None):
            raise FrxError("structured output needs exactly one of a schema or choices")
        if self.choices is not None:
            self.choices = tuple(self.choices)
            if not self.choices:
                raise FrxError("structured output: the choice list is empty")

    def json_schema(self) -> dict[str, Any] | None:
        return None if self.schema is None else self.schema.model_json_schema()

    def key(self) -> str:
        return json.dumps({"schema": self.json_schema(), "choices": self.choices}, sort_keys=True)

    def validate(self, text: str | None) -> Any:
        """The parsed value, or raise ``ValueError`` saying why the text does not fit."""
        if text is None:
            raise ValueError("no text")
        if self.choices is not None:
            t = text.strip().strip('"').strip()
            for c in self.choices:
                if t.lower() == c.lower():
                    return c
            raise ValueError(f"not one of the choices: {t[:60]!r}")
        assert self.schema is not None
        raw = _json_object(text)
        try:
            return self.schema.model_validate_json(raw)
        except ValidationError as e:
            first = e.errors()[0]
            raise ValueError(f"invalid JSON for {self.schema.__name__}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None

    def instruction(self) -> str:
        """Appended to the last user message for backends without constrained decoding."""
        if self.choices is not None:
            return "Answer with exactly one of: " + ", ".join(self.choices) + ". Nothing else."
        return ("Reply with one JSON object and nothing else, following this JSON schema:\n"
                + json.dumps(self.json_schema(), separators=(",", ":")))


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def _json_object(text: str) -> str:
    """The JSON object in a reply: the whole text, a fenced block, or the outermost braces."""
    t = text.strip()
    m = _FENCE.search(t)
    if m:
        t = m.group(1).strip()
    if not t.startswith("{"):
        lo, hi = t.find("{"), t.rfind("}")
        if lo != -1 and hi > lo:
            t = t[lo : hi + 1]
    return t


class Backend:
    """A model behind the batched interface. Subclasses implement :meth:`_generate` (no cache)
    and set ``model_id`` (what the cache keys on: the model and anything that changes outputs)."""

    model_id: str = ""

    def constrains(self, structured: Structured) -> bool:
        """Whether the backend enforces ``structured`` while decoding (else frx asks for the
        format in the prompt and validates)."""
        return False

    def _generate(self, conversations: Sequence[Conversation], sampling: Sampling, structured: Structured | None) -> list[Result]:
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - optional
        pass


class Model:
    """A backend with the response cache in front: what the rest of frx uses.

    ``generate`` returns one :class:`Result` per conversation, in order. Cached responses are
    returned without a call; new ones are stored as soon as the backend returns them (errors are
    not cached, so a re-run retries them). ``stats`` counts calls, hits and failures.
    """

    def __init__(self, backend: Backend, spec: str, cache: ResponseCache | None = None):
        self.backend = backend
        self.spec = spec
        self.cache = cache
        self.stats = {"requests": 0, "cache_hits": 0, "cache_misses": 0, "errors": 0, "invalid_structured": 0,
                      "prompt_tokens": 0, "completion_tokens": 0}

    def generate(self, conversations: Sequence[Conversation], sampling: Sampling | None = None,
                 structured: Structured | None = None) -> list[Result]:
        sampling = sampling or Sampling()
        convs = [_check_conversation(c, i) for i, c in enumerate(conversations)]
        out: list[Result | None] = [None] * len(convs)
        keys = [self._key(c, sampling, structured) for c in convs]
        if self.cache is not None:
            for i, hit in enumerate(self.cache.get_many(keys)):
                out[i] = None if hit is None else Result.from_json(hit)
        todo = [i for i, r in enumerate(out) if r is None]
        self.stats["requests"] += len(convs)
        self.stats["cache_hits"] += len(convs) - len(todo)
        self.stats["cache_misses"] += len(todo)
        if todo:
            t0 = time.perf_counter()
            fresh = self.backend._generate([convs[i] for i in todo], sampling, structured)
            if len(fresh) != len(todo):
                raise FrxError(f"{self.spec}: backend returned {len(fresh)} results for {len(todo)} conversations")
            for i, r in zip(todo, fresh):
                self.stats["prompt_tokens"] += r.prompt_tokens
                self.stats["completion_tokens"] += r.completion_tokens
                if r.latency_s == 0.0:
                    r.latency_s = (time.perf_counter() - t0) / len(todo)
                out[i] = r
            if self.cache is not None:
                self.cache.put_many([(keys[i], out[i].to_json()) for i in todo if out[i].error is None])  # type: ignore[union-attr]
        results: list[Result] = out  # type: ignore[assignment]
        self.stats["errors"] += sum(r.error is not None for r in results)
        return results

    def generate_structured(self, conversations: Sequence[Conversation], structured: Structured,
                            sampling: Sampling | None = None, attempts: int = 3) -> list[Result]:
        """Like :meth:`generate`, with each reply validated (``Result.parsed``). Invalid replies
        are asked again with the next seed, up to ``attempts`` in all; a reply still invalid
        after that keeps ``parsed=None`` and an ``error`` saying why — it is recorded, not
        dropped."""
        if attempts < 1:
            raise FrxError("attempts must be at least 1")
        sampling = sampling or Sampling()
        convs = [list(c) for c in conversations]
        if not self.backend.constrains(structured):
            convs = [_with_instruction(c, structured.instruction()) for c in convs]
        final: list[Result | None] = [None] * len(convs)
        todo = list(range(len(convs)))
        for attempt in range(attempts):
            s = sampling if attempt == 0 else sampling.model_copy(update={"seed": sampling.seed + attempt,
                                                                           "temperature": max(sampling.temperature, 0.7)})
            results = self.generate([convs[i] for i in todo], s, structured)
            left = []
            for i, r in zip(todo, results):
                r.attempts = attempt + 1
                if r.error is not None:
                    final[i] = r
                    continue
                try:
                    r.parsed = structured.validate(r.text)
                    final[i] = r
                except ValueError as e:
                    self.stats["invalid_structured"] += 1
                    r.error = f"invalid structured output after {attempt + 1} attempt(s): {e}"
                    final[i] = r
                    left.append(i)
            todo = left
            if not todo:
                break
        return final  # type: ignore[return-value]

    def _key(self, conv: Conversation, sampling: Sampling, structured: Structured | None) -> str:
        return json.dumps({"model": self.backend.model_id, "messages": conv, "sampling": sampling.model_dump(mode="json"),
                           "structured": None if structured is None else structured.key()}, sort_keys=True)

    def close(self) -> None:
        self.backend.close()
        if self.cache is not None:
            self.cache.close()


def _check_conversation(conv: Any, i: int) -> Conversation:
    if isinstance(conv, str):
        return [{"role": "user", "content": conv}]
    if not isinstance(conv, (list, tuple)) or not conv:
        raise FrxError(f"conversation {i}: expected a non-empty list of {{role, content}} messages")
    out = []
    for m in conv:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise FrxError(f"conversation {i}: every message needs a string role and content")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _with_instruction(conv: Conversation, instruction: str) -> Conversation:
    conv = [dict(m) for m in conv]
    for m in reversed(conv):
        if m["role"] == "user":
            m["content"] = f"{m['content']}\n\n{instruction}"
            return conv
    return conv + [{"role": "user", "content": instruction}]


def apply_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` before the earliest stop string; whether one was found."""
    cut = min((p for p in (text.find(s) for s in stop if s) if p != -1), default=-1)
    return (text, False) if cut == -1 else (text[:cut], True)


__all__ = ["Backend", "Conversation", "Model", "Result", "Sampling", "Structured", "apply_stop"]
