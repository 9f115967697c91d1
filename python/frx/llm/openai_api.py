"""Any OpenAI-compatible server (vLLM serve, SGLang, TGI, llama.cpp, Ollama, hosted APIs): the
Chat Completions wire protocol over aiohttp, with bounded concurrency, retries with backoff on 429/5xx/timeouts/connection
errors/malformed replies (honouring ``Retry-After``), a per-request timeout, an optional
requests-per-minute limit. API-level refusals (a ``refusal`` field, ``content_filter`` finish)
are recorded in the result. The key is read from the environment variable named by
``api_key_env`` and is never logged or written anywhere.

Why not the ``openai`` SDK's ``AsyncOpenAI``: frx measured it first. Its per-request work
(request-parameter transforms, option copies, response models) costs about 1 ms of CPU, which
capped it at ~900 requests/s at concurrency 256 on a 2-core machine (httpx's pool, its default
transport, ~180/s); the same requests over aiohttp directly ran at ~4,000/s. frx needs only one
endpoint, so it speaks it directly. See benches/openai_throughput.py."""

from __future__ import annotations

import asyncio
import json
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


class OpenAIBackend(Backend):
    def __init__(self, model: str, base_url: str, *, api_key_env: str = "OPENAI_API_KEY", concurrency: int = 64,
                 timeout_s: float = 120.0, max_attempts: int = 6, rpm: float | None = None, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0):
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            raise FrxError("the openai backend needs aiohttp: pip install aiohttp") from None
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
        import aiohttp

        # The key is read here, at call time, and only put in the Authorization header.
        key = os.environ.get(self.api_key_env) or "EMPTY"
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        sem = asyncio.Semaphore(self.concurrency)
        limiter = _RateLimiter(self.rpm)
        extra: dict[str, Any] = {}
        if structured is not None and structured.schema is not None:
            extra["response_format"] = {"type": "json_schema", "json_schema": {
                "name": structured.schema.__name__, "schema": structured.json_schema()}}
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:

            async def one(conv: Conversation) -> Result:
                async with sem:
                    return await self._call(session, conv, sampling, extra, limiter)

            return list(await asyncio.gather(*(one(c) for c in convs)))

    async def _call(self, session: Any, conv: Conversation, sampling: Sampling, extra: dict[str, Any], limiter: _RateLimiter) -> Result:
        import aiohttp

        body: dict[str, Any] = {"model": self.model, "messages": conv, "temperature": sampling.temperature,
                                "top_p": sampling.top_p, "max_tokens": sampling.max_new_tokens, "seed": sampling.seed, **extra}
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        payload = json.dumps(body)
        url = f"{self.base_url}/chat/completions"
        last = "no attempt"
        for attempt in range(1, self.max_attempts + 1):
            await limiter.wait()
            t0 = time.perf_counter()
            delay = None
            try:
                self.stats["http_calls"] += 1
                async with session.post(url, data=payload) as resp:
                    raw = await resp.read()
                    status = resp.status
                    retry_after = resp.headers.get("Retry-After")
                if status != 200:
                    last = f"HTTP {status}: {_error_message(raw)}"
                    if status < 500 and status not in _RETRY_STATUS:
                        return Result(None, "error", error=last, attempts=attempt, latency_s=time.perf_counter() - t0)
                    delay = _seconds(retry_after)
                else:
                    return _parse(raw, attempt, time.perf_counter() - t0)
            except (asyncio.TimeoutError, aiohttp.ClientError) as e:
                last = f"{type(e).__name__}: {str(e)[:200]}"
            except ValueError as e:  # malformed or truncated replies
                last = f"bad reply: {str(e)[:200]}"
            if attempt < self.max_attempts:
                self.stats["retries"] += 1
                if delay is None:
                    delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
                await asyncio.sleep(delay)
        return Result(None, "error", error=f"gave up after {self.max_attempts} attempts: {last}", attempts=self.max_attempts)


def _parse(raw: bytes, attempt: int, latency: float) -> Result:
    """A chat.completion reply → Result; ValueError if it is not one."""
    data = json.loads(raw)
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices or not isinstance(choices[0], dict):
        raise ValueError("reply has no choices")
    choice = choices[0]
    msg = choice.get("message") or {}
    refusal = msg.get("refusal")
    content = msg.get("content")
    if content is not None and not isinstance(content, str):
        raise ValueError("message content is not text")
    finish = "refusal" if refusal else (choice.get("finish_reason") or "stop")
    usage = data.get("usage") or {}
    return Result(text=content or "", finish_reason=finish, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                  completion_tokens=int(usage.get("completion_tokens") or 0), latency_s=latency,
                  refusal=refusal, attempts=attempt)


def _error_message(raw: bytes) -> str:
    try:
        err = json.loads(raw).get("error")
        msg = err.get("message") if isinstance(err, dict) else err
        return str(msg)[:200]
    except (ValueError, AttributeError):
        return raw[:200].decode("utf-8", "replace")


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
