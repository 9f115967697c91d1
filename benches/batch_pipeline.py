"""End-to-end `frx batch` measurement at a million rows (a benchmark, not a test).

    python benches/batch_pipeline.py [--rows 1000000] [--workdir /tmp/frx-batch-bench] [--executor local|ray]

Generates (once, cached in WORKDIR) a table of ROWS prompts with planted duplicates and ROWS
responses (100-400 words, refusal phrases at the start and inside), then runs
read → normalize → dedup_exact → dedup_near → refusal_match → write with `frx batch` in a child
process, and reports wall time, peak RSS of the child, per-stage throughput (stats.json, read and write
included) and the engine's overhead: wall time outside the stages (read and write count as
stages: the engine overlaps them with the transform stages, and only the time it waits on them
is theirs), as a share of the total; and, stricter, the share outside the transform stages. Writes
benches/results/batch-<rows>-<executor>.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
import corpus  # noqa: E402

CONFIG = """
[input]
path = "input.parquet"
shard_rows = 50000

[[stage]]
use = "normalize"
column = "prompt"
into = "prompt_normalized"

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

[output]
path = "run"

[run]
executor = "{executor}"
seed = 0
"""


def make_input(path: Path, rows: int) -> None:
    t0 = time.perf_counter()
    prompts, _ = corpus.prompts(rows, seed=11)
    pool = corpus.responses(4_000_000, seed=12)
    responses = [pool[i % len(pool)] for i in range(rows)]
    table = pa.table({"id": pa.array(range(rows), pa.int64()), "prompt": prompts, "response": responses})
    pq.write_table(table, path, row_group_size=50_000, compression="zstd")
    print(f"generated {rows:,} rows ({table.nbytes / 1e9:.2f} GB in memory) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/frx-batch-bench"))
    ap.add_argument("--executor", default="local", choices=["local", "ray"])
    args = ap.parse_args()
    wd = args.workdir
    wd.mkdir(parents=True, exist_ok=True)
    src = wd / "input.parquet"
    if not src.exists() or pq.ParquetFile(src).metadata.num_rows != args.rows:
        # In a child process, so this process stays small (a forked child's peak RSS would
        # otherwise include the generated data).
        code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import batch_pipeline as b; from pathlib import Path; b.make_input(Path({str(src)!r}), {args.rows})"
        subprocess.run([sys.executable, "-c", code], check=True)
    cfg = wd / f"pipeline-{args.executor}.toml"
    cfg.write_text(CONFIG.format(executor=args.executor))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "frx", "batch", str(cfg), "--restart", "-q"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"frx batch failed: {r.stderr}")
    peak_rss_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6
    stats = json.loads((wd / "run" / "stats.json").read_text())
    stage_secs = stats["stage_seconds"]
    waits = stats["read_wait_seconds_last_invocation"] + stats["write_wait_seconds_last_invocation"]
    result = {
        "rows": args.rows,
        "input_bytes": src.stat().st_size,
        "executor": args.executor,
        "wall_seconds": round(wall, 2),
        "peak_rss_gb": round(peak_rss_gb, 3),
        "stage_seconds": stage_secs,
        "read_seconds": stats["read_seconds"],
        "write_seconds": stats["write_seconds"],
        "io_wait_seconds": round(waits, 2),
        # Time outside the stage kernels, counting read and write as stages (they are in the
        # pipeline): wall minus stage time minus the time the engine waited on read/write.
        "engine_overhead_share": round(1 - (stage_secs + waits) / wall, 3),
        # Stricter: everything but the transform stages, read and write included.
        "outside_transform_stages_share": round(1 - stage_secs / wall, 3),
        "rows_out": stats["rows_out"],
        "stages": stats["stages"],
        "shards": stats["shards"],
    }
    out = Path(__file__).parent / "results" / f"batch-{args.rows}-{args.executor}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "stages"}, indent=2))
    for s in stats["stages"]:
        print(f"  {s['stage']}. {s['use']:<14} {s['rows_in']:>9,} → {s['rows_out']:>9,}  {s['seconds']:7.2f} s  {s['rows_per_s'] or 0:>12,.0f} rows/s")


if __name__ == "__main__":
    main()
