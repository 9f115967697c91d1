"""Refusal pattern matching over a whole column, in Rust.

A :class:`Matcher` compiles a lexicon once: literal phrases (Aho-Corasick) and regular
expressions (Rust ``regex`` syntax). Phrases match anywhere, ignoring ASCII case, with the
apostrophes ``'``, ``’`` and ``‘`` treated as one; regular expressions are case-insensitive.

:meth:`Matcher.scan` reports every occurrence with its character offset and whether it starts
inside the first sentence (after leading whitespace, up to the first ``.``/``!``/``?`` followed
by whitespace, or the first line break) — the evidence a judge needs to tell an opening
"I can't help with that" from "I'm sorry to hear that" or a refusal quoted in a story. This
module only matches; deciding what a match means is the judge's work.

Example::

    >>> from frx.refusal import Matcher
    >>> m = Matcher(["I can't", "as an AI"])
    >>> m.any(["I can’t help with that.", "Sure! Here it is."]).tolist()
    [True, False]
    >>> m.scan(["Sure. As an AI, I can't."]).to_pylist()[0]
    {'row': 0, 'pattern_id': 1, 'start': 6, 'first_sentence': False}
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from . import _core
from .columns import buffers
from .errors import FrxError

__all__ = ["Matcher", "lexicon_sections", "load_lexicon", "SCAN_SCHEMA"]

SCAN_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("pattern_id", pa.int32()),
        ("start", pa.int64()),
        ("first_sentence", pa.bool_()),
    ]
)


def load_lexicon(path: str | Path | None = None) -> tuple[list[str], list[str]]:
    """Read a lexicon file: ``(phrases, patterns)``. Without a path, frx's own lexicon.

    Format: one entry per line; ``re:`` starts a regular expression; ``#`` starts a comment
    line; blank lines are skipped; surrounding whitespace is stripped. (A line ``@name`` starts
    a section, as in the judge's lexicon: see :func:`lexicon_sections`; here it is an error.)
    """
    if path is None:
        text, where = resources.files("frx").joinpath("data/refusal_lexicon.txt").read_text("utf-8"), "refusal_lexicon.txt"
    else:
        text, where = _read(path), str(path)
    sections = _parse(text, where)
    if set(sections) != {""}:
        raise FrxError(f"lexicon {where} has sections ({', '.join('@' + k for k in sections if k)}): not a matcher lexicon")
    return sections[""]


def lexicon_sections(name: str) -> dict[str, list[str]]:
    """The phrase groups of one of frx's sectioned lexicons (``frx/data/NAME``), by section."""
    text = resources.files("frx").joinpath(f"data/{name}").read_text("utf-8")
    out = {}
    for section, (phrases, patterns) in _parse(text, name).items():
        if patterns or not section:
            raise FrxError(f"lexicon {name}: entries outside a section, or regular expressions in @{section}")
        out[section] = phrases
    return out


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text("utf-8")
    except FileNotFoundError:
        raise FrxError(f"lexicon file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise FrxError(f"cannot read lexicon {path}: {e}") from None


def _parse(text: str, where: str) -> dict[str, tuple[list[str], list[str]]]:
    """Entries by section (``""`` before any ``@name`` line): ``(phrases, patterns)``."""
    sections: dict[str, tuple[list[str], list[str]]] = {}
    current = ""
    for line in text.splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if entry.startswith("@"):
            current = entry[1:].strip()
            sections.setdefault(current, ([], []))
            continue
        phrases, patterns = sections.setdefault(current, ([], []))
        if entry.startswith("re:"):
            patterns.append(entry[3:].strip())
        else:
            phrases.append(entry)
    if not any(p or q for p, q in sections.values()):
        raise FrxError(f"lexicon {where} has no entries")
    return sections


class Matcher:
    """A compiled lexicon. Pattern ids: phrases first (``0..len(phrases)``), then patterns."""

    def __init__(self, phrases: Sequence[str], patterns: Sequence[str] = ()):
        if isinstance(phrases, str) or isinstance(patterns, str):
            raise FrxError("phrases and patterns must be sequences of strings, not a single string")
        self.phrases = [str(p) for p in phrases]
        self.patterns = [str(p) for p in patterns]
        try:
            self._m = _core.Matcher(self.phrases, self.patterns)
        except ValueError as e:
            raise FrxError(f"bad lexicon: {e}") from None

    @classmethod
    def default(cls) -> Matcher:
        """frx's own refusal lexicon (``frx/data/refusal_lexicon.txt``)."""
        return cls(*load_lexicon())

    @classmethod
    def from_file(cls, path: str | Path) -> Matcher:
        return cls(*load_lexicon(path))

    @property
    def entries(self) -> list[str]:
        """Every pattern, indexed by pattern id (regular expressions prefixed with ``re:``)."""
        return self.phrases + [f"re:{p}" for p in self.patterns]

    def __len__(self) -> int:
        return len(self.phrases) + len(self.patterns)

    def __repr__(self) -> str:
        return f"Matcher(phrases={len(self.phrases)}, patterns={len(self.patterns)})"

    def any(self, texts: Any) -> np.ndarray:
        """Whether any pattern occurs in each text (bool; ``False`` for nulls)."""
        return self._m.any(*buffers(texts))

    def scan(self, texts: Any) -> pa.Table:
        """Every occurrence: a table ``row, pattern_id, start, first_sentence`` sorted by
        (row, start, pattern_id); ``start`` is a character offset (a Python string index)."""
        row, pid, start, first = self._m.scan(*buffers(texts))
        return pa.Table.from_arrays(
            [pa.array(row), pa.array(pid.astype(np.int32)), pa.array(start), pa.array(first)],
            schema=SCAN_SCHEMA,
        )

    def flags(self, texts: Any) -> tuple[np.ndarray, np.ndarray]:
        """Per row: ``(hit, hit_in_first_sentence)``, both bool arrays."""
        b = buffers(texts)
        n = len(b.offsets) - 1
        row, _, _, first = self._m.scan(*b)
        hit = np.zeros(n, dtype=bool)
        hit[row] = True
        opening = np.zeros(n, dtype=bool)
        opening[row[first]] = True
        return hit, opening
