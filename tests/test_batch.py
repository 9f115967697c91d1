"""`frx batch`: results equal an independent whole-table computation, crashes lose nothing,
bad configs and inputs fail cleanly."""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import frx.dedup as dd
from frx.refusal import Matcher

from conftest import run_frx

N = 2400
SHARD = 300  # 8 shards


def make_input(dirpath: Path, n: int = N, seed: int = 0) -> Path:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(400)]
    prompts, responses = [], []
    for i in range(n):
        r = rng.random()
        if r < 0.08 and prompts:
            prompts.append(prompts[rng.randrange(len(prompts))].upper())          # exact copy
        elif r < 0.16 and prompts:
            w = prompts[rng.randrange(len(prompts))].split()
            w[rng.randrange(len(w))] = rng.choice(words)
            prompts.append(" ".join(w))                                            # near copy
        else:
            prompts.append(" ".join(rng.choice(words) for _ in range(20)))
        responses.append(rng.choice(["I'm sorry, but I can't help with that.", "Sure, here you go.",
                                     "Here is a story. He said \"I cannot assist with that.\""]))
    table = pa.table({"id": np.arange(n), "prompt": prompts, "response": responses})
    path = dirpath / "prompts.parquet"
    pq.write_table(table, path, row_group_size=250)
    return path


def write_config(dirpath: Path, body_extra: str = "", shard_rows: int = SHARD, stages: str | None = None) -> Path:
    stages = stages if stages is not None else '''
[[stage]]
use = "dedup_exact"
column = "prompt"

[[stage]]
use = "dedup_near"
column = "prompt"
threshold = 0.7

[[stage]]
use = "refusal_match"
column = "response"
'''
    cfg = dirpath / "pipeline.toml"
    cfg.write_text(f'''
[input]
path = "prompts.parquet"
shard_rows = {shard_rows}
{stages}
[output]
path = "runs/demo"

[run]
executor = "local"
seed = 0
{body_extra}''')
    return cfg


def read_run(run: Path) -> pa.Table:
    files = sorted((run / "data").glob("part-*.parquet"))
    return pa.concat_tables(pq.read_table(f) for f in files)


def reference(path: Path) -> pa.Table:
    """The same pipeline on the whole table at once, with the library functions."""
    t = pq.read_table(path)
    t = t.filter(pa.array(dd.exact(t.column("prompt"))))
    # Across shards a row is dropped when, as it is read, it joins a cluster with an earlier row:
    # the answers of one NearIndex.add over the whole column.
    ids = dd.NearIndex(threshold=0.7).add(t.column("prompt"))
    t = t.filter(pa.array(ids == np.arange(len(ids))))
    hit, opening = Matcher.default().flags(t.column("response"))
    return t.append_column("refusal_hit", pa.array(hit)).append_column("refusal_first_sentence", pa.array(opening))


@pytest.fixture()
def job(tmp_path):
    src = make_input(tmp_path)
    cfg = write_config(tmp_path)
    return tmp_path, src, cfg


def test_batch_equals_whole_table_reference(job):
    d, src, cfg = job
    r = run_frx("batch", cfg)
    assert r.returncode == 0, r.stderr
    run = d / "runs" / "demo"
    out = read_run(run)
    assert out.equals(reference(src))
    assert len(list((run / "data").glob("part-*.parquet"))) == N // SHARD
    stats = json.loads((run / "stats.json").read_text())
    assert stats["rows_in"] == N and stats["rows_out"] == out.num_rows
    st = {s["use"]: s for s in stats["stages"]}
    assert st["dedup_exact"]["dropped"]["exact duplicate"] == N - st["dedup_exact"]["rows_out"]
    assert (run / "_SUCCESS").exists()
    # A second run with the same config resumes: nothing left to compute.
    r2 = run_frx("batch", cfg)
    assert r2.returncode == 0, r2.stderr
    assert json.loads((run / "stats.json").read_text())["shards_computed_this_invocation"] == 0
    assert read_run(run).equals(out)


