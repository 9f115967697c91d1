"""Turn a pytest-benchmark JSON file into the README's performance table.

    python benches/report.py benches/results/cpu-2026-11-28.json > benches/results/cpu-2026-11-28.md

Throughput is computed from the median round; within each group every peer is compared with the
frx entry named first in FRX_REFERENCE (ratio = frx throughput / peer throughput).
"""

from __future__ import annotations

import json
import sys

FRX_REFERENCE = {
    "refusal scan": "frx scan",
    "refusal judge": "frx judge (pattern: scan + decide)",
    "refusal judge, long responses of set-aside declines": "frx judge (pattern: scan + decide)",
    "exact dedup": "frx exact",
    "minhash signatures": "frx text -> signature",
    "near dedup end to end": "frx near",
    "random walks": "frx random_walks",
}


def fmt_rate(x: float, unit: str) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.3g}{suffix} {unit}/s"
    return f"{x:.3g} {unit}/s"


def machine() -> str:
    """This machine, in the words the reports use: CPU model and core count."""
    import os

    try:
        import cpuinfo

        brand = cpuinfo.get_cpu_info().get("brand_raw", "?")
    except ImportError:
        import platform

        brand = platform.processor() or "?"
    return f"{brand}, {os.cpu_count()} cores"


def main(path: str) -> None:
    data = json.load(open(path))
    m = data["machine_info"]
    print(f"Machine: {m.get('cpu', {}).get('brand_raw', '?')}, {m.get('cpu', {}).get('count', '?')} cores; "
          f"Python {m.get('python_version')}; run {data.get('datetime', '?')[:19]}; one thread per kernel.\n")
    groups: dict[str, list] = {}
    for b in data["benchmarks"]:
        groups.setdefault(b["group"], []).append(b)
    for group, rows in groups.items():
        ref_name = FRX_REFERENCE.get(group)
        stats = []
        for b in rows:
            info, med = b["extra_info"], b["stats"]["median"]
            per_s = info["items"] / med
            mb_s = info["bytes"] / med / 1e6 if info.get("bytes") else None
            stats.append((info["peer"], per_s, mb_s, info, med))
        ref = next((s for s in stats if s[0] == ref_name), None)
        print(f"### {group}\n")
        print("| implementation | median | throughput | MB/s | frx is × faster | recall | precision |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for peer, per_s, mb_s, info, med in sorted(stats, key=lambda s: -s[1]):
            ratio = "" if ref is None or peer == ref_name else f"{ref[1] / per_s:.1f}×"
            rec = f"{info['recall']:.3f}" if "recall" in info else ""
            prec = f"{info['precision']:.3f}" if "precision" in info else ""
            mbs = f"{mb_s:,.0f}" if mb_s else ""
            print(f"| {peer} | {med * 1e3:,.1f} ms | {fmt_rate(per_s, info['unit'])} | {mbs} | {ratio} | {rec} | {prec} |")
        print()


if __name__ == "__main__":
    main(sys.argv[1])
