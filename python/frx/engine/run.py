"""Running a pipeline over shards: the run directory, resume, the local executor, stats.

Run directory::

    RUN/config.json      the resolved config          RUN/manifest.json  finished shards + hash
    RUN/data/part-NNNNN.parquet   one result per shard  RUN/state/...      cross-shard stage state
    RUN/stats.json       rows in/out, drops, seconds  RUN/_SUCCESS       written when all are done
    RUN/.lock            exists (holding its pid) while a process runs the pipeline

A shard is finished when its entry is in the manifest. Its files are written first (state, then
data, each to a temporary name and renamed), the manifest last, so a crash at any point loses at
most the shard in flight; a re-run with the same config skips finished shards.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import sys
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from ..config import BatchConfig
from ..errors import FrxError
from ..io import write_parquet
from .shards import Shard, ShardReader, discover, plan
from .stages import ROW, Stage, build_stage

__all__ = ["Plan", "make_plan", "run_batch", "execute", "RunDir"]


# Shards computed but not yet written that may wait in memory (bounds memory to a few shards).
WRITE_QUEUE = 2


@dataclass
class Plan:
    cfg: BatchConfig
    base: Path
    files: list[Path]
    shards: list[Shard]
    schema: pa.Schema
    stages: list[Stage]
    run_dir: Path
    label: str = "frx batch"  # names the run in progress lines

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def stateful(self) -> bool:
        return any(s.stateful for s in self.stages)


def make_stages(cfg: BatchConfig, base: Path) -> list[Stage]:
    return [
        build_stage(sc.use, cfg.stage_params(i), cfg.run.seed, base, f"[[stage]] #{i + 1}")
        for i, sc in enumerate(cfg.stage)
    ]


def make_plan(cfg: BatchConfig, base: Path) -> Plan:
    stages = make_stages(cfg, base)
    files = discover(cfg.input.path, base)
    shards, schema = plan(files, cfg.input.shard_rows)
    if ROW in schema.names:
        raise FrxError(f"input has a column named {ROW}, which frx uses internally")
    # Check every stage against the columns it will see.
    probe = schema.append(pa.field(ROW, pa.int64()))
    for st in stages:
        st.check(probe)
        for name, dtype in st.adds().items():
            if name in probe.names:
                probe = probe.set(probe.get_field_index(name), pa.field(name, dtype))
            else:
                probe = probe.append(pa.field(name, dtype))
    out = Path(cfg.output.path)
    run_dir = out if out.is_absolute() else base / out
    return Plan(cfg, base, files, shards, schema, stages, run_dir)


class RunDir:
    def __init__(self, path: Path):
        self.path = path
        self.data = path / "data"
        self.state = path / "state"
        self.manifest_path = path / "manifest.json"
        self._lock_fd: int | None = None

    def create_and_lock(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise FrxError(f"output {self.path} exists and is not a directory")
        try:
            self.data.mkdir(parents=True, exist_ok=True)
            self.state.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise FrxError(f"cannot use output directory {self.path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise FrxError(f"run directory {self.path} is in use by another frx batch (pid {other})") from None
        # A run that just ended removed the file we opened: lock the one now at the path instead.
        try:
            same = os.stat(self.path / ".lock").st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return self.create_and_lock()
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        """Release the run directory: the ``.lock`` file goes (removed while still locked, so
        no other process can take a file that is about to vanish), then the lock."""
        if self._lock_fd is not None:
            (self.path / ".lock").unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None

    def load_manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.exists():
            return None
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, ValueError) as e:
            raise FrxError(f"cannot read {self.manifest_path}: {e}; use --restart to start the run again") from None

    def _atomic_bytes(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise FrxError(f"cannot write {path}: {e.strerror or e}") from None

    def save_manifest(self, manifest: dict[str, Any]) -> None:
        self._atomic_bytes(self.manifest_path, json.dumps(manifest, indent=1).encode())

    def save_json(self, name: str, obj: Any) -> None:
        self._atomic_bytes(self.path / name, json.dumps(obj, indent=2).encode())

    def clear(self) -> None:
        for p in (self.data, self.state):
            shutil.rmtree(p, ignore_errors=True)
            p.mkdir(parents=True, exist_ok=True)
        for name in ("manifest.json", "stats.json", "_SUCCESS"):
            (self.path / name).unlink(missing_ok=True)

    def shard_file(self, i: int) -> Path:
        return self.data / f"part-{i:05d}.parquet"

    def state_file(self, stage: int, name: str, i: int) -> Path:
        return self.state / f"{stage + 1:02d}-{name}" / f"part-{i:05d}.arrow"

    def write_state(self, path: Path, table: pa.Table) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            opts = ipc.IpcWriteOptions(compression="zstd")
            with ipc.new_file(str(tmp), table.schema, options=opts) as w:
                w.write_table(table)
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise FrxError(f"cannot write {path}: {e.strerror or e}") from None

    @staticmethod
    def read_state(path: Path) -> pa.Table:
        try:
            with ipc.open_file(str(path)) as r:
                return r.read_all()
        except (OSError, pa.ArrowInvalid) as e:
            raise FrxError(f"cannot read saved state {path}: {e}; use --restart") from None


def _fault(shard: int, point: str) -> None:
    """Test hook: FRX_FAULT="SHARD:POINT" kills this process with SIGKILL at that point."""
    spec = os.environ.get("FRX_FAULT")
    if spec and spec == f"{shard}:{point}":
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class ShardOutcome:
    table: pa.Table
    states: list[tuple[int, pa.Table]] = field(default_factory=list)
    stats: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def process(
    stages: list[Stage], table: pa.Table, shard: Shard, *, start: int = 0, stop: int | None = None,
    prior: list[dict[str, Any]] | None = None, keep_row: bool = False,
) -> ShardOutcome:
    """Run stages ``start:stop`` on one shard's table. At ``start == 0`` the table is as read
    and gets its ``__frx_row`` column; the column is dropped after the last stage unless
    ``keep_row`` (more stages will run elsewhere)."""
    stop = len(stages) if stop is None else stop
    t0 = time.perf_counter()
    if start == 0:
        table = table.append_column(ROW, pa.array(np.arange(shard.offset, shard.offset + table.num_rows, dtype=np.int64)))
    out = ShardOutcome(table, stats=list(prior or []))
    for k in range(start, stop):
        st = stages[k]
        s0 = time.perf_counter()
        rows_in = table.num_rows
        if st.stateful:
            out.states.append((k, st.state_of(table)))
        res = st.run(table)
        table = res.table
        out.stats.append({"rows_in": rows_in, "rows_out": table.num_rows, "dropped": res.dropped, "counters": res.counters,
                          "seconds": time.perf_counter() - s0})
    out.table = table if keep_row or stop < len(stages) else table.drop_columns([ROW])
    out.seconds = time.perf_counter() - t0
    return out


# ---- worker processes: read + the stateless stages before the first cross-shard stage ----------

_WORKER: dict[str, Any] = {}


def _die_with_parent() -> None:
    """Linux: have the kernel kill this worker when the frx process dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def _worker_init(cfg_json: str, base: str, upto: int) -> None:
    _die_with_parent()
    cfg = BatchConfig.model_validate_json(cfg_json)
    _WORKER["stages"] = make_stages(cfg, Path(base))[:upto]
    _WORKER["reader"] = ShardReader()