def test_shard_size_does_not_change_results(tmp_path):
    make_input(tmp_path)
    outs = []
    for rows in (7, 1000, 100000):
        cfg = write_config(tmp_path, shard_rows=rows, stages='''
[[stage]]
use = "dedup_near"
column = "prompt"

[[stage]]
use = "sample"
fraction = 0.5

[[stage]]
use = "filter"
expr = "len(prompt) > 60 and not (response == 'Sure, here you go.')"
''')
        r = run_frx("batch", cfg, "--restart")
        assert r.returncode == 0, r.stderr
        outs.append(read_run(tmp_path / "runs" / "demo"))
    assert outs[0].equals(outs[1]) and outs[1].equals(outs[2])
    resp = outs[0].column("response").to_pylist()
    assert "Sure, here you go." not in resp
    assert all(len(p) > 60 for p in outs[0].column("prompt").to_pylist())
    assert 0.25 * N < outs[0].num_rows < 0.5 * N


KILL_POINTS = [
    "0:read", "0:stages", "0:state", "0:data", "0:manifest",
    "1:read", "2:state", "3:data", "4:manifest", "5:stages", "6:data", "7:state", "7:manifest",
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_then_resume_equals_uninterrupted(job, point):
    d, src, cfg = job
    run = d / "runs" / "demo"
    env = dict(os.environ, FRX_FAULT=point)
    r = subprocess.run([sys.executable, "-m", "frx", "batch", str(cfg), "-q"], env=env, capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    manifest = json.loads((run / "manifest.json").read_text())
    done = {int(k) for k in manifest["done"]}
    shard = int(point.split(":")[0])
    # Writes overlap with the next shard's stages, so the manifest may lag one or two shards
    # behind the kill point; it is always a prefix, and it includes the killed shard only if
    # the kill came after its manifest entry.
    assert done == set(range(len(done))), done
    assert len(done) <= shard + 1 and (shard in done) == point.endswith("manifest"), done
    mtimes = {i: (run / "data" / f"part-{i:05d}.parquet").stat().st_mtime_ns for i in done}
    r2 = run_frx("batch", cfg)
    assert r2.returncode == 0, r2.stderr
    stats = json.loads((run / "stats.json").read_text())
    assert stats["shards_computed_this_invocation"] == N // SHARD - len(done)
    for i, m in mtimes.items():  # finished shards were not recomputed
        assert (run / "data" / f"part-{i:05d}.parquet").stat().st_mtime_ns == m
    assert read_run(run).equals(reference(src))
    assert not list(run.rglob(".*.tmp")) or all(p.stat().st_size >= 0 for p in run.rglob(".*.tmp"))


@pytest.mark.parametrize("delay", [0.6, 1.0, 1.4])
def test_sigkill_at_a_random_moment(tmp_path, delay):
    src = make_input(tmp_path, n=12000, seed=3)
    cfg = write_config(tmp_path, shard_rows=200)
    run = tmp_path / "runs" / "demo"
    p = subprocess.Popen([sys.executable, "-m", "frx", "batch", str(cfg), "-q"], stderr=subprocess.DEVNULL)
    time.sleep(delay + random.random() * 0.3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = run_frx("batch", cfg)
    assert r.returncode == 0, r.stderr
    out = read_run(run)
    assert out.equals(reference(src))
    assert len(set(out.column("id").to_pylist())) == out.num_rows


def test_second_process_is_refused(job):
    d, _, cfg = job
    run = d / "runs" / "demo"
    run.mkdir(parents=True)
    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, b"4242")
    try:
        r = run_frx("batch", cfg)
    finally:
        os.close(fd)
    assert r.returncode == 2 and "in use by another frx batch (pid 4242)" in r.stderr
    assert not (run / "data").exists() or not list((run / "data").iterdir())


def test_changed_config_needs_restart(job):
    d, src, cfg = job
    assert run_frx("batch", cfg).returncode == 0
    r = run_frx("batch", cfg, "--set", "stage.2.threshold=0.9")
    assert r.returncode == 2 and "different config" in r.stderr and "--restart" in r.stderr
    r = run_frx("batch", cfg, "--set", "stage.2.threshold=0.9", "--restart")
    assert r.returncode == 0, r.stderr
    saved = json.loads((d / "runs" / "demo" / "config.json").read_text())
    assert saved["config"]["stage"][1]["threshold"] == 0.9


def test_dry_run_and_list_stages(job):
    d, _, cfg = job
    r = run_frx("batch", cfg, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "8 shard(s)" in r.stdout and "dedup_near" in r.stdout and "refusal_hit" in r.stdout
    assert not (d / "runs").exists()
    r = run_frx("batch", "--list-stages")
    assert r.returncode == 0
    for name in ("read", "normalize", "dedup_exact", "dedup_near", "refusal_match", "filter", "sample", "write"):
        assert f"\n{name}" in "\n" + r.stdout
    assert "threshold" in r.stdout


def _stage_cfg(d: Path, stages: str) -> Path:
    return write_config(d, stages=stages)


BAD_CONFIGS = [
    ('[[stage]]\nuse = "nope"\n', "unknown stage 'nope'"),
    ('[[stage]]\nuse = "dedup_near"\ncolumn = "prompt"\nthreshhold = 0.7\n', "#1 (dedup_near): threshhold"),
    ('[[stage]]\nuse = "dedup_near"\ncolumn = "prompt"\nthreshold = 2\n', "threshold"),
    ('[[stage]]\nuse = "dedup_exact"\ncolumn = "missing"\n', "column 'missing' not found"),
    ('[[stage]]\nuse = "dedup_exact"\ncolumn = "id"\n', "not text"),
    ('[[stage]]\nuse = "filter"\nexpr = "nosuch > 3"\n', "unknown column 'nosuch'"),
    ('[[stage]]\nuse = "filter"\nexpr = "__import__(\'os\')"\n', "unsupported syntax"),
    ('[[stage]]\nuse = "read"\n', "configured by [input]"),
    ('[[stage]]\nuse = "sample"\n', "fraction"),
    ('[stage]\nuse = "sample"\n', "[[stage]]"),
]


@pytest.mark.parametrize("stages,words", BAD_CONFIGS)
def test_bad_configs(tmp_path, stages, words):
    make_input(tmp_path)
    cfg = _stage_cfg(tmp_path, stages)
    r = run_frx("batch", cfg)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], lines
    assert not (tmp_path / "runs").exists()


def test_bad_inputs_and_overrides(tmp_path):
    make_input(tmp_path)
    cfg = write_config(tmp_path)
    cases = [
        (["--set", "stage.9.threshold=1"], "no stage number 9"),
        (["--set", "nonsense"], "KEY=VALUE"),
        (["--set", "input.shard_rows=0"], "input.shard_rows"),
        (["--set", 'input.path="nope/*.parquet"'], "matches no files"),
        (["--set", 'input.path="missing.parquet"'], "input not found"),
        (["--set", "run.executor=spark"], "run.executor"),
    ]
    for args, words in cases:
        r = run_frx("batch", cfg, *args)
        assert r.returncode == 2 and words in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "broken.toml").write_text("[input\npath=")
    r = run_frx("batch", tmp_path / "broken.toml")
    assert r.returncode == 2 and "invalid TOML" in r.stderr and "line" in r.stderr


def test_corrupt_mixed_and_empty_inputs(tmp_path):
    make_input(tmp_path)
    cfg = write_config(tmp_path)
    parts = tmp_path / "parts"
    parts.mkdir()
    pq.write_table(pq.read_table(tmp_path / "prompts.parquet"), parts / "a.parquet")
    pq.write_table(pa.table({"id": [1], "prompt": ["x"]}), parts / "b.parquet")
    r = run_frx("batch", cfg, "--set", 'input.path="parts"')
    assert r.returncode == 2 and "b.parquet: schema differs" in r.stderr
    (parts / "b.parquet").write_bytes(b"PAR1 truncated")
    r = run_frx("batch", cfg, "--set", 'input.path="parts"')
    assert r.returncode == 2 and "b.parquet" in r.stderr
    pq.write_table(pq.read_table(tmp_path / "prompts.parquet").slice(0, 0), tmp_path / "empty.parquet")
    r = run_frx("batch", cfg, "--set", 'input.path="empty.parquet"')
    assert r.returncode == 2 and "no rows" in r.stderr
    (tmp_path / "runs").write_text("a file where the output directory should be")
    r = run_frx("batch", cfg)
    assert r.returncode == 2 and "runs" in r.stderr


def test_write_failure_keeps_finished_shards(job, monkeypatch):
    import errno

    from frx.config import load_config
    from frx.engine import run as engine_run
    from frx.errors import FrxError

    d, src, cfg_path = job
    cfg, base = load_config(cfg_path)
    plan = engine_run.make_plan(cfg, base)
    real = engine_run.write_parquet
    calls = {"n": 0}

    def flaky(table, path):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, path)

    monkeypatch.setattr(engine_run, "write_parquet", flaky)
    with pytest.raises(FrxError, match="No space left on device"):
        engine_run.run_batch(plan, quiet=True)
    done = json.loads((d / "runs" / "demo" / "manifest.json").read_text())["done"]
    assert sorted(done) == ["0", "1", "2"]
    monkeypatch.setattr(engine_run, "write_parquet", real)
    plan = engine_run.make_plan(cfg, base)
    stats = engine_run.run_batch(plan, quiet=True)
    assert stats["shards_computed_this_invocation"] == N // SHARD - 3
    assert read_run(d / "runs" / "demo").equals(reference(src))


