"""The torch engine's rows in flight (n_seq) and prefill size (PREFILL_TOKENS), paired in ONE process on the same
rows (issue 40): s/row, prompt and decode s/row, decode steps and ms a step.
    make experiment NAME=engine_batch ARGS="bf16 24 8/4096 24/4096 32/4096 24/2048 24/8192"
(ARGS: dtype, rows, then n_seq/prefill_tokens settings; run it under the shared lock, nothing else on the cores)
"""
import os
import sys
import time

if "DATA_DIR" not in os.environ:
    sys.exit("run it through make: make experiment NAME=engine_batch (DATA_DIR and PY come from the Makefile)")

import recover.models.torch_engine as TE  # noqa: E402
from recover.bench.measure import _rows  # noqa: E402
from recover.models.llm import LlamaConfig, LlamaPredictor  # noqa: E402
from recover.pypi_models import smollm2_gguf  # noqa: E402

dtype, rows = sys.argv[1], int(sys.argv[2])
orig, rew = _rows(os.environ["DATA_DIR"] + "/gemma_rewrites_a.csv", rows)
p = LlamaPredictor(LlamaConfig(model=str(smollm2_gguf()), engine="torch", n_seq=8, torch_dtype=dtype))
ids = [p.build_prompt_tokens(o, r) for o, r in zip(orig, rew)]
e = p.engine
print(f"{dtype}: prompt tokens/row {sum(map(len, ids)) / rows:.1f}, shared head {len(e.head)}")
e.generate(ids[:4], 32)  # warm-up: first-call allocations out of the figures
for spec in sys.argv[3:]:
    e.n_seq, TE.PREFILL_TOKENS = map(int, spec.split("/"))
    s = e.stats
    tp, tg, st, gt = s.t_prompt, s.t_gen, s.gen_steps, s.gen_tokens
    t = time.perf_counter()
    e.generate(ids, 32)
    w, steps = time.perf_counter() - t, max(1, s.gen_steps - st)
    print(f"n_seq {e.n_seq} prefill {TE.PREFILL_TOKENS}: {w / rows:.4f} s/row; prompt {(s.t_prompt - tp) / rows:.4f} "
          f"decode {(s.t_gen - tg) / rows:.4f} s/row; {steps} steps {(s.t_gen - tg) / steps * 1e3:.1f} ms/step, "
          f"{(s.gen_tokens - gt) / rows:.1f} tok/row")
