"""The final fit (smollm2-dpo-all, every source trained) against the LOSO adapter it stands for
(smollm2-dpo), on 200 seeded rows of each Gemma file the LOSO adapter never saw. NOT a held-out figure
for the final fit (it trained on these sources, on other rows of them: 300 SFT + 240 DPO rows of 6,000):
a check that the retrain did not break the adapter. PROXY SCS, paired.
    python scripts/final_adapter_check.py"""
import os

import numpy as np

from recover import constants as C
from recover.data.pairs_io import load_pairs
from recover.eval.cache import EmbeddingCache
from recover.models.llm import LlamaConfig, LlamaPredictor
from recover.models.shipped import llm_options, resolve_model_path
from recover.score.embedder import Embedder, TokenCap
from recover.score.metric import scs_rows
from recover.score.stats import bootstrap_ci

emb = Embedder.resolve(None)
cache, cap = EmbeddingCache(emb, "build/cache"), TokenCap.from_spec(emb.spec)
for src in ("gemma_rewrites_b", "gemma_rewrites_d"):
    df = load_pairs([f"{os.environ['DATA_DIR']}/{src}.csv"]).sample(n=200, random_state=C.DEFAULT_SEED)
    truth, scs = cache.encode(list(df[C.COL_PROMPT])), {}
    for lora in ("smollm2-dpo", "smollm2-dpo-all"):
        options, m = llm_options({"lora_path": lora})
        p = LlamaPredictor(LlamaConfig(model=resolve_model_path(C.PYPI_SMOLLM2), **options))
        out = []
        for i in range(0, len(df), p.chunk_rows):
            part = df.iloc[i:i + p.chunk_rows]
            out += p.predict_batch(list(part[C.COL_ORIGINAL]), list(part[C.COL_REWRITTEN]))
        scs[lora] = scs_rows(cache.encode([cap(x.strip()) if x and x.strip() else "Rewrite this text." for x in out]), truth)
        print(f"{src} {lora:<16} (trained on {', '.join(sorted(set(m['training']['data']) - {m['training']['holdout'] + '.csv'}))}): "
              f"{scs[lora].mean():.4f}", flush=True)
    d = scs["smollm2-dpo-all"] - scs["smollm2-dpo"]
    lo, hi = bootstrap_ci(d)
    print(f"{src}: all - loso {d.mean():+.4f} [{lo:+.4f}, {hi:+.4f}]")
cache.save()
