"""transformers backend, CPU or GPU: chat templates from the tokenizer, left padding,
length-sorted batches, seeds, stop strings.

On CPU the torch thread count is set on purpose (``threads=``, default: every core). DESIGN.md
recorded 1 thread decoding one sequence ~25× faster than 2 on these 2-core machines; measured
again with this backend (benches/hf_throughput.py, smollm2-135m, torch 2.15) 2 threads were as
fast at batch 1 and 1.4-1.7× faster at batch 8 and 32, so the default uses every core.
Measure on your machine: the numbers move with torch versions and with other load."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Sequence

from ..errors import FrxError
from .base import Backend, Conversation, Result, Sampling, Structured, _with_instruction, apply_stop
from .guided import MAX_STRING_TOKENS, GuidedDecoder, supported


def _torch():
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError:
        raise FrxError("the hf backend needs torch and transformers: pip install 'frx-engine[hf]'") from None
    return torch


def default_threads() -> int:
    """Every core (measured fastest here at batch 1, 8 and 32; see the module doc)."""
    return os.cpu_count() or 1


def fingerprint(path: Path) -> str:
    """Identity of a local model directory for the cache: weight file names, sizes, mtimes."""
    h = hashlib.sha256()
    for f in sorted(path.glob("*")):
        if f.suffix in (".safetensors", ".bin", ".gguf", ".json"):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


class HFBackend(Backend):
    def __init__(self, path: str | Path, *, device: str | None = None, dtype: str | None = None,
                 batch_size: int = 16, threads: int | None = None, model: Any = None, tokenizer: Any = None):
        torch = _torch()
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        if batch_size < 1:
            raise FrxError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cpu":
            torch.set_num_threads(threads or default_threads())
        if model is not None:
            # An in-memory model (tests, notebooks): identified by its config.
            self.model, self.tokenizer = model, tokenizer
            self.model_id = f"hf-memory:{hashlib.sha256(model.config.to_json_string().encode()).hexdigest()[:16]}"
        else:
            p = Path(path)
            if not p.is_dir():
                raise FrxError(f"model directory {p} does not exist (hf: takes a local directory with config.json)")
            if not (p / "config.json").exists():
                raise FrxError(f"{p} is not a transformers model directory (no config.json)")
            torch_dtype = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
                           "fp32": torch.float32, "float32": torch.float32, None: None}.get(dtype, "bad")
            if torch_dtype == "bad":
                raise FrxError(f"dtype must be bf16, fp16 or fp32, got {dtype!r}")
            if torch_dtype is None:
                torch_dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(p)
                self.model = AutoModelForCausalLM.from_pretrained(p, dtype=torch_dtype).to(self.device)
            except (OSError, ValueError) as e:
                raise FrxError(f"cannot load model from {p}: {str(e).splitlines()[0]}") from None
            self.model_id = f"hf:{p.resolve()}@{fingerprint(p)}"
        self.model.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])

    def render(self, conv: Conversation) -> str:
        """The prompt text: the tokenizer's chat template, or plain "role: content" lines."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        return "".join(f"{m['role']}: {m['content']}\n" for m in conv) + "assistant:"

    def constrains(self, structured: Structured) -> bool:
        """Choices and simple JSON schemas are decoded under guidance (see frx.llm.guided)."""
        return structured.choices is not None or supported(structured.json_schema() or {})

    def _generate(self, conversations: Sequence[Conversation], sampling: Sampling, structured: Structured | None) -> list[Result]:
        torch = _torch()
        if structured is not None and self.constrains(structured):
            return [self._guided(c, sampling, structured) for c in conversations]
        texts = [self.render(c) for c in conversations]
        ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
        out: list[Result | None] = [None] * len(texts)
        for lo in range(0, len(order), self.batch_size):
            batch = order[lo : lo + self.batch_size]
            out_batch = self._run_batch([ids[i] for i in batch], sampling, torch)
            for i, r in zip(batch, out_batch):
                out[i] = r
        return out  # type: ignore[return-value]

    def _guided(self, conv: Conversation, sampling: Sampling, structured: Structured) -> Result:
        torch = _torch()
        t0 = time.perf_counter()
        # The skeleton shows the fields as they are filled; a short instruction is all the model needs.
        hint = structured.instruction() if structured.choices is not None else "Reply with one JSON object."
        prompt_ids = self.tokenizer(self.render(_with_instruction(conv, hint)), add_special_tokens=False)["input_ids"]
        used = [0]
        string_sampling = sampling.model_copy(update={"stop": ('"',), "max_new_tokens": min(sampling.max_new_tokens, MAX_STRING_TOKENS)})

        def prefix(text: str) -> list[int]:
            return prompt_ids + (self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else [])

        def gen_string(text: str) -> str:
            r = self._run_batch([prefix(text)], string_sampling, torch)[0]
            used[0] += r.completion_tokens
            return r.text

        def choose(text: str, options: list[str]) -> int:
            used[0] += 1
            return self._choose(prefix(text), options, torch)

        if structured.choices is not None:
            out = structured.choices[choose("", list(structured.choices))]
        else:
            out = GuidedDecoder(gen_string, choose).run(structured.json_schema() or {})
        return Result(text=out, finish_reason="stop", prompt_tokens=len(prompt_ids), completion_tokens=used[0],
                      latency_s=time.perf_counter() - t0)

    def _choose(self, prefix_ids: list[int], options: list[str], torch: Any) -> int:
        """The option with the highest mean token log-probability after ``prefix_ids``."""
        opts = [self.tokenizer(o, add_special_tokens=False)["input_ids"] for o in options]
        seqs = [prefix_ids + o for o in opts]
        width = max(len(x) for x in seqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([x + [pad] * (width - len(x)) for x in seqs], device=self.device)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in seqs], device=self.device)
        with torch.inference_mode():
            logp = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        n = len(prefix_ids)
        scores = []
        for k, o in enumerate(opts):
            if not o:
                scores.append(float("-inf"))
                continue
            pos = torch.arange(n - 1, n - 1 + len(o), device=self.device)
            scores.append(float(logp[k, pos, torch.tensor(o, device=self.device)].mean()))
        return max(range(len(options)), key=lambda i: scores[i])

    def _run_batch(self, ids: list[list[int]], sampling: Sampling, torch: Any) -> list[Result]:
        width = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=self.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.device)
        kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_new_tokens, "pad_token_id": pad}
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
        torch.manual_seed(sampling.seed)
        t0 = time.perf_counter()
        with torch.inference_mode():
            gen = self.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
        latency = time.perf_counter() - t0
        results = []
        for row, x in zip(gen[:, width:].tolist(), ids):
            n = next((k for k, t in enumerate(row) if t in self.eos_ids or t == pad), None)
            toks = row if n is None else row[:n]
            text = self.tokenizer.decode(toks, skip_special_tokens=True)
            text, stopped = apply_stop(text, sampling.stop)
            finish = "stop" if (n is not None or stopped) else "length"
            results.append(Result(text=text, finish_reason=finish, prompt_tokens=len(x),
                                  completion_tokens=len(toks), latency_s=latency))
        return results
