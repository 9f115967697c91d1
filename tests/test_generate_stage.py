"""The `generate` stage of frx batch: sharded, resumable, cached (no repeated model calls)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
from conftest import run_frx
from openai_server import FakeServer


def _setup(tmp_path, n=60):
    prompts = [f"prompt {i}" for i in range(n)]
    prompts[7] = None
    prompts[11] = "boom [fault:400*99]"
    pq.write_table(pa.table({"id": list(range(n)), "prompt": prompts}), tmp_path / "p.parquet")
    server = FakeServer().start()
    cfg = tmp_path / "gen.toml"
    cfg.write_text(f'''
[input]
path = "p.parquet"
shard_rows = 10

[[stage]]
use = "generate"
model = "openai:test@{server.url}"
max_new_tokens = 32
options = {{ concurrency = 4, backoff_s = 0.01 }}

[[stage]]
use = "judge"
column = "response"
finish_reason_column = "finish_reason"

[output]
path = "run"
''')
    return server, cfg


def test_generate_kill_resume_no_repeated_calls(tmp_path):
    server, cfg = _setup(tmp_path)
    env = dict(os.environ, FRX_CACHE_DIR=str(tmp_path / "cache"), FRX_FAULT="3:stages")
    r = subprocess.run([sys.executable, "-m", "frx", "batch", str(cfg), "-q"], env=env, capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr
    first = server.requests
    assert 30 <= first < 60
    env.pop("FRX_FAULT")
    r = subprocess.run([sys.executable, "-m", "frx", "batch", str(cfg)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # Responses generated before the kill come from the cache: every non-null prompt is answered
    # exactly once. The failed call (HTTP 400, not retryable, not cached) is tried again only if
    # its shard had not been committed before the kill.
    assert sum(server.successes.values()) == 58 and server.stats()["duplicates"] == 0
    boom = server.attempts["boom [fault:400*99]"]
    assert boom in (1, 2)
    out = pq.read_table(tmp_path / "run" / "data").sort_by("id")
    assert out.num_rows == 60 and out.column("id").to_pylist() == list(range(60))
    rows = out.to_pylist()
    assert rows[0]["response"] == "echo: prompt 0" and rows[0]["finish_reason"] == "stop" and rows[0]["model"].startswith("openai:")
    assert rows[7]["response"] is None and rows[7]["error"] == "null prompt" and rows[7]["label"] == "undetermined"
    assert rows[11]["error"].startswith("HTTP 400") and rows[11]["finish_reason"] == "error"
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    gen = next(s for s in stats["stages"] if s["use"] == "generate")
    assert gen["counters"]["cache_hits"] + gen["counters"]["cache_misses"] == 59
    assert gen["counters"]["null_prompts"] == 1 and gen["counters"]["errors"] == 1
    # A full restart is answered from the cache: no new calls, the failed one is retried.
    r = subprocess.run([sys.executable, "-m", "frx", "batch", str(cfg), "--restart"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sum(server.successes.values()) == 58 and server.attempts["boom [fault:400*99]"] == boom + 1
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    gen = next(s for s in stats["stages"] if s["use"] == "generate")
    assert gen["counters"]["cache_hits"] == 58 and gen["counters"]["cache_misses"] == 1


def test_generate_bad_config(tmp_path):
    _, cfg = _setup(tmp_path)
    cfg.write_text(cfg.read_text().replace('model = "openai', 'modle = "openai'))
    r = run_frx("batch", cfg)
    assert r.returncode == 2 and "model" in r.stderr and "Traceback" not in r.stderr
    _, cfg = _setup(tmp_path)
    cfg.write_text(cfg.read_text().replace('model = "openai:test@', 'model = "nosuch:test@'))
    r = run_frx("batch", cfg)
    assert r.returncode == 2 and "unknown model spec" in r.stderr and not (tmp_path / "run" / "data").exists()
