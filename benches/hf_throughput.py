"""Decode throughput of the hf backend with smollm2-135m on CPU, by batch size and torch thread
count (each setting in a fresh process: torch's thread pool is fixed once used).

    python benches/hf_throughput.py [--tokens 32]

Writes benches/results/hf-smollm2-cpu.json: completion tokens/s (generated tokens over wall
time, prompt processing included) for batch 1, 8, 32 at 1 and 2 threads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
from frx.llm import Sampling, load_model
batch, threads, tokens = map(int, sys.argv[1:4])
m = load_model("smollm2-135m", cache=False, threads=threads, batch_size=batch)
topics = ["a lighthouse", "a lost key", "the first snow", "a quiet library", "a broken clock", "an old map", "a red kite", "a long train"]
convs = [[{"role": "user", "content": f"Write a long story about {topics[i % 8]} number {i}."}] for i in range(batch)]
m.generate(convs[:1], Sampling(max_new_tokens=4))  # warm-up
t0 = time.perf_counter()
res = m.generate(convs, Sampling(max_new_tokens=tokens))
dt = time.perf_counter() - t0
print(json.dumps({"batch": batch, "threads": threads, "seconds": round(dt, 3), "tokens": sum(r.completion_tokens for r in res),
                  "tokens_per_s": round(sum(r.completion_tokens for r in res) / dt, 2)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=32)
    a = ap.parse_args()
    rows = []
    for threads in (1, 2):
        for batch in (1, 8, 32):
            r = subprocess.run([sys.executable, "-c", CHILD, str(batch), str(threads), str(a.tokens)],
                               capture_output=True, text=True, env=dict(os.environ), timeout=900)
            if r.returncode != 0:
                sys.exit(r.stderr)
            row = json.loads(r.stdout.strip().splitlines()[-1])
            print(row, flush=True)
            rows.append(row)
    out = ROOT / "benches" / "results" / "hf-smollm2-cpu.json"
    out.write_text(json.dumps({"model": "smollm2-135m", "device": "cpu", "cores": os.cpu_count(), "max_new_tokens": a.tokens,
                               "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