def _worker_run(shard: Shard) -> tuple[bytes, list[dict[str, Any]], float, float]:
    t0 = time.perf_counter()
    table = _WORKER["reader"].read(shard)
    _fault(shard.index, "read")
    read_s = time.perf_counter() - t0
    stages = _WORKER["stages"]
    out = process(stages, table, shard, keep_row=True)
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, out.table.schema) as w:
        w.write_table(out.table)
    return sink.getvalue().to_pybytes(), out.stats, read_s, out.seconds


def aggregate(plan: Plan, manifest: dict[str, Any], wall: float) -> dict[str, Any]:
    done = manifest["done"]
    stages = []
    for k, st in enumerate(plan.stages):
        rin = sum(d["stages"][k]["rows_in"] for d in done.values())
        rout = sum(d["stages"][k]["rows_out"] for d in done.values())
        secs = sum(d["stages"][k]["seconds"] for d in done.values())
        drops: dict[str, int] = {}
        counters: dict[str, int] = {}
        for d in done.values():
            for reason, n in d["stages"][k]["dropped"].items():
                drops[reason] = drops.get(reason, 0) + n
            for name, n in d["stages"][k].get("counters", {}).items():
                counters[name] = counters.get(name, 0) + n
        stages.append({"stage": k + 1, "use": st.name, "rows_in": rin, "rows_out": rout, "dropped": drops, "counters": counters,
                       "seconds": round(secs, 4), "rows_per_s": round(rin / secs, 1) if secs > 0 else None})
    rows_in = sum(d["rows_in"] for d in done.values())
    rows_out = sum(d["rows_out"] for d in done.values())
    read_s = sum(d.get("read_seconds", 0.0) for d in done.values())
    write_s = sum(d.get("write_seconds", 0.0) for d in done.values())
    stages = (
        [{"stage": 0, "use": "read", "rows_in": rows_in, "rows_out": rows_in, "dropped": {}, "seconds": round(read_s, 4),
          "rows_per_s": round(rows_in / read_s, 1) if read_s > 0 else None}]
        + stages
        + [{"stage": len(stages) + 1, "use": "write", "rows_in": rows_out, "rows_out": rows_out, "dropped": {},
            "seconds": round(write_s, 4), "rows_per_s": round(rows_out / write_s, 1) if write_s > 0 else None}]
    )
    shard_secs = sum(d["seconds"] for d in done.values())
    stage_secs = sum(s["seconds"] for s in stages[1:-1])
    return {
        "config_hash": manifest["config_hash"],
        "shards": len(plan.shards),
        "shards_done": len(done),
        "rows_in": rows_in,
        "rows_out": rows_out,
        "stages": stages,
        "shard_seconds": round(shard_secs, 4),
        "stage_seconds": round(stage_secs, 4),
        "read_seconds": round(read_s, 4),
        "write_seconds": round(write_s, 4),
        "wall_seconds_last_invocation": round(wall, 4),
    }


class _Progress:
    """A rich progress display (rows/s and ETA per stage), or one log line per shard."""

    def __init__(self, plan: Plan, quiet: bool, already: int):
        self.quiet = quiet or not sys.stderr.isatty() and os.environ.get("FRX_PROGRESS") != "1"
        self.plan = plan
        self.progress = None
        if not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>12}"), TimeRemainingColumn(), transient=False,
            )
            self.tasks = [self.progress.add_task("shards", total=len(plan.shards), completed=already, rate="")]
            self.tasks += [self.progress.add_task(f"{k + 1}. {st.name}", total=plan.rows, rate="") for k, st in enumerate(plan.stages)]
            self.rows = [0] * len(plan.stages)
            self.secs = [0.0] * len(plan.stages)
            self.progress.start()

    def shard_done(self, shard: Shard, stats: list[dict[str, Any]], done: int) -> None:
        if self.progress is None:
            print(f"{self.plan.label}: shard {shard.index + 1}/{len(self.plan.shards)} done "
                  f"({shard.rows:,} rows in, {stats[-1]['rows_out'] if stats else shard.rows:,} out)", file=sys.stderr)
            return
        self.progress.update(self.tasks[0], completed=done)
        for k, s in enumerate(stats):
            self.rows[k] += s["rows_in"]
            self.secs[k] += s["seconds"]
            rate = f"{self.rows[k] / self.secs[k]:,.0f} rows/s" if self.secs[k] > 0 else ""
            self.progress.update(self.tasks[k + 1], advance=shard.rows, rate=rate)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def run_batch(plan: Plan, *, restart: bool = False, quiet: bool = False, process_shard=None) -> dict[str, Any]:
    """Run (or resume) a planned pipeline; returns the stats. ``process_shard(stages, table,
    shard) -> ShardOutcome`` runs the stages on one shard: :func:`process` (the local
    executor) unless an executor passes its own."""
    rd = RunDir(plan.run_dir)
    rd.create_and_lock()
    try:
        return _run_locked(plan, rd, restart=restart, quiet=quiet, process_shard=process_shard or process)
    finally:
        rd.unlock()


