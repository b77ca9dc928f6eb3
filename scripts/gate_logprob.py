"""The per-row gate with the LLM's OWN confidence (mean log-prob of its answer's tokens, from the engine):
keep the adapter's answer where it is confident, else submit the hedge (llm+mean, or the embed predictor's
out-of-fold string from `make eval`). tau fitted on one Gemma file's 300 rows, scored on the other's (the
shipped adapter never trained on either). PROXY SCS, paired over the scored rows.
    python scripts/gate_logprob.py     (after scripts/suffix_eval.sh and make eval)"""
import numpy as np
import pandas as pd

from recover import constants as C
from recover.eval.cache import EmbeddingCache
from recover.eval.gate import fit_gate
from recover.meanprompt.prompt import MeanPrompt, combine
from recover.models.llm import LlamaConfig, LlamaPredictor
from recover.models.shipped import llm_options, resolve_model_path
from recover.score.embedder import Embedder, TokenCap
from recover.score.metric import scs_rows
from recover.score.stats import bootstrap_ci

emb = Embedder.resolve(None)
cache, cap, mean = EmbeddingCache(emb, "build/cache"), TokenCap.from_spec(emb.spec), MeanPrompt.load().prompt
options, _ = llm_options({"lora_path": C.DEFAULT_LORA})
p = LlamaPredictor(LlamaConfig(model=resolve_model_path(C.PYPI_SMOLLM2), **options))
print(f"engine {p.cfg.engine}, n_ctx {p.cfg.n_ctx}, max_new_tokens {p.cfg.max_new_tokens}")
loso = pd.read_csv("build/eval/loso/per_row.csv", keep_default_na=False)
rows = {}
for src in ("gemma_rewrites_b", "gemma_rewrites_d"):
    df = pd.read_csv(f"build/suffix/subset/{src}.csv", keep_default_na=False)
    preds, conf = [], []
    for i in range(0, len(df), 64):
        part = df.iloc[i:i + 64]
        preds += p.predict_batch(list(part[C.COL_ORIGINAL]), list(part[C.COL_REWRITTEN]))
        conf += p.confidence
    llm = [cap(x.strip()) if x and x.strip() else mean for x in preds]  # as `recover predict --combine llm`
    oof = loso[(loso.method == "embed") & (loso.fold == f"loso:{src}")].set_index("id")
    truth = cache.encode(list(df[C.COL_PROMPT]))
    scs = {"llm": scs_rows(cache.encode(llm), truth),
           "llm+mean": scs_rows(cache.encode([cap(combine(x, mean, "pred+mean")) for x in llm]), truth),
           "embed": scs_rows(cache.encode(list(oof.loc[df[C.COL_ID], "pred"])), truth)}
    rows[src] = {"conf": np.array(conf, dtype=float), **scs}
    c = pd.Series(rows[src]["conf"])
    print(f"{src}: llm {scs['llm'].mean():.4f}, llm+mean {scs['llm+mean'].mean():.4f}, embed {scs['embed'].mean():.4f}; "
          f"Spearman(confidence, llm SCS) {c.corr(pd.Series(scs['llm']), method='spearman'):+.3f}")
cache.save()
for hedge in ("llm+mean", "embed"):
    for fit_on, test in (("gemma_rewrites_d", "gemma_rewrites_b"), ("gemma_rewrites_b", "gemma_rewrites_d")):
        f, t = rows[fit_on], rows[test]
        g = fit_gate(f["conf"], f["llm"], f[hedge])
        keep = t["conf"] >= g["tau"]
        gated = np.where(keep, t["llm"], t[hedge])
        line = f"hedge {hedge:8} tau {g['tau']:+.3f} fitted on {fit_on} (keeps {g['kept_share']:.0%}) -> {test} keeps {keep.mean():.0%}: gate {gated.mean():.4f}"
        for name in ("llm", hedge):
            d = gated - t[name]
            lo, hi = bootstrap_ci(d)
            line += f" | vs {name} {d.mean():+.4f} [{lo:+.4f}, {hi:+.4f}]"
        print(line)
