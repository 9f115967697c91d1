"""GPU check for `frx sft` (issue 7): LoRA SFT of a Qwen2.5-0.5B-shaped model with random weights
(no download), bf16, 50 steps, through frx's own training path; reports tokens/s (trained
tokens over wall time) and peak GPU memory, then checks that the adapter loads for generation.

    python benches/gpu_sft_check.py [--out benches/results/gpu-sft.json] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benches"))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "benches" / "results" / "gpu-sft.json")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--steps", type=int, default=50)
    a = ap.parse_args()
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from gpu_hf_check import build

    from frx.sft import SftConfig, build_trainer, run_sft

    tmp = Path(tempfile.mkdtemp())
    base = build(tmp / "qwen-shaped", a.tiny)
    n = 512
    words = "the quick brown fox jumps over the lazy dog while the process keeps running".split()
    t = pa.table({"prompt": [" ".join(words[(i + j) % len(words)] for j in range(24)) + f" {i}?" for i in range(n)],
                  "instruct_response": [" ".join(words[(3 * i + j) % len(words)] for j in range(96)) for i in range(n)]})
    pq.write_table(t, tmp / "data.parquet")
    cfg = SftConfig(base=f"hf:{base}", data=[tmp / "data.parquet"], out=tmp / "run", max_steps=a.steps, batch_size=16,
                    lora_r=16, max_seq_len=512, save_steps=a.steps, logging_steps=10, lr=1e-4)
    trainer, *_ = build_trainer(cfg, log=lambda s: None)
    per_step = sum(int(sum(1 for x in trainer.train_dataset[i]["labels"] if x != -100)) for i in range(16))
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    rec = run_sft(cfg, log=print)
    wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    from peft import AutoPeftModelForCausalLM

    peft_model = AutoPeftModelForCausalLM.from_pretrained(cfg.out / "adapter", dtype=torch.bfloat16)
    ids = torch.tensor([[1, 2, 3, 4]])
    gen = peft_model.to("cuda" if torch.cuda.is_available() else "cpu").generate(
        input_ids=ids.to(peft_model.device), max_new_tokens=8, do_sample=False)
    result = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
              "model": "Qwen2.5-0.5B-shaped, random weights" + (" (tiny)" if a.tiny else ""), "dtype": rec["dtype"],
              "steps": rec["steps"], "batch_size": 16, "lora_r": 16, "train_seconds": rec["seconds"], "wall_seconds": round(wall, 2),
              "completion_tokens_per_step_estimate": per_step,
              "trained_tokens_per_s": round(per_step * rec["steps"] / rec["seconds"], 1),
              "peak_gpu_memory_gib": round(peak, 2) if peak is not None else None,
              "adapter_generates": int(gen.shape[1]) > 4,
              "loss_first_last": [rec["loss_curve"][0]["loss"], rec["loss_curve"][-1]["loss"]] if rec["loss_curve"] else None,
              "torch": torch.__version__}
    print(json.dumps(result, indent=2))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
