"""Any OpenAI-compatible server (vLLM serve, SGLang, TGI, llama.cpp, Ollama, hosted APIs) through
``AsyncOpenAI``: bounded concurrency, retries with backoff on 429/5xx/timeouts/connection
errors/malformed replies (honouring ``Retry-After``), a per-request timeout, an optional
requests-per-minute limit. API-level refusals (a ``refusal`` field, ``content_filter`` finish)
are recorded in the result. The key is read from the environment variable named by
``api_key_env`` and is never logged or written anywhere."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from typing import Any, Sequence

from ..errors import FrxError
from .base import Backend, Conversation, Result, Sampling, Structured

_RETRY_STATUS = {408, 409, 425, 429}


class _RateLimiter:
    """Spaces request starts evenly to at most ``rpm`` per minute."""

    def __init__(self, rpm: float | None):
        self.interval = 60.0 / rpm if rpm else 0.0
        self.next = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            now = time.monotonic()
            at = max(now, self.next)
            self.next = at + self.interval
        if at > now:
            await asyncio.sleep(at - now)


def _retry_after(exc: Any) -> float | None:
    resp = getattr(exc, "response", None)
    value = resp.headers.get("retry-after") if resp is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class OpenAIBackend(Backend):
    def __init__(self, model: str, base_url: str, *, api_key_env: str = "OPENAI_API_KEY", concurrency: int = 64,
                 timeout_s: float = 120.0, max_attempts: int = 6, rpm: float | None = None, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0):
        try:
            import openai  # noqa: F401
        except ImportError:
            raise FrxError("the openai backend needs the openai package: pip install openai") from None
        if concurrency < 1 or max_attempts < 1 or timeout_s <= 0:
            raise FrxError("openai backend: concurrency and max_attempts must be ≥ 1 and timeout_s > 0")
        self.model, self.base_url = model, base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.concurrency, self.timeout_s, self.max_attempts = concurrency, timeout_s, max_attempts
        self.rpm, self.backoff_s, self.max_backoff_s = rpm, backoff_s, max_backoff_s
        self.model_id = f"openai:{model}@{self.base_url}"
        self.stats = {"http_calls": 0, "retries": 0}

    def constrains(self, structured: Structured) -> bool:
        return structured.schema is not None  # response_format json_schema; choices are prompted

    # The OpenAI key is read here, at call time, and only handed to the client.
    def _client(self) -> Any:
        import openai

        try:
            import httpx2 as httpx  # what this openai release is built on
        except ImportError:
            import httpx  # type: ignore[no-redef]
        key = os.environ.get(self.api_key_env) or "EMPTY"
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=key, timeout=self.timeout_s, max_retries=0,
                                  http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=self.timeout_s))

    def _generate(self, conversations: Sequence[Conversation], sampling: Sampling, structured: Structured | None) -> list[Result]:
        coro = self._run(list(conversations), sampling, structured)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        # Called from inside an event loop (a notebook): run ours in a thread.
        box: dict[str, Any] = {}
        t = threading.Thread(target=lambda: box.setdefault("r", asyncio.run(coro)))
        t.start()
        t.join()
        return box["r"]

    async def _run(self, convs: list[Conversation], sampling: Sampling, structured: Structured | None) -> list[Result]:
        client = self._client()
        sem = asyncio.Semaphore(self.concurrency)
        limiter = _RateLimiter(self.rpm)
        extra: dict[str, Any] = {}
        if structured is not None and structured.schema is not None:
            extra["response_format"] = {"type": "json_schema", "json_schema": {
                "name": structured.schema.__name__, "schema": structured.json_schema()}}

        async def one(conv: Conversation) -> Result:
            async with sem:
                return await self._call(client, conv, sampling, extra, limiter)

        try:
            return list(await asyncio.gather(*(one(c) for c in convs)))
        finally:
            await client.close()

    async def _call(self, client: Any, conv: Conversation, sampling: Sampling, extra: dict[str, Any], limiter: _RateLimiter) -> Result:
        import openai

        last = "no attempt"
        for attempt in range(1, self.max_attempts + 1):
            await limiter.wait()
            t0 = time.perf_counter()
            delay = None
            try:
                self.stats["http_calls"] += 1
                resp = await client.chat.completions.create(
                    model=self.model, messages=conv, temperature=sampling.temperature, top_p=sampling.top_p,
                    max_tokens=sampling.max_new_tokens, seed=sampling.seed, stop=list(sampling.stop) or None, **extra)
                if not getattr(resp, "choices", None):
                    raise ValueError("reply has no choices")
                choice = resp.choices[0]
                msg = choice.message
                refusal = getattr(msg, "refusal", None)
                finish = "refusal" if refusal else (choice.finish_reason or "stop")
                usage = getattr(resp, "usage", None)
                return Result(text=msg.content or "", finish_reason=finish,
                              prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                              completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
                              latency_s=time.perf_counter() - t0, refusal=refusal, attempts=attempt)
            except openai.APIStatusError as e:
                last = f"HTTP {e.status_code}: {str(e.message)[:200]}"
                if e.status_code < 500 and e.status_code not in _RETRY_STATUS:
                    return Result(None, "error", error=last, attempts=attempt, latency_s=time.perf_counter() - t0)
                delay = _retry_after(e)
            except (openai.APITimeoutError, openai.APIConnectionError) as e:
                last = f"{type(e).__name__}: {str(e)[:200]}"
            except Exception as e:  # malformed or truncated replies
                last = f"bad reply ({type(e).__name__}): {str(e)[:200]}"
            if attempt < self.max_attempts:
                self.stats["retries"] += 1
                if delay is None:
                    delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
                await asyncio.sleep(delay)
        return Result(None, "error", error=f"gave up after {self.max_attempts} attempts: {last}", attempts=self.max_attempts)
