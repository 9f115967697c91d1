"""Throughput of the openai backend against the local OpenAI-compatible server (a separate
process, 10 ms simulated latency per request), through frx's full path (cache off).

    python benches/openai_throughput.py [--requests 20000] [--concurrency 256] [--latency 0.01]

Reports requests/s (median of --repeats runs) and the client overhead per request: the time
one request costs beyond the server's latency when run one at a time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--latency", type=float, default=0.01)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    srv = subprocess.Popen([sys.executable, str(ROOT / "tests" / "openai_server.py"), "--latency", str(a.latency)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(srv.stdout.readline())
        from frx.llm import Sampling, load_model

        url = f"http://127.0.0.1:{port}/v1"
        m = load_model(f"openai:bench@{url}", cache=False, concurrency=a.concurrency)
        convs = [[{"role": "user", "content": f"request {i}"}] for i in range(a.requests)]
        m.generate(convs[:1000], Sampling(max_new_tokens=8))  # warm-up
        rates = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            res = m.generate(convs, Sampling(max_new_tokens=8))
            dt = time.perf_counter() - t0
            assert all(r.error is None for r in res), next(r.error for r in res if r.error)
            rates.append(a.requests / dt)
        seq = load_model(f"openai:bench@{url}", cache=False, concurrency=1)
        n1 = 200
        t0 = time.perf_counter()
        seq.generate(convs[:n1], Sampling(max_new_tokens=8))
        per = (time.perf_counter() - t0) / n1
        result = {"requests": a.requests, "concurrency": a.concurrency, "latency_s": a.latency,
                  "requests_per_s_median": round(statistics.median(rates)), "requests_per_s_runs": [round(r) for r in rates],
                  "sequential_s_per_request": round(per, 5), "overhead_ms_per_request": round((per - a.latency) * 1000, 3),
                  "http_calls": m.backend.stats["http_calls"], "retries": m.backend.stats["retries"]}
        print(json.dumps(result, indent=2))
        out = ROOT / "benches" / "results" / "openai-throughput.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        srv.kill()


if __name__ == "__main__":
    main()
