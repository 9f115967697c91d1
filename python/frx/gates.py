"""Cheap quality gates for generated data: each names why a row is not worth keeping, and
`frx generate` records every such drop as a reason in its funnel.

On a candidate prompt (before dedup):

* ``names a category`` — the prompt is a category's name or alias (or the row's
  ``category_text``), not a request;
* ``copies a seed`` — at least :data:`SEED_CONTAINMENT` of the candidate's words (of three
  letters or more) are words of the seed it was written from: a reworded seed, not a new prompt;
* ``too short`` — fewer than :data:`MIN_WORDS` words;
* ``not a request`` — neither a question (a ``?``) nor opening with a request or instruction
  (a word of :data:`REQUEST_OPENINGS`: "how", "explain", "write", "I need"…).

On a response (after the responder):

* ``repeats itself`` — a sentence of at least :data:`REPEAT_MIN_WORDS` words occurs twice or
  more (small models loop).

Words are lowercased runs of letters, digits and apostrophes. These are rules about the form of a
row, not about its meaning: a gate never decides whether a prompt is benign.
"""

from __future__ import annotations

import re
from typing import Iterable

MIN_WORDS = 5
SEED_CONTAINMENT = 0.8
REPEAT_MIN_WORDS = 5
# Openings of requests and instructions (first word, or first two for "i need" and the like).
REQUEST_OPENINGS = frozenset("""
how what why when where which who whom whose is are am was were do does did can could would will shall should may might
must have has had explain describe tell give list write show help suggest recommend teach outline compare summarize
summarise create make draft compose find name identify provide share walk guide advise define translate calculate design
plan prepare build generate please imagine pretend act let
""".split())
_TWO_WORD = ("i need", "i want", "i'd like", "i would", "i have", "i am", "i'm trying", "i'm looking", "i was", "let me", "let's")
_WORD = re.compile(r"[a-z0-9']+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def prompt_gate(prompt: str | None, seed: str | None, categories: Iterable[str]) -> str | None:
    """The reason to drop a candidate prompt, or None to keep it. ``categories``: the names a
    category goes by (the row's category text and the taxonomy's names and aliases)."""
    w = words(prompt or "")
    if not w:
        return "too short"
    joined = " ".join(w)
    if any(joined == " ".join(words(c)) for c in categories if c):
        return "names a category"
    if len(w) < MIN_WORDS:
        return "too short"
    content = [x for x in w if len(x) >= 3]
    seed_words = set(words(seed or ""))
    if content and seed_words and sum(x in seed_words for x in content) / len(content) >= SEED_CONTAINMENT:
        return "copies a seed"
    if not is_request(prompt or ""):
        return "not a request"
    return None


def is_request(prompt: str) -> bool:
    """A question, or text that opens with a request or an instruction."""
    if "?" in prompt:
        return True
    w = words(prompt)
    if not w:
        return False
    head = " ".join(w[:3])
    if head.startswith(_TWO_WORD):
        return True
    return w[0].split("'")[0] in REQUEST_OPENINGS  # what's, how'd, who're


def response_gate(response: str | None) -> str | None:
    """The reason to drop a response, or None to keep it."""
    seen: set[str] = set()
    for sentence in _SENTENCE.split(response or ""):
        w = words(sentence)
        if len(w) < REPEAT_MIN_WORDS:
            continue
        key = " ".join(w)
        if key in seen:
            return "repeats itself"
        seen.add(key)
    return None
