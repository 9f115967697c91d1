"""End-to-end `frx batch` measurement at a million rows (a benchmark, not a test).

    python benches/batch_pipeline.py [--rows 1000000] [--workdir /tmp/frx-batch-bench] [--executor local|ray]
        [--layout groups-50k|one-group|tiny-groups|directory|jsonl|csv|all]

Generates (once, cached in WORKDIR) a table of ROWS prompts with planted duplicates and ROWS
responses (100-400 words, refusal phrases at the start and inside), then runs
read → normalize → dedup_exact → dedup_near → refusal_match → write with `frx batch` in a child
process, and reports wall time, peak RSS of the child, per-stage throughput (stats.json, read and write
included) and the engine's overhead: wall time outside the stages (read and write count as
stages: the engine overlaps them with the transform stages, and only the time it waits on them
is theirs), as a share of the total; and, stricter, the share outside the transform stages. Writes
benches/results/batch-<rows>-<executor>.json.

``--layout`` writes the same rows in the shapes users' files come in (``groups-50k``: 50k-row
Parquet row groups, the default; ``one-group``: one Parquet file with a single row group, as
pyarrow and pandas write by default; ``tiny-groups``: 1,000-row groups; ``directory``: 100
Parquet files; ``jsonl``: one JSONL file; ``csv``: one CSV file) and runs the same pipeline on
it; ``all`` runs every layout and writes benches/results/batch-layouts-<rows>.{json,md} with each
layout's wall time and peak RSS against the best.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
import corpus  # noqa: E402

LAYOUTS = {"groups-50k": "input.parquet", "one-group": "one-group.parquet", "tiny-groups": "tiny-groups.parquet",
           "directory": "directory", "jsonl": "input.jsonl", "csv": "input.csv"}

CONFIG = """
[input]
path = "{path}"
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


