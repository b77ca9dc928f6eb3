"""Where the torch engine's time goes: prompt vs decode, decode steps and live rows per step, and (--ops) the
torch.profiler table of the top operators. The figures issue 31's engine work was planned from.
    make experiment NAME=engine_profile ARGS="--rows 24 --dtype bf16 --n-seq 8 [--ops]"
"""
import argparse
import os
import sys
import time

if "DATA_DIR" not in os.environ:
    sys.exit("run it through make: make experiment NAME=engine_profile (DATA_DIR and PY come from the Makefile)")

from recover.bench.measure import _rows  # noqa: E402
from recover.models.llm import LlamaConfig, LlamaPredictor  # noqa: E402
from recover.pypi_models import smollm2_gguf  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--rows", type=int, default=24)
ap.add_argument("--dtype", default="bf16")
ap.add_argument("--n-seq", type=int, default=8)
ap.add_argument("--data", default=os.environ["DATA_DIR"] + "/gemma_rewrites_a.csv")
ap.add_argument("--ops", action="store_true", help="torch.profiler's operator table")
a = ap.parse_args()

p = LlamaPredictor(LlamaConfig(model=str(smollm2_gguf()), engine="torch", n_seq=a.n_seq, torch_dtype=a.dtype))
orig, rew = _rows(a.data, a.rows)
p.predict_batch(orig[:2], rew[:2])  # warm-up: first-call allocations out of the figures
s = p.engine.stats
t_p0, t_g0, steps0, gen0 = s.t_prompt, s.t_gen, s.gen_steps, s.gen_tokens
t0 = time.perf_counter()
if a.ops:
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        preds = p.predict_batch(orig, rew)
else:
    preds = p.predict_batch(orig, rew)
wall = time.perf_counter() - t0
steps, gen = s.gen_steps - steps0, s.gen_tokens - gen0
print(f"{a.rows} rows, torch {a.dtype}, n_seq {a.n_seq}: {wall / a.rows:.4f} s/row wall; prompt "
      f"{(s.t_prompt - t_p0) / a.rows:.4f} s/row, decode {(s.t_gen - t_g0) / a.rows:.4f} s/row; {steps} decode steps, "
      f"{(s.t_gen - t_g0) / max(steps, 1) * 1e3:.1f} ms/step, {gen / max(steps, 1):.2f} tokens/step")
if a.ops:
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
print("first predictions:", preds[:3])
