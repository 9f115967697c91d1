"""The vLLM adapter against vLLM's documented API (vLLM cannot run here).

A stand-in ``vllm`` module whose constructors accept exactly the documented keyword parameters
(vLLM ≥ 0.12: ``LLM(model, tensor_parallel_size, dtype, seed, gpu_memory_utilization,
max_model_len, …)``, ``SamplingParams(temperature, top_p, max_tokens, seed, stop,
structured_outputs, …)``, ``StructuredOutputsParams(json|choice|regex|grammar)``,
``LLM.chat(messages, sampling_params, use_tqdm)``) records every call, so a misspelt or
removed parameter fails here the way it would on a GPU machine."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import pytest
from pydantic import BaseModel

from frx.llm import Sampling, Structured, load_model

CALLS: list[tuple[str, dict]] = []


def _strict(name, allowed):
    def init(self, **kw):
        unknown = set(kw) - allowed
        if unknown:
            raise TypeError(f"{name}() got unexpected keyword arguments {sorted(unknown)}")
        self.kw = kw
        CALLS.append((name, kw))
    return init


@dataclass
class _Completion:
    text: str
    token_ids: list = field(default_factory=lambda: [1, 2, 3])
    finish_reason: str = "stop"


@dataclass
class _RequestOutput:
    prompt_token_ids: list
    outputs: list


class LLM:
    __init__ = _strict("LLM", {"model", "tokenizer", "tensor_parallel_size", "pipeline_parallel_size", "dtype", "seed",
                               "gpu_memory_utilization", "max_model_len", "quantization", "trust_remote_code",
                               "enforce_eager", "max_num_seqs", "enable_prefix_caching", "download_dir"})

    def chat(self, messages, sampling_params=None, use_tqdm=True, lora_request=None, chat_template=None,
             add_generation_prompt=True, continue_final_message=False, tools=None, chat_template_kwargs=None):
        CALLS.append(("chat", {"n": len(messages), "sampling_params": sampling_params, "use_tqdm": use_tqdm}))
        assert all(isinstance(c, list) and all({"role", "content"} <= set(m) for m in c) for c in messages)
        return [_RequestOutput([0] * (5 + i), [_Completion(f"reply {c[-1]['content']}")]) for i, c in enumerate(messages)]


class SamplingParams:
    __init__ = _strict("SamplingParams", {"n", "presence_penalty", "frequency_penalty", "repetition_penalty", "temperature",
                                          "top_p", "top_k", "min_p", "seed", "stop", "stop_token_ids", "ignore_eos",
                                          "max_tokens", "min_tokens", "logprobs", "skip_special_tokens",
                                          "structured_outputs", "include_stop_str_in_output"})


class StructuredOutputsParams:
    __init__ = _strict("StructuredOutputsParams", {"json", "regex", "choice", "grammar", "json_object", "structural_tag",
                                                   "whitespace_pattern", "disable_any_whitespace"})


@pytest.fixture()
def fake_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.LLM, mod.SamplingParams = LLM, SamplingParams
    sp = types.ModuleType("vllm.sampling_params")
    sp.SamplingParams, sp.StructuredOutputsParams = SamplingParams, StructuredOutputsParams
    mod.sampling_params = sp
    monkeypatch.setitem(sys.modules, "vllm", mod)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sp)
    CALLS.clear()
    return CALLS


class Entity(BaseModel):
    name: str


def test_engine_and_sampling_parameters(fake_vllm):
    m = load_model("vllm:Qwen/Qwen2.5-0.5B-Instruct", cache=False, tensor_parallel_size=2, max_model_len=4096)
    assert fake_vllm[0] == ("LLM", {"model": "Qwen/Qwen2.5-0.5B-Instruct", "tensor_parallel_size": 2, "dtype": "auto",
                                    "gpu_memory_utilization": 0.9, "seed": 0, "max_model_len": 4096})
    convs = [[{"role": "user", "content": f"q{i}"}] for i in range(50)]
    res = m.generate(convs, Sampling(temperature=0.7, top_p=0.9, max_new_tokens=64, seed=3, stop=("###",)))
    chats = [c for c in fake_vllm if c[0] == "chat"]
    assert len(chats) == 1 and chats[0][1]["n"] == 50  # the whole batch in one call: continuous batching
    assert chats[0][1]["sampling_params"].kw == {"temperature": 0.7, "top_p": 0.9, "max_tokens": 64, "seed": 3, "stop": ["###"]}
    assert [r.text for r in res] == [f"reply q{i}" for i in range(50)]
    assert res[3].prompt_tokens == 8 and res[3].completion_tokens == 3 and res[3].finish_reason == "stop"


def test_structured_outputs(fake_vllm):
    m = load_model("vllm:m", cache=False)
    r = m.generate_structured([[{"role": "user", "content": "x"}]], Structured(choices=("benign", "harmful")))
    so = [kw for name, kw in fake_vllm if name == "StructuredOutputsParams"]
    # The stand-in ignores the constraint, so every attempt is invalid: 3 tries, then recorded.
    assert so == [{"choice": ["benign", "harmful"]}] * 3
    assert r[0].parsed is None and "after 3 attempt" in r[0].error
    # Constrained decoding: the prompt is not changed.
    chat = [kw for name, kw in fake_vllm if name == "chat"]
    assert chat
    m.generate_structured([[{"role": "user", "content": "y"}]], Structured(schema=Entity))
    so = [kw for name, kw in fake_vllm if name == "StructuredOutputsParams"]
    assert so[-1] == {"json": Entity.model_json_schema()}


def test_missing_vllm_is_a_clear_error(monkeypatch):
    from frx.errors import FrxError

    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(FrxError, match="pip install 'frx-engine\\[vllm\\]'"):
        load_model("vllm:m", cache=False)