def make_layout(src: Path, layout: str, wd: Path) -> Path:
    """``src`` (50k-row groups) rewritten as ``layout``, once, streaming (bounded memory)."""
    import pyarrow.csv as pacsv
    import pyarrow.json  # noqa: F401  (the reader side; writing JSONL is done by hand below)

    out = wd / LAYOUTS[layout]
    if layout == "groups-50k" or out.exists():
        return out
    t0 = time.perf_counter()
    pf = pq.ParquetFile(src)
    tmp = out.with_name(out.name + ".tmp")
    if layout in ("one-group", "tiny-groups"):
        # A single row group needs the whole table in one write_table call, as pandas does it.
        table = pf.read()
        pq.write_table(table, tmp, row_group_size=table.num_rows if layout == "one-group" else 1000, compression="zstd")
        del table
    elif layout == "directory":
        tmp.mkdir()
        per = -(-pf.metadata.num_rows // 100)
        for k, batch in enumerate(pf.iter_batches(batch_size=per)):
            pq.write_table(pa.Table.from_batches([batch]), tmp / f"part-{k:03d}.parquet", compression="zstd")
    elif layout == "jsonl":
        with open(tmp, "w") as f:
            for batch in pf.iter_batches(batch_size=50_000):
                cols = batch.to_pydict()
                f.writelines(json.dumps(dict(zip(cols, vals))) + "\n" for vals in zip(*cols.values()))
    else:
        with pacsv.CSVWriter(tmp, pf.schema_arrow) as w:
            for batch in pf.iter_batches(batch_size=50_000):
                w.write_batch(batch)
    tmp.rename(out)
    print(f"wrote layout {layout} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return out


def run_once(wd: Path, rows: int, executor: str, layout: str) -> dict:
    src = wd / "input.parquet"
    # In a child process: a child's peak RSS counts its parent's at the fork (Linux keeps the
    # high-water mark across exec), so this process must never hold the table.
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import batch_pipeline as b; from pathlib import Path; "
            f"b.make_layout(Path({str(src)!r}), {layout!r}, Path({str(wd)!r}))")
    subprocess.run([sys.executable, "-c", code], check=True)
    path = wd / LAYOUTS[layout]
    cfg = wd / f"pipeline-{executor}-{layout}.toml"
    cfg.write_text(CONFIG.format(executor=executor, path=path.name))
    log = wd / "batch.log"
    t0 = time.perf_counter()
    with log.open("w") as err:
        child = subprocess.Popen([sys.executable, "-m", "frx", "batch", str(cfg), "--restart", "-q"],
                                 stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"frx batch failed: {log.read_text()}")
    peak_rss_gb = usage.ru_maxrss / 1e6
    stats = json.loads((wd / "run" / "stats.json").read_text())
    stage_secs = stats["stage_seconds"]
    waits = stats["read_wait_seconds_last_invocation"] + stats["write_wait_seconds_last_invocation"]
    size = sum(f.stat().st_size for f in path.rglob("*")) if path.is_dir() else path.stat().st_size
    return {
        "rows": rows,
        "layout": layout,
        "input_bytes": size,
        "executor": executor,
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/frx-batch-bench"))
    ap.add_argument("--executor", default="local", choices=["local", "ray"])
    ap.add_argument("--layout", default="groups-50k", choices=[*LAYOUTS, "all"])
    args = ap.parse_args()
    wd = args.workdir
    wd.mkdir(parents=True, exist_ok=True)
    src = wd / "input.parquet"
    if not src.exists() or pq.ParquetFile(src).metadata.num_rows != args.rows:
        # In a child process, so this process stays small (a forked child's peak RSS would
        # otherwise include the generated data).
        for name in LAYOUTS.values():
            if name != "input.parquet" and (wd / name).exists():
                subprocess.run(["rm", "-rf", str(wd / name)], check=True)
        code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import batch_pipeline as b; from pathlib import Path; b.make_input(Path({str(src)!r}), {args.rows})"
        subprocess.run([sys.executable, "-c", code], check=True)
    results = Path(__file__).parent / "results"
    if args.layout != "all":
        result = run_once(wd, args.rows, args.executor, args.layout)
        suffix = "" if args.layout == "groups-50k" else f"-{args.layout}"
        (results / f"batch-{args.rows}-{args.executor}{suffix}.json").write_text(json.dumps(result, indent=2))
        print(json.dumps({k: v for k, v in result.items() if k != "stages"}, indent=2))
        for s in result["stages"]:
            print(f"  {s['stage']}. {s['use']:<14} {s['rows_in']:>9,} → {s['rows_out']:>9,}  {s['seconds']:7.2f} s  {s['rows_per_s'] or 0:>12,.0f} rows/s")
        return
    runs = []
    for layout in LAYOUTS:
        r = run_once(wd, args.rows, args.executor, layout)
        runs.append({k: r[k] for k in ("layout", "input_bytes", "wall_seconds", "peak_rss_gb", "read_seconds", "rows_out")})
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    best = min(r["wall_seconds"] for r in runs)
    for r in runs:
        r["wall_vs_best"] = round(r["wall_seconds"] / best, 2)
    from report import machine

    out = {"command": f"python benches/batch_pipeline.py --rows {args.rows} --executor {args.executor} --layout all",
           "machine": machine(), "runs": runs}
    (results / f"batch-layouts-{args.rows}.json").write_text(json.dumps(out, indent=2) + "\n")
    md = [f"`frx batch` over {args.rows:,} rows in each input layout ({out['command']}; {out['machine']})", "",
          "| layout | input | wall | vs best | peak RSS | rows out |", "|---|---:|---:|---:|---:|---:|"]
    md += [f"| {r['layout']} | {r['input_bytes'] / 1e9:.2f} GB | {r['wall_seconds']:.1f} s | {r['wall_vs_best']:.2f}× | "
           f"{r['peak_rss_gb']:.2f} GB | {r['rows_out']:,} |" for r in runs]
    (results / f"batch-layouts-{args.rows}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