def test_jsonl_and_csv_inputs(tmp_path):
    src = make_input(tmp_path)
    t = pq.read_table(src)
    with open(tmp_path / "p.jsonl", "w") as f:
        for row in t.to_pylist():
            f.write(json.dumps(row) + "\n")
    cfg = write_config(tmp_path)
    r = run_frx("batch", cfg, "--set", 'input.path="p.jsonl"')
    assert r.returncode == 0, r.stderr
    out = read_run(tmp_path / "runs" / "demo")
    assert out.column("prompt").to_pylist() == reference(src).column("prompt").to_pylist()


POOL_STAGES = '''
[[stage]]
use = "normalize"
column = "prompt"
into = "prompt_norm"

[[stage]]
use = "judge"
column = "response"

[[stage]]
use = "filter"
expr = "len(prompt) > 40"

[[stage]]
use = "dedup_near"
column = "prompt"

[[stage]]
use = "sample"
fraction = 0.8
'''


def test_worker_processes_give_identical_results_and_resume(tmp_path):
    make_input(tmp_path)
    cfg = write_config(tmp_path, stages=POOL_STAGES)
    run = tmp_path / "runs" / "demo"
    assert run_frx("batch", cfg, "-q").returncode == 0
    one = read_run(run)
    one_stats = json.loads((run / "stats.json").read_text())["stages"]
    r = run_frx("batch", cfg, "-q", "--restart", "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert read_run(run).equals(one)
    two_stats = json.loads((run / "stats.json").read_text())["stages"]
    assert [(s["rows_in"], s["rows_out"], s["dropped"]) for s in one_stats] == [
        (s["rows_in"], s["rows_out"], s["dropped"]) for s in two_stats
    ]
    env = dict(os.environ, FRX_FAULT="3:manifest")
    p = subprocess.run([sys.executable, "-m", "frx", "batch", str(cfg), "-q", "--restart", "--workers", "2"],
                       env=env, capture_output=True)
    assert p.returncode == -signal.SIGKILL
    r = run_frx("batch", cfg, "-q", "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "stats.json").read_text())["shards_computed_this_invocation"] == N // SHARD - 4
    assert read_run(run).equals(one)


def test_outputs_honour_the_umask_and_the_lock_goes_when_the_run_ends(job):
    """Files a team shares: a run's Parquet files get 0666 less the umask (not mkstemp's 0600),
    and a finished run leaves no .lock behind."""
    d, _, cfg = job
    r = subprocess.run(["bash", "-c", f"umask 022 && exec {sys.executable} -m frx batch {cfg} -q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    run = d / "runs" / "demo"
    parts = list((run / "data").glob("*.parquet"))
    assert parts and all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in parts)
    assert not (run / ".lock").exists()
    # A second run of the finished pipeline takes and releases the lock again.
    assert run_frx("batch", cfg).returncode == 0
    assert not (run / ".lock").exists()


def test_temp_beside_modes(tmp_path):
    from frx.io import temp_beside, write_parquet

    old = os.umask(0o027)
    try:
        f = temp_beside(tmp_path / "x.parquet")
        dd = temp_beside(tmp_path / "model", directory=True)
        write_parquet(pa.table({"a": [1]}), tmp_path / "w.parquet")
    finally:
        os.umask(old)
    assert stat.S_IMODE(f.stat().st_mode) == 0o640 and stat.S_IMODE(dd.stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "w.parquet").stat().st_mode) == 0o640
    assert f.name.startswith(".x.parquet.") and f.parent == tmp_path


def _layouts(dirpath: Path, table: pa.Table) -> dict[str, str]:
    """The same rows in the shapes users' files come in; returns config input paths."""
    import pyarrow.csv as pacsv

    pq.write_table(table, dirpath / "one_group.parquet")  # pyarrow's default: a single row group
    pq.write_table(table, dirpath / "tiny_groups.parquet", row_group_size=7)
    (dirpath / "many").mkdir()
    for k in range(0, table.num_rows, 230):
        pq.write_table(table.slice(k, 230), dirpath / "many" / f"part-{k:06d}.parquet")
    with open(dirpath / "rows.jsonl", "w") as f:
        for row in table.to_pylist():
            f.write(json.dumps(row) + "\n")
    pacsv.write_csv(table, dirpath / "rows.csv")
    return {"one row group": "one_group.parquet", "tiny row groups": "tiny_groups.parquet", "a directory of files": "many",
            "JSONL": "rows.jsonl", "CSV": "rows.csv"}


def test_every_input_layout_gives_the_same_result(tmp_path):
    src = make_input(tmp_path)
    want = reference(src)
    for name, path in _layouts(tmp_path, pq.read_table(src)).items():
        cfg = write_config(tmp_path)
        cfg.write_text(cfg.read_text().replace('path = "prompts.parquet"', f'path = "{path}"', 1))
        r = run_frx("batch", cfg, "--restart")
        assert r.returncode == 0, (name, r.stderr)
        got = read_run(tmp_path / "runs" / "demo")
        assert got.equals(want.cast(got.schema)), name


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=8), st.integers(1, 90), st.randoms(use_true_random=False))
def test_shard_reader_in_any_order_reads_the_right_rows(tmp_path_factory, groups, shard_rows, rnd):
    """Shards read in order share one stream; out of order they reopen the file at their row.
    Either way each shard holds exactly its rows (a known table: row i holds i)."""
    from frx.engine.shards import ShardReader, plan

    d = tmp_path_factory.mktemp("sr")
    n = sum(groups)
    table = pa.table({"i": np.arange(n)})
    with pq.ParquetWriter(d / "t.parquet", table.schema) as w:
        lo = 0
        for g in groups:
            w.write_table(table.slice(lo, g))
            lo += g
    (d / "t.jsonl").write_text("".join(f'{{"i": {i}}}\n' for i in range(n)))
    for f in ("t.parquet", "t.jsonl"):
        shards, _ = plan([d / f], shard_rows)
        order = list(range(len(shards)))
        if rnd.random() < 0.5:
            rnd.shuffle(order)
        reader = ShardReader()
        for k in order + order[:2]:
            s = shards[k]
            got = reader.read(s).column("i").to_pylist()
            assert got == list(range(s.start, s.stop)), (f, k)
