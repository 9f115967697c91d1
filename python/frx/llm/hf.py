"""transformers backend, CPU or GPU: chat templates from the tokenizer, left padding,
length-sorted batches, seeds, stop strings.

On CPU the torch thread count is set on purpose (``threads=``, default: every core). DESIGN.md
recorded 1 thread decoding one sequence ~25× faster than 2 on these 2-core machines; measured
again with this backend (benches/hf_throughput.py, smollm2-135m, torch 2.15) 2 threads were as
fast at batch 1 and 1.4-1.7× faster at batch 8 and 32, so the default uses every core.
Measure on your machine: the numbers move with torch versions and with other load."""

from __future__ import annotations

import hashlib
import inspect
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
    """``OMP_NUM_THREADS`` when it is set (Ray sets it to each task's CPUs, so parallel tasks do
    not oversubscribe the cores), else every core this process may run on (measured fastest
    here at batch 1, 8 and 32; see the module doc)."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def fingerprint(path: Path) -> str:
    """Identity of a local model directory for the cache: weight file names, sizes, mtimes."""
    h = hashlib.sha256()
    for f in sorted(path.glob("*")):
        if f.suffix in (".safetensors", ".bin", ".gguf", ".json"):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


class _Prefix:
    """What a guided decode has written so far, as tokens — the prompt, then each piece of JSON
    tokenized as it is appended — with a key/value cache of them that grows with the text: a gap
    costs only the new piece and its own tokens, never the prompt or the earlier JSON again.
    ``cache_for(n)`` gives the cache holding exactly the first ``n`` tokens (cut back after a
    call that went further, extended over new pieces), or None where the cache cannot be cut
    (e.g. a sliding-window cache): then callers run the whole sequence."""

    def __init__(self, backend: HFBackend, prompt_ids: list[int], torch: Any):
        self.backend, self.torch = backend, torch
        self.ids = list(prompt_ids)
        self.text = ""
        self.cache: Any = None
        self.valid = 0  # the cache's first `valid` positions hold exactly ids[:valid]
        self.usable = True

    def sync(self, text: str) -> None:
        """The decoder's text only grows: tokenize what was appended since the last call."""
        piece = text[len(self.text):]
        if piece:
            self.ids += self.backend.tokenizer(piece, add_special_tokens=False)["input_ids"]
        self.text = text

    def cache_for(self, n: int) -> Any:
        if not self.usable or n <= 0:
            return None
        # Calls after the last one may have added tokens of their own (a generated string, an
        # option): keep only what is known to match ``ids``, then run the rest of ``ids``.
        keep = min(self.valid, n)
        have = 0 if self.cache is None else self.cache.get_seq_length()
        try:
            if have > keep:
                self.cache.crop(keep - have)
        except (ValueError, RuntimeError):
            self.usable, self.cache = False, None
            return None
        if keep < n:
            self.cache = self.backend._forward(self.ids[keep:n], self.cache, self.torch, keep=1)[1]
        self.valid = n
        return self.cache


def local_model_dir(model: str) -> Path:
    """A local directory as given, or a hub name (``ORG/NAME``) already in the local Hugging
    Face cache: frx never downloads a model."""
    p = Path(model).expanduser()
    if p.exists() or model.startswith((".", "/", "~")) or model.count("/") != 1:
        return p
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        return p
    try:
        return Path(snapshot_download(model, local_files_only=True))
    except LocalEntryNotFoundError:
        from huggingface_hub.constants import HF_HUB_CACHE

        raise FrxError(f"hf:{model} is neither a local directory nor in the Hugging Face cache ({HF_HUB_CACHE}); frx does "
                       f"not download models: fetch it first (huggingface-cli download {model}) or give a directory") from None
    except ValueError as e:  # not a valid repo id
        raise FrxError(f"hf:{model}: {e}") from None


