"""Runs only where vLLM and a GPU are present: python -m pytest tests/gpu -q

Generates with the real engine through frx's adapter on a small model given by
$FRX_VLLM_MODEL (a local directory or hub id reachable from that machine)."""

from __future__ import annotations

import os

import pytest

vllm = pytest.importorskip("vllm")
torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available() or not os.environ.get("FRX_VLLM_MODEL"),
                                reason="needs a GPU and FRX_VLLM_MODEL")


def test_generate_and_structured():
    from pydantic import BaseModel

    from frx.llm import Sampling, Structured, load_model

    class Answer(BaseModel):
        label: str

    m = load_model(f"vllm:{os.environ['FRX_VLLM_MODEL']}", cache=False, max_model_len=2048)
    convs = [[{"role": "user", "content": f"Say hello number {i}."}] for i in range(64)]
    res = m.generate(convs, Sampling(max_new_tokens=16))
    assert len(res) == 64 and all(r.text is not None and r.completion_tokens > 0 for r in res)
    s = m.generate_structured(convs[:8], Structured(choices=("benign", "harmful")))
    assert all(r.parsed in ("benign", "harmful") for r in s)
    j = m.generate_structured(convs[:8], Structured(schema=Answer))
    assert all(r.parsed is not None for r in j)
