"""Content-addressed response cache: SQLite (WAL, safe across processes), keyed by the SHA-256
of (model, messages, sampling settings with the seed, structured-output request)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import FrxError


def default_cache_dir() -> Path:
    """``$FRX_CACHE_DIR``, else ``$XDG_CACHE_HOME/frx``, else ``~/.cache/frx``."""
    if os.environ.get("FRX_CACHE_DIR"):
        return Path(os.environ["FRX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "frx"


class ResponseCache:
    """Stores each response as the JSON text its model wrapper gives it, under the key's digest;
    what a response is, is the wrapper's business (``frx.llm.base.Result``)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_cache_dir() / "responses.sqlite"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS responses (key BLOB PRIMARY KEY, result TEXT NOT NULL)")
            self._db.commit()
        except (OSError, sqlite3.Error) as e:
            raise FrxError(f"cannot open the response cache {self.path}: {e}") from None

    @staticmethod
    def digest(key: str) -> bytes:
        return hashlib.sha256(key.encode()).digest()

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """The stored JSON of each key, or None."""
        digests = [self.digest(k) for k in keys]
        found: dict[bytes, str] = {}
        for lo in range(0, len(digests), 500):
            chunk = digests[lo : lo + 500]
            q = f"SELECT key, result FROM responses WHERE key IN ({','.join('?' * len(chunk))})"
            found.update(self._db.execute(q, chunk).fetchall())
        return [found.get(d) for d in digests]

    def put_many(self, items: Iterable[tuple[str, str]]) -> None:
        """Store ``(key, JSON text)`` pairs."""
        rows = [(self.digest(k), text) for k, text in items]
        if rows:
            self._db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?)", rows)
            self._db.commit()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._db.close()
