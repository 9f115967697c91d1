"""The Ray executor: the same stages, run through Ray Data.

Each shard's runs of stateless stages go through ``Dataset.map_batches`` (pyarrow batches) on
the Ray cluster; stages that keep state across shards (dedup) run on the driver, in shard order,
exactly as in the local executor. The run directory, manifest, resume, lock and stats are the
local executor's, so a run can be started with one executor and resumed with the other, and the
results are identical.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import FrxError
from . import run as local
from .stages import ROW, Stage, build_stage

_STATS_KEY = b"frx_stage_stats"
_CACHE: dict[str, list[Stage]] = {}


def _segment_udf(batch: pa.Table, specs_json: str) -> pa.Table:
    """Runs on a Ray worker: rebuild the segment's stages once per process, run them."""
    stages = _CACHE.get(specs_json)
    if stages is None:
        specs = json.loads(specs_json)
        stages = [build_stage(s["use"], s["params"], s["seed"], Path(s["base"]), s["where"]) for s in specs]
        _CACHE[specs_json] = stages
    stats = []
    for st in stages:
        t0 = time.perf_counter()
        rows_in = batch.num_rows
        res = st.run(batch)
        batch = res.table
        stats.append({"rows_in": rows_in, "rows_out": batch.num_rows, "dropped": res.dropped, "counters": res.counters,
                      "seconds": time.perf_counter() - t0})
    meta = dict(batch.schema.metadata or {})
    meta[_STATS_KEY] = json.dumps(stats).encode()
    return batch.replace_schema_metadata(meta)


def _segments(plan: local.Plan) -> list[tuple[bool, list[int]]]:
    """Stage indexes grouped into (remote?, [indexes]): runs of stateless stages go remote."""
    out: list[tuple[bool, list[int]]] = []
    for k, st in enumerate(plan.stages):
        remote = not st.stateful
        if out and out[-1][0] == remote and remote:
            out[-1][1].append(k)
        else:
            out.append((remote, [k]))
    return out


def _check_reachable(address: str) -> None:
    """Fail fast (instead of Ray's long retries) when nothing listens at host:port."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise FrxError(f"Ray address must be HOST:PORT, ray://HOST:PORT or auto, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise FrxError(f"cannot start or reach Ray at {address}: {e.strerror or e}") from None


def run_batch_ray(plan: local.Plan, *, restart: bool = False, quiet: bool = False) -> dict[str, Any]:
    try:
        import ray
        import ray.data
    except ImportError:
        raise FrxError("the ray executor needs Ray: pip install 'frx-engine[ray]'") from None
    cfg = plan.cfg
    if cfg.run.address and cfg.run.address != "auto":
        _check_reachable(cfg.run.address)
    logging.getLogger("ray").setLevel(logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    if not ray.is_initialized():
        try:
            if cfg.run.address:
                ray.init(address=cfg.run.address, log_to_driver=False, logging_level=logging.WARNING)
            else:
                ray.init(log_to_driver=False, include_dashboard=False, logging_level=logging.WARNING)
        except Exception as e:  # connection errors come in many types
            raise FrxError(f"cannot start or reach Ray ({cfg.run.address or 'local'}): {str(e).splitlines()[0]}") from None
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = not quiet

    specs = {
        k: {"use": sc.use, "params": cfg.stage_params(k), "seed": cfg.run.seed, "base": str(plan.base), "where": f"[[stage]] #{k + 1}"}
        for k, sc in enumerate(cfg.stage)
    }
    segments = _segments(plan)
    # Each shard is split into this many blocks, one Ray task each, so a shard's rows (and the
    # model replicas that answer them) spread over the cluster.
    if cfg.run.parallelism:
        tasks = cfg.run.parallelism
    elif cfg.run.gpus > 0:
        tasks = max(1, int(ray.cluster_resources().get("GPU", 0) // cfg.run.gpus))
    else:
        tasks = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def process(stages: list[Stage], table: pa.Table, shard) -> local.ShardOutcome:
        t0 = time.perf_counter()
        table = table.append_column(ROW, pa.array(range(shard.offset, shard.offset + table.num_rows), pa.int64()))
        out = local.ShardOutcome(table)
        for remote, ks in segments:
            if not remote:
                for k in ks:
                    s0 = time.perf_counter()
                    rows_in = table.num_rows
                    out.states.append((k, stages[k].state_of(table)))
                    res = stages[k].run(table)
                    table = res.table
                    out.stats.append({"rows_in": rows_in, "rows_out": table.num_rows, "dropped": res.dropped, "counters": res.counters,
                                      "seconds": time.perf_counter() - s0})
                continue
            seg = json.dumps([specs[k] for k in ks])
            gpus = {"num_gpus": cfg.run.gpus} if cfg.run.gpus > 0 else {}
            step = -(-table.num_rows // tasks) or 1
            blocks_in = [table.slice(i, step) for i in range(0, max(table.num_rows, 1), step)]
            ds = ray.data.from_arrow(blocks_in).map_batches(
                _segment_udf, fn_kwargs={"specs_json": seg}, batch_format="pyarrow", batch_size=None, zero_copy_batch=True, **gpus
            )
            try:
                blocks = ray.get(ds.to_arrow_refs())
            except Exception as e:  # a stage failed on a worker
                cause = e.__cause__ or e
                msg = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
                raise FrxError(f"shard {shard.index}: a stage failed on Ray: {msg}") from None
            if not blocks:
                raise FrxError(f"ray returned no data for shard {shard.index}")
            per_block = [json.loads(b.schema.metadata[_STATS_KEY]) for b in blocks]
            table = pa.concat_tables([b.replace_schema_metadata(None) for b in blocks])
            for j, _k in enumerate(ks):
                drops: dict[str, int] = {}
                counters: dict[str, int] = {}
                for st in per_block:
                    for reason, n in st[j]["dropped"].items():
                        drops[reason] = drops.get(reason, 0) + n
                    for name, n in st[j].get("counters", {}).items():
                        counters[name] = counters.get(name, 0) + n
                out.stats.append({
                    "rows_in": sum(st[j]["rows_in"] for st in per_block),
                    "rows_out": sum(st[j]["rows_out"] for st in per_block),
                    "dropped": drops,
                    "counters": counters,
                    "seconds": sum(st[j]["seconds"] for st in per_block),
                })
        out.table = table.drop_columns([ROW])
        out.seconds = time.perf_counter() - t0
        return out

    return local.run_batch(plan, restart=restart, quiet=quiet, process_shard=process)
