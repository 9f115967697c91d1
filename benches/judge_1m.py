"""`frx judge` on 1,000,000 responses (~1.7 KB each, the batch benchmark's input), end to end:
read, judge, write. Writes benches/results/judge-1m.json (`--mode learned`: judge-1m-learned.json).

    python benches/judge_1m.py [--rows 1000000] [--mode pattern|learned] [--workdir /tmp/frx-judge-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
from report import machine

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--mode", choices=["pattern", "learned"], default="pattern")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/frx-judge-bench"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    src = args.workdir / "input.parquet"
    if not src.exists() or pq.ParquetFile(src).metadata.num_rows != args.rows:
        code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import batch_pipeline as b; from pathlib import Path; "
                f"b.make_input(Path({str(src)!r}), {args.rows})")
        subprocess.run([sys.executable, "-c", code], check=True)
    out = args.workdir / "judged.parquet"
    out.unlink(missing_ok=True)
    log = args.workdir / "judge.log"
    t0 = time.perf_counter()
    with log.open("w") as err:
        child = subprocess.Popen([sys.executable, "-m", "frx", "judge", str(src), "--out", str(out), "--mode", args.mode],
                                 stdout=subprocess.DEVNULL, stderr=err)
        # The judge's own peak RSS (not the input maker's): wait4 reports this one child's usage.
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    peak_rss_gb = usage.ru_maxrss / 1e6
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"frx judge failed: {log.read_text()}")
    judged = pq.read_table(out, columns=["response", "label"])
    nbytes = pc.sum(pc.binary_length(judged.column("response"))).as_py() / judged.num_rows
    counts = judged.column("label").value_counts().to_pylist()
    result = {
        "command": f"frx judge {src} --out {out} --mode {args.mode}  (python benches/judge_1m.py --mode {args.mode})",
        "machine": machine(),
        "rows": judged.num_rows,
        "mean_response_bytes": round(nbytes),
        "wall_seconds": round(wall, 1),
        "peak_rss_gb": round(peak_rss_gb, 1),
        "labels": {c["values"]: c["counts"] for c in counts},
        "note": "frx judge streams the input in --batch-rows batches (default 131,072 rows).",
    }
    name = "judge-1m.json" if args.mode == "pattern" else f"judge-1m-{args.mode}.json"
    (HERE / "results" / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
