"""GPU check for the hf backend (issue 5): a Qwen2.5-0.5B-shaped model with random weights (no
download), bf16, batch 1/64/256, 128 new tokens.

    python benches/gpu_hf_check.py [--out benches/results/gpu-hf.json] [--tiny]

For each batch size: tokens/s of raw ``model.generate`` on pre-tokenised, left-padded input,
then of the same prompts through frx's ``generate`` stage (chat template, tokenising,
length-sorted batching, decoding, result rows); the stage's overhead is the ratio of the two
wall times. ``--tiny`` runs a small model on CPU to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def build(path: Path, tiny: bool) -> Path:
    import torch
    from tiny_models import tiny_tokenizer
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = tiny_tokenizer()
    shape = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1e6,
                 tie_word_embeddings=True)
    if tiny:
        shape.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                     vocab_size=4096)
    torch.manual_seed(0)
    cfg = Qwen2Config(**shape, bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id,
                      eos_token_id=shape["vocab_size"] - 1)  # an id random weights practically never pick
    model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    model.generation_config.eos_token_id = shape["vocab_size"] - 1
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "benches" / "results" / "gpu-hf.json")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--tokens", type=int, default=128)
    a = ap.parse_args()
    import tempfile

    import torch

    from frx.llm import Sampling, load_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tmp = Path(tempfile.mkdtemp())
    path = build(tmp / "qwen-shaped", a.tiny)
    m = load_model(f"hf:{path}", cache=False, device=device, dtype="bf16", batch_size=256)
    be = m.backend
    rows = []
    for batch in (1, 64, 256):
        convs = [[{"role": "user", "content": f"Tell me about the quick brown fox number {i}, and the lazy dog."}] for i in range(batch)]
        s = Sampling(max_new_tokens=a.tokens)
        ids = [be.tokenizer(be.render(c), add_special_tokens=False)["input_ids"] for c in convs]
        width = max(map(len, ids))
        pad = be.tokenizer.pad_token_id
        inp = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)

        def raw():
            with torch.inference_mode():
                return be.model.generate(input_ids=inp, attention_mask=mask, max_new_tokens=a.tokens, do_sample=False,
                                         pad_token_id=pad, temperature=None, top_p=None, top_k=None)

        raw()  # warm-up (kernels, allocator)
        be.batch_size = batch
        m.generate(convs[:1], Sampling(max_new_tokens=4))
        raw_t, frx_t = [], []
        for _ in range(3):
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = raw()
            if device == "cuda":
                torch.cuda.synchronize()
            raw_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            res = m.generate(convs, s)
            frx_t.append(time.perf_counter() - t0)
        new = (out.shape[1] - width) * batch
        toks = sum(r.completion_tokens for r in res)
        rt, ft = sorted(raw_t)[1], sorted(frx_t)[1]
        row = {"batch": batch, "new_tokens": new, "frx_completion_tokens": toks, "raw_s_median": round(rt, 4),
               "frx_s_median": round(ft, 4), "raw_tokens_per_s": round(new / rt, 1), "frx_tokens_per_s": round(toks / ft, 1),
               "overhead_pct": round(100 * (ft / rt - 1), 2)}
        print(row, flush=True)
        rows.append(row)
    result = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "model": "Qwen2.5-0.5B-shaped, random weights" + (" (tiny)" if a.tiny else ""),
              "dtype": "bf16", "max_new_tokens": a.tokens, "torch": torch.__version__, "runs": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
