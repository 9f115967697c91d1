"""vLLM's offline engine: one ``LLM`` per process, whole shards handed to ``LLM.chat`` at once so
continuous batching keeps the GPU busy; structured output through ``StructuredOutputsParams``
(vLLM ≥ 0.12). Imported lazily: vLLM is only needed where it runs."""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import FrxError
from .base import Backend, Conversation, Result, Sampling, Structured


def _vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise FrxError("the vllm backend needs vLLM on a GPU machine: pip install 'frx-engine[vllm]'") from None
    return vllm


class VLLMBackend(Backend):
    def __init__(self, model: str, *, tensor_parallel_size: int = 1, dtype: str = "auto", max_model_len: int | None = None,
                 gpu_memory_utilization: float = 0.9, seed: int = 0, **engine_args: Any):
        vllm = _vllm()
        if tensor_parallel_size < 1:
            raise FrxError(f"tensor_parallel_size must be at least 1, got {tensor_parallel_size}")
        kwargs: dict[str, Any] = {"model": model, "tensor_parallel_size": tensor_parallel_size, "dtype": dtype,
                                  "gpu_memory_utilization": gpu_memory_utilization, "seed": seed, **engine_args}
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        self.llm = vllm.LLM(**kwargs)
        self.model_id = f"vllm:{model}"

    def constrains(self, structured: Structured) -> bool:
        return True

    def sampling_params(self, sampling: Sampling, structured: Structured | None) -> Any:
        from vllm import SamplingParams

        kwargs: dict[str, Any] = {"temperature": sampling.temperature, "top_p": sampling.top_p,
                                  "max_tokens": sampling.max_new_tokens, "seed": sampling.seed,
                                  "stop": list(sampling.stop) or None}
        if structured is not None:
            from vllm.sampling_params import StructuredOutputsParams

            kwargs["structured_outputs"] = (StructuredOutputsParams(choice=list(structured.choices))
                                            if structured.choices is not None
                                            else StructuredOutputsParams(json=structured.json_schema()))
        return SamplingParams(**kwargs)

    def _generate(self, conversations: Sequence[Conversation], sampling: Sampling, structured: Structured | None) -> list[Result]:
        params = self.sampling_params(sampling, structured)
        outputs = self.llm.chat(list(conversations), sampling_params=params, use_tqdm=False)
        results = []
        for o in outputs:
            c = o.outputs[0]
            m = getattr(o, "metrics", None)
            latency = 0.0
            if m is not None and getattr(m, "finished_time", None) and getattr(m, "arrival_time", None):
                latency = m.finished_time - m.arrival_time
            results.append(Result(text=c.text, finish_reason=c.finish_reason or "stop",
                                  prompt_tokens=len(o.prompt_token_ids or []), completion_tokens=len(c.token_ids),
                                  latency_s=latency))
        return results
