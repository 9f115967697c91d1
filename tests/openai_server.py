"""A small OpenAI-compatible chat server for tests and benchmarks, with fault injection.

It answers ``POST /v1/chat/completions`` with "echo: <last user message>". A message containing
``[fault:KIND*N]`` fails its first N attempts with KIND (default N=1):

    429        HTTP 429 with Retry-After: 0.05
    500        HTTP 500
    400        HTTP 400 (not retryable)
    timeout    no reply for 5 s
    malformed  HTTP 200 with a body that is not JSON
    reset      the connection closes without a reply
    truncated  Content-Length promises more than is sent, then the connection closes
    empty      HTTP 200 with no choices
    refusal    (always) message.refusal set, content null
    filter     (always) finish_reason content_filter, empty content

Run in a thread (tests: ``FakeServer().start()``) or as a process
(``python tests/openai_server.py --latency 0.01`` prints the port, ``GET /stats`` reports).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import threading
from collections import Counter

FAULT = re.compile(r"\[fault:(\w+)(?:\*(\d+))?\]")


class FakeServer:
    def __init__(self, latency: float = 0.0):
        self.latency = latency
        self.attempts: Counter[str] = Counter()  # per message text
        self.successes: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests = 0
        self.auth: set[str] = set()
        self.bodies: dict[str, dict] = {}  # last request body per message text
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- HTTP --------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                method, path, _ = line.decode().split(" ", 2)
                headers = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if "authorization" in headers:
                    self.auth.add(headers["authorization"])
                if method == "GET" and path == "/stats":
                    await self._send(writer, 200, json.dumps(self.stats()).encode())
                    continue
                if not await self._chat(writer, json.loads(body)):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def _send(self, writer: asyncio.StreamWriter, status: int, body: bytes, extra: str = "", length: int | None = None) -> None:
        reason = {200: "OK", 400: "Bad Request", 429: "Too Many Requests", 500: "Internal Server Error"}[status]
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body) if length is None else length}\r\n{extra}\r\n")
        writer.write(head.encode() + body)
        await writer.drain()

    async def _chat(self, writer: asyncio.StreamWriter, req: dict) -> bool:
        """Answer one request; False closes the connection."""
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            text = [m for m in req["messages"] if m["role"] == "user"][-1]["content"]
            self.attempts[text] += 1
            self.bodies[text] = req
            if self.latency:
                await asyncio.sleep(self.latency)
            m = FAULT.search(text)
            kind = m.group(1) if m else None
            failing = m is not None and self.attempts[text] <= int(m.group(2) or 1)
            if failing and kind == "429":
                await self._send(writer, 429, b'{"error": {"message": "slow down"}}', "Retry-After: 0.05\r\n")
                return True
            if failing and kind in ("500", "400"):
                await self._send(writer, int(kind), b'{"error": {"message": "injected"}}')
                return True
            if failing and kind == "timeout":
                await asyncio.sleep(5)
                return False
            if failing and kind == "malformed":
                await self._send(writer, 200, b'{"id": "x", "choices": [')
                return True
            if failing and kind == "reset":
                return False
            if failing and kind == "truncated":
                await self._send(writer, 200, b'{"id": "x", "obj', length=400)
                return False
            if failing and kind == "empty":
                await self._send(writer, 200, json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": req["model"], "choices": []}).encode())
                return True
            message: dict = {"role": "assistant", "content": f"echo: {text}"}
            finish = "stop"
            if kind == "refusal":
                message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
            elif kind == "filter":
                message, finish = {"role": "assistant", "content": ""}, "content_filter"
            self.successes[text] += 1
            body = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": req["model"],
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": {"prompt_tokens": len(text.split()), "completion_tokens": len(text.split()) + 1,
                              "total_tokens": 2 * len(text.split()) + 1},
                    "echo_request": {k: req.get(k) for k in ("temperature", "max_tokens", "seed", "stop", "response_format")}}
            await self._send(writer, 200, json.dumps(body).encode())
            return True
        finally:
            self.in_flight -= 1

    def stats(self) -> dict:
        return {"requests": self.requests, "max_in_flight": self.max_in_flight,
                "duplicates": sum(1 for v in self.successes.values() if v > 1)}

    # -- running -----------------------------------------------------------------------------
    async def _serve(self, started: threading.Event | None = None) -> None:
        server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=4096)
        self.port = server.sockets[0].getsockname()[1]
        if started is not None:
            started.set()
        else:
            print(self.port, flush=True)
        async with server:
            await server.serve_forever()

    def start(self) -> "FakeServer":
        started = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._serve(started))

        threading.Thread(target=run, daemon=True).start()
        started.wait(10)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    s = FakeServer(a.latency)
    s.port = a.port
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(s._serve())
