"""Shared set-up for the benchmark suites.

Every kernel and every peer runs on one core: RAYON_NUM_THREADS=1 and POLARS_MAX_THREADS=1
are set before anything imports them (export them yourself to measure other settings). Sizes
follow DESIGN.md §7 at FRX_BENCH_SCALE=1 (the default); CI runs a smoke pass at a small scale.
Each benchmark stores what it processed (``items``, ``bytes``) and, where it applies, the recall
it reached in ``extra_info``; ``python benches/report.py RESULT.json`` turns a saved run into the
throughput and ratio table.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("POLARS_MAX_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pytest  # noqa: E402

import corpus  # noqa: E402

SCALE = float(os.environ.get("FRX_BENCH_SCALE", "1"))


def scaled(n: int, floor: int = 1000) -> int:
    return max(floor, int(n * SCALE))


@pytest.fixture(scope="session")
def prompt_corpus():
    texts, truth = corpus.prompts(scaled(150_000))
    return texts, truth, pa.array(texts, type=pa.large_string())


@pytest.fixture(scope="session")
def response_corpus():
    texts = corpus.responses(scaled(64_000_000, floor=1_000_000))
    encoded = [t.encode() for t in texts]
    return texts, encoded, pa.array(texts, type=pa.large_string())


@pytest.fixture(scope="session")
def walk_graph():
    rng = np.random.default_rng(0)
    n, m = scaled(100_000), scaled(500_000)
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    return n, src, dst


def record(benchmark, group_peer: str, *, items: int, unit: str, bytes: int | None = None, **extra):
    """Attach what one round processed, so throughput can be computed from the timings."""
    benchmark.extra_info.update({"peer": group_peer, "items": items, "unit": unit, "bytes": bytes, **extra})


def true_duplicate_rows(truth) -> set[int]:
    """Rows planted as copies of an earlier row (the ones a dedup should drop)."""
    seen, dups = set(), set()
    for i, t in enumerate(truth):
        if t in seen:
            dups.add(i)
        seen.add(t)
    return dups


def recall_precision(flagged: set[int], truth) -> tuple[float, float]:
    dups = true_duplicate_rows(truth)
    tp = len(flagged & dups)
    return tp / max(1, len(dups)), tp / max(1, len(flagged))