def _with_adapter(adapter: Path, dtype: Any) -> tuple[Any, Path]:
    """A LoRA adapter directory (``frx sft``'s OUT/adapter) on the base model it names, unmerged:
    nothing is written. Returns the model and the base model's directory."""
    import json

    from transformers import AutoModelForCausalLM

    try:
        from peft import PeftModel
    except ImportError:
        raise FrxError(f"{adapter} is a LoRA adapter: loading it needs peft (pip install 'frx-engine[train]')") from None
    name = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not name:
        raise FrxError(f"{adapter}/adapter_config.json names no base model (base_model_name_or_path)")
    base = local_model_dir(name)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    return PeftModel.from_pretrained(model, adapter), base


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
            adapter = (p / "adapter_config.json").exists() and not (p / "config.json").exists()
            if not adapter and not (p / "config.json").exists():
                raise FrxError(f"{p} is not a transformers model directory (no config.json) nor a LoRA adapter (no adapter_config.json)")
            torch_dtype = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
                           "fp32": torch.float32, "float32": torch.float32, None: None}.get(dtype, "bad")
            if torch_dtype == "bad":
                raise FrxError(f"dtype must be bf16, fp16 or fp32, got {dtype!r}")
            if torch_dtype is None:
                torch_dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(p)
                if adapter:
                    self.model, base = _with_adapter(p, torch_dtype)
                    self.model.to(self.device)
                    self.model_id = f"hf:{base.resolve()}@{fingerprint(base)}+adapter:{p.resolve()}@{fingerprint(p)}"
                else:
                    self.model = AutoModelForCausalLM.from_pretrained(p, dtype=torch_dtype).to(self.device)
                    self.model_id = f"hf:{p.resolve()}@{fingerprint(p)}"
            except (OSError, ValueError) as e:
                raise FrxError(f"cannot load model from {p}: {str(e).splitlines()[0]}") from None
        self.model.eval()
        # What this transformers version calls the key/value cache (``cache`` from 5.x on,
        # ``past_key_values`` before), and whether a forward can skip logits it is not asked for.
        params = inspect.signature(self.model.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        self.logits_to_keep = "logits_to_keep" in params
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self._stops: dict[tuple[str, ...], Any] = {}

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

    def _forward(self, ids: list[int], cache: Any, torch: Any, keep: int | None = None) -> tuple[Any, Any]:
        """One pass over ``ids`` after ``cache`` (extended in place): (log-probabilities at the
        last ``keep`` positions — all when None —, the cache). Computing only the logits needed
        matters: over a 49k vocabulary they cost more than the rest of a small model."""
        kw = self.cache_kw
        extra = {kw: cache}
        if keep is not None and self.logits_to_keep:
            extra["logits_to_keep"] = keep
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=True, **extra)
        logits = out.logits[0] if keep is None else out.logits[0, -keep:]
        return torch.log_softmax(logits.float(), dim=-1), getattr(out, kw)

    def _guided(self, conv: Conversation, sampling: Sampling, structured: Structured) -> Result:
        torch = _torch()
        t0 = time.perf_counter()
        # The skeleton shows the fields as they are filled; a short instruction is all the model needs.
        hint = structured.instruction() if structured.choices is not None else "Reply with one JSON object."
        prompt_ids = self.tokenizer(self.render(_with_instruction(conv, hint)), add_special_tokens=False)["input_ids"]
        used = [0]
        string_sampling = sampling.model_copy(update={"stop": ('"',), "max_new_tokens": min(sampling.max_new_tokens, MAX_STRING_TOKENS)})
        prefix = _Prefix(self, prompt_ids, torch)

        def gen_string(text: str) -> str:
            prefix.sync(text)
            cache = prefix.cache_for(len(prefix.ids) - 1)  # generate runs the last token itself
            r = self._run_batch([prefix.ids], string_sampling, torch, cache=cache)[0]
            used[0] += r.completion_tokens
            return r.text

        def choose(text: str, options: list[str]) -> int:
            prefix.sync(text)
            used[0] += 1
            return self._choose(prefix, options, torch)

        if structured.choices is not None:
            out = structured.choices[choose("", list(structured.choices))]
        else:
            out = GuidedDecoder(gen_string, choose).run(structured.json_schema() or {})
        return Result(text=out, finish_reason="stop", prompt_tokens=len(prompt_ids), completion_tokens=used[0],
                      latency_s=time.perf_counter() - t0)

    def _choose(self, prefix: _Prefix, options: list[str], torch: Any) -> int:
        """The option with the highest mean token log-probability after the text so far: the last
        token's pass gives every option's first token, then one short pass per longer option."""
        opts = [self.tokenizer(o, add_special_tokens=False)["input_ids"] for o in options]
        ids = prefix.ids
        cache = prefix.cache_for(len(ids) - 1)
        if cache is not None:
            first = self._forward(ids[-1:], cache, torch, keep=1)[0][-1]
            prefix.valid = len(ids)  # that pass ran the real last token
        else:
            first = self._forward(ids, None, torch, keep=1)[0][-1]
        # The rest of every option longer than a token: one batched pass, the cache repeated per
        # option (right padding: a pad after an option cannot change its earlier positions).
        rest: dict[int, float] = {}
        multi = [k for k, o in enumerate(opts) if len(o) > 1]
        if multi:
            cache = prefix.cache_for(len(ids))
            width = max(len(opts[k]) - 1 for k in multi)
            pad = self.tokenizer.pad_token_id
            rows = [opts[k][:-1] + [pad] * (width - len(opts[k]) + 1) for k in multi]
            kw = self.cache_kw
            with torch.inference_mode():
                if cache is not None:
                    cache.batch_repeat_interleave(len(multi))
                    try:
                        out = self.model(input_ids=torch.tensor(rows, device=self.device), use_cache=True, **{kw: cache})
                    finally:
                        cache.batch_select_indices(torch.tensor([0], device=self.device))
                    logits = out.logits
                else:
                    out = self.model(input_ids=torch.tensor([ids + r for r in rows], device=self.device), use_cache=False)
                    logits = out.logits[:, len(ids):]
                lp = torch.log_softmax(logits.float(), dim=-1)
            for j, k in enumerate(multi):
                o = opts[k]
                rest[k] = float(lp[j, torch.arange(len(o) - 1), torch.tensor(o[1:])].sum())
        scores = [float(first[o[0]]) + rest.get(k, 0.0) if o else float("-inf") for k, o in enumerate(opts)]
        scores = [sc / len(o) if o else sc for sc, o in zip(scores, opts)]
        return max(range(len(options)), key=lambda i: scores[i])

    def _stop_criteria(self, stop: tuple[str, ...]) -> Any:
        """transformers' stop-string criterion for ``stop``, built once per backend and stop
        tuple: building it reads and sorts the whole vocabulary (60-135 ms for 49k tokens here), which
        a guided decode, stopping each string at its closing quote, would otherwise pay per
        string. The criterion keeps no state between calls."""
        crit = self._stops.get(stop)
        if crit is None:
            from transformers import StoppingCriteriaList, StopStringCriteria

            crit = self._stops[stop] = StoppingCriteriaList([StopStringCriteria(self.tokenizer, list(stop))])
        return crit

    def _run_batch(self, ids: list[list[int]], sampling: Sampling, torch: Any, cache: Any = None) -> list[Result]:
        """Generate for a batch of token lists (left-padded). ``cache``: keys and values of a
        prefix of a single sequence, reused (and extended) by this call."""
        width = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=self.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.device)
        kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_new_tokens, "pad_token_id": pad}
        if cache is not None:
            kwargs[self.cache_kw] = cache
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if sampling.stop:
            kwargs["stopping_criteria"] = self._stop_criteria(tuple(sampling.stop))
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