def execute(plan: Plan, *, restart: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Run (or resume) a planned pipeline with the executor its config names; returns the stats."""
    if plan.cfg.run.executor == "ray":
        from .ray_executor import run_batch_ray

        return run_batch_ray(plan, restart=restart, quiet=quiet)
    return run_batch(plan, restart=restart, quiet=quiet)


def _resume_state(plan: Plan, rd: RunDir, restart: bool) -> dict[str, Any]:
    h = plan.cfg.hash()
    manifest = rd.load_manifest()
    if manifest is not None and (restart or manifest.get("config_hash") != h):
        if not restart:
            raise FrxError(
                f"run directory {rd.path} holds a run of a different config "
                f"(hash {manifest.get('config_hash', '?')[:12]}, now {h[:12]}); use --restart to discard it"
            )
        rd.clear()
        manifest = None
    if manifest is None:
        if restart:
            rd.clear()
        manifest = {"config_hash": h, "shards_total": len(plan.shards), "done": {}}
        rd.save_json("config.json", {"config_hash": h, "config": plan.cfg.model_dump()})
        rd.save_manifest(manifest)
    return manifest


def _run_locked(plan: Plan, rd: RunDir, *, restart: bool, quiet: bool, process_shard) -> dict[str, Any]:
    t_start = time.perf_counter()
    manifest = _resume_state(plan, rd, restart)
    done = manifest["done"]
    # Rebuild cross-shard state from the finished shards, in order.
    for k, st in enumerate(plan.stages):
        if st.stateful:
            for i in sorted(int(x) for x in done):
                st.replay(rd.read_state(rd.state_file(k, st.name, i)))
    todo = [s for s in plan.shards if str(s.index) not in done]
    if plan.stateful and todo and any(int(x) > todo[0].index for x in done):
        raise FrxError(f"{rd.manifest_path}: finished shards are not a prefix; use --restart")
    progress = _Progress(plan, quiet, len(done))
    reader = ShardReader()

    def read(shard: Shard) -> tuple[pa.Table, float]:
        t0 = time.perf_counter()
        table = reader.read(shard)
        _fault(shard.index, "read")
        return table, time.perf_counter() - t0

    def write(shard: Shard, out: ShardOutcome) -> float:
        t0 = time.perf_counter()
        for k, state in out.states:
            rd.write_state(rd.state_file(k, plan.stages[k].name, shard.index), state)
        _fault(shard.index, "state")
        try:
            write_parquet(out.table, rd.shard_file(shard.index))
        except OSError as e:
            raise FrxError(f"cannot write {rd.shard_file(shard.index)}: {e.strerror or e}") from None
        _fault(shard.index, "data")
        return time.perf_counter() - t0

    # Reading the next shard and writing the previous one overlap with the stages of the
    # current one (pyarrow and the kernels release the GIL). Shards are committed to the
    # manifest in order, each only after its files are written.
    pending: deque[tuple[Shard, ShardOutcome, float, Future]] = deque()
    waits = {"read": 0.0, "write": 0.0}  # time the main thread spent blocked on I/O

    def commit(wait_all: bool) -> None:
        """Commit written shards in order; wait when too many are queued (or at the end)."""
        while pending:
            if not (wait_all or pending[0][3].done() or len(pending) > WRITE_QUEUE):
                return
            shard, out, read_s, fut = pending.popleft()
            w0 = time.perf_counter()
            write_s = fut.result()
            waits["write"] += time.perf_counter() - w0
            done[str(shard.index)] = {
                "rows_in": shard.rows, "rows_out": out.table.num_rows, "seconds": out.seconds,
                "read_seconds": read_s, "write_seconds": write_s, "stages": out.stats,
                "path": shard.path, "start": shard.start,
            }
            rd.save_manifest(manifest)
            _fault(shard.index, "manifest")
            progress.shard_done(shard, out.stats, len(done))

    # Where shards come from: a read-ahead thread, or (run.workers > 1) worker processes that
    # also run the stateless stages before the first cross-shard stage, a few shards ahead.
    first_stateful = next((k for k, st in enumerate(plan.stages) if st.stateful), len(plan.stages))
    use_pool = plan.cfg.run.workers > 1 and first_stateful > 0 and process_shard is process and len(todo) > 1
    if use_pool:
        import multiprocessing

        source = ProcessPoolExecutor(
            plan.cfg.run.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init, initargs=(plan.cfg.model_dump_json(), str(plan.base), first_stateful),
        )
        submit = lambda shard: source.submit(_worker_run, shard)  # noqa: E731
        depth = plan.cfg.run.workers + 1
    else:
        source = ThreadPoolExecutor(1, thread_name_prefix="frx-read")
        submit = lambda shard: source.submit(read, shard)  # noqa: E731
        depth = 1

    with source, ThreadPoolExecutor(1, thread_name_prefix="frx-write") as writes:
        try:
            ahead = deque(submit(s) for s in todo[:depth])
            for n, shard in enumerate(todo):
                w0 = time.perf_counter()
                got = ahead.popleft().result()
                waits["read"] += time.perf_counter() - w0
                if n + depth < len(todo):
                    ahead.append(submit(todo[n + depth]))
                if use_pool:
                    blob, prior, read_s, prior_s = got
                    table = ipc.open_stream(pa.py_buffer(blob)).read_all()
                    out = process(plan.stages, table, shard, start=first_stateful, prior=prior)
                    out.seconds += prior_s
                else:
                    table, read_s = got
                    out = process_shard(plan.stages, table, shard)
                _fault(shard.index, "stages")
                pending.append((shard, out, read_s, writes.submit(write, shard, out)))
                commit(wait_all=False)
            commit(wait_all=True)
        except BaseException:
            for fut in list(ahead) + [p[3] for p in pending]:
                fut.cancel()
            raise
        finally:
            progress.close()
    stats = aggregate(plan, manifest, time.perf_counter() - t_start)
    stats["shards_computed_this_invocation"] = len(todo)
    stats["read_wait_seconds_last_invocation"] = round(waits["read"], 4)
    stats["write_wait_seconds_last_invocation"] = round(waits["write"], 4)
    rd.save_json("stats.json", stats)
    if len(done) == len(plan.shards):
        (rd.path / "_SUCCESS").write_text("")
    return stats
