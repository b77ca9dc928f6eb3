# The AMX segfault, reproduced (README "Benchmarks"): recover's llama engine on a llama.cpp built natively.
#   LLAMA_CPP_LIB_PATH=DIR_WITH_libllama.so [NO_EXTRA_BUFTS=1] RECOVER_THREADS=1 python scripts/amx_repro.py MODEL.gguf [ROWS]
import os, sys, time
if os.environ.get("NO_EXTRA_BUFTS"):  # weights stay in the plain CPU buffer: no AMX (or repacked) matmul path
    import llama_cpp
    _orig = llama_cpp.llama_model_default_params
    def _params():
        p = _orig()
        p.use_extra_bufts = False
        return p
    llama_cpp.llama_model_default_params = _params
from recover.demo import SAMPLE
from recover.models.llm import LlamaConfig, LlamaPredictor
import pandas as pd
model = sys.argv[1]
df = pd.read_csv(SAMPLE).head(int(sys.argv[2]) if len(sys.argv) > 2 else 4)
p = LlamaPredictor(LlamaConfig(model=model, engine="llama", max_new_tokens=16, n_ctx=512))
t = time.time()
out = p.predict_batch(list(df.original_text), list(df.rewritten_text))
print("ok", len(out), f"{time.time()-t:.1f}s", p.engine.stats.prompt_tokens / max(p.engine.stats.t_prompt, 1e-9), "prompt tok/s", out[:2])
