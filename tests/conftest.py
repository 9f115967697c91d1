from __future__ import annotations

import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    """The public test data: $FRX_DATA, default ../shared/data beside the checkout. Tests that
    need it skip, saying where they looked, when it is missing."""
    return Path(os.environ.get("FRX_DATA") or ROOT.parent / "shared" / "data").resolve()


SHARED_DATA = _shared_data()

QUOTES = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    }
)


def reference_normalize(s: str) -> str:
    """The documented normalisation, written independently in plain Python."""
    return " ".join(unicodedata.normalize("NFKC", s).casefold().translate(QUOTES).split())


def shared(*parts: str) -> Path:
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"public test data not found: {p} (set FRX_DATA to the directory that holds xstest/ and chatgpt_refusals/)")
    return p


def run_frx(*args: str, threads: int | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if threads is not None:
        env["RAYON_NUM_THREADS"] = str(threads)
    return subprocess.run(
        [sys.executable, "-m", "frx", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=300,
    )


def run_python(code: str, threads: int) -> str:
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout
