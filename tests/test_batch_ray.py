"""The Ray executor (Ray started locally, 2 CPUs) gives the local executor's results, and a run
started with one executor resumes with the other."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

pytest.importorskip("ray")

from conftest import run_frx  # noqa: E402
from test_batch import make_input, read_run, write_config  # noqa: E402

STAGES = '''
[[stage]]
use = "normalize"
column = "prompt"
into = "prompt_norm"

[[stage]]
use = "dedup_exact"
column = "prompt"

[[stage]]
use = "filter"
expr = "len(prompt) > 40"

[[stage]]
use = "dedup_near"
column = "prompt"

[[stage]]
use = "sample"
fraction = 0.7

[[stage]]
use = "refusal_match"
column = "response"
'''


def test_ray_equals_local_and_resumes_across_executors(tmp_path):
    make_input(tmp_path, n=1500)
    cfg = write_config(tmp_path, shard_rows=300, stages=STAGES)
    run = tmp_path / "runs" / "demo"
    r = run_frx("batch", cfg, "-q")
    assert r.returncode == 0, r.stderr
    local = read_run(run)
    local_stats = json.loads((run / "stats.json").read_text())

    r = run_frx("batch", cfg, "-q", "--restart", "--executor", "ray")
    assert r.returncode == 0, r.stderr
    assert read_run(run).equals(local)
    ray_stats = json.loads((run / "stats.json").read_text())
    for a, b in zip(local_stats["stages"], ray_stats["stages"]):
        assert (a["use"], a["rows_in"], a["rows_out"], a["dropped"]) == (b["use"], b["rows_in"], b["rows_out"], b["dropped"])

    # Killed under the local executor after two shards, resumed on Ray.
    env = dict(os.environ, FRX_FAULT="2:manifest")
    p = subprocess.run([sys.executable, "-m", "frx", "batch", str(cfg), "-q", "--restart"], env=env, capture_output=True)
    assert p.returncode == -signal.SIGKILL
    r = run_frx("batch", cfg, "-q", "--executor", "ray")
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "stats.json").read_text())["shards_computed_this_invocation"] == 2
    assert read_run(run).equals(local)


def test_unreachable_cluster_is_a_clear_error(tmp_path):
    make_input(tmp_path, n=300)
    cfg = write_config(tmp_path, stages=STAGES)
    r = run_frx("batch", cfg, "--executor", "ray", "--address", "127.0.0.1:1")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("frx: error: cannot start or reach Ray")
