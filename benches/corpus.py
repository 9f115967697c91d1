"""Realistic synthetic corpora for the benchmarks, generated from a seed (nothing downloaded).

* prompts: ~30-word requests with planted exact duplicates (case/space variants) and near
  duplicates (one or two words changed), shuffled; the truth is returned with them.
* responses: 100-400-word answers; some open with a refusal, some mention one mid-text
  ("I'm sorry to hear that", a refusal quoted in a story), most have none.
"""

from __future__ import annotations

import numpy as np

_SYLLABLES = ["ka", "lo", "mi", "ren", "tos", "vel", "an", "dor", "pi", "su", "the", "ing", "ex", "pro", "str", "ble"]
_OPENERS = [
    "I'm sorry, but I can't help with that.",
    "I cannot assist with this request.",
    "As an AI language model, I am not able to provide that.",
    "I’m unable to share instructions for this.",
    "Unfortunately, I cannot provide that information.",
]
_INSIDE = [
    "I'm sorry to hear that you had a rough week.",
    'She looked at him and said, "I cannot do that, Dave."',
    "It is not appropriate to leave the oven unattended.",
    "Please reach out to your local library for more titles.",
]


def vocabulary(size: int = 20_000, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = set()
    while len(words) < size:
        k = int(rng.integers(1, 6))
        words.add("".join(_SYLLABLES[int(i)] for i in rng.integers(0, len(_SYLLABLES), k)))
    common = ["the", "a", "to", "how", "do", "i", "what", "is", "of", "and", "in", "can", "you", "my", "for"]
    return common + sorted(words)


def _zipf_words(rng, vocab, n):
    idx = np.minimum(rng.zipf(1.3, n) - 1, len(vocab) - 1)
    return [vocab[i] for i in idx]


def prompts(n: int, seed: int = 0, exact_share: float = 0.05, near_share: float = 0.10):
    """``n`` prompts and, per prompt, the id of the original it was planted from."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary(seed=seed)
    n_orig = int(n * (1 - exact_share - near_share))
    originals = []
    for _ in range(n_orig):
        words = _zipf_words(rng, vocab, int(rng.integers(24, 37)))
        words[0] = words[0].capitalize()
        originals.append(words)
    texts = [" ".join(w) + "?" for w in originals]
    truth = list(range(n_orig))
    for _ in range(int(n * exact_share)):
        i = int(rng.integers(0, n_orig))
        t = texts[i]
        texts.append(t.upper() if rng.random() < 0.5 else "  " + t.replace(" ", "  ") + " ")
        truth.append(i)
    while len(texts) < n:
        i = int(rng.integers(0, n_orig))
        w = list(originals[i])
        for _ in range(int(rng.integers(1, 3))):
            w[int(rng.integers(0, len(w)))] = vocab[int(rng.integers(0, len(vocab)))]
        texts.append(" ".join(w) + "?")
        truth.append(i)
    order = rng.permutation(len(texts))
    return [texts[i] for i in order], [truth[i] for i in order]


def responses(total_bytes: int, seed: int = 0) -> list[str]:
    """Responses totalling about ``total_bytes`` of UTF-8."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary(seed=seed + 1)
    pool = []
    for _ in range(2000):
        words = _zipf_words(rng, vocab, int(rng.integers(100, 401)))
        for j in range(12, len(words), int(rng.integers(9, 20))):
            words[j] = words[j] + "."
        body = " ".join(words)
        r = rng.random()
        if r < 0.3:
            body = _OPENERS[int(rng.integers(0, len(_OPENERS)))] + " " + body
        elif r < 0.5:
            cut = body.find(" ", len(body) // 2)
            body = body[:cut] + " " + _INSIDE[int(rng.integers(0, len(_INSIDE)))] + body[cut:]
        pool.append(body)
    out, size = [], 0
    while size < total_bytes:
        t = pool[int(rng.integers(0, len(pool)))]
        out.append(t)
        size += len(t)
    return out
