"""Measure the real predict path per backend, each in its own process (clean peak RSS, threads).

llama: recover's LlamaPredictor (the engine `recover predict` runs).
hf:    transformers `generate`, greedy, same prompt builder, same max new tokens, same weights
       (loaded from the same GGUF, dequantised to fp32, or from an HF folder).
"""
from __future__ import annotations

import multiprocessing as mp
import resource
import time
from pathlib import Path

from .. import constants as C
from ..csvio import clean_text, read_test

BACKENDS = ("llama", "hf")  # "llama:Q8_0" = llama on a requantized copy of the same weights


def _rows(data: str, n: int) -> tuple[list[str], list[str]]:
    df = read_test(data).head(n)
    return [clean_text(x) for x in df[C.COL_ORIGINAL]], [clean_text(x) for x in df[C.COL_REWRITTEN]]


def _finish(name, t_load, t_run, n, prompt_toks, gen_toks, t_prompt, t_gen, per_row):
    return {"backend": name, "rows": n, "load_s": round(t_load, 3), "s_per_row": round(t_run / n, 4),
            "rows_per_s": round(n / t_run, 4), "prompt_tokens_per_row": round(prompt_toks / n, 1),
            "gen_tokens_per_row": round(gen_toks / n, 2),
            "prompt_tok_s": round(prompt_toks / t_prompt, 1) if t_prompt else None,
            "gen_tok_s": round(gen_toks / t_gen, 1) if t_gen else None,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "per_row_s": [round(x, 4) for x in per_row]}


def bench_llama(model: str, data: str, rows: int, llm: dict) -> dict:
    from ..predict.llm import LlamaConfig, LlamaPredictor

    originals, rewrites = _rows(data, rows)
    t0 = time.perf_counter()
    p = LlamaPredictor(LlamaConfig(model=model, **llm))
    t_load = time.perf_counter() - t0
    s = p.engine.stats
    base_prompt, base_tp = s.prompt_tokens + s.cached_tokens, s.t_prompt  # the head was evaluated at load
    per_row = []
    for o, r in zip(originals, rewrites):
        t = time.perf_counter()
        p.predict_batch([o], [r])
        per_row.append(time.perf_counter() - t)
    t_run = sum(per_row)
    out = _finish("llama.cpp (recover engine)", t_load, t_run, len(per_row), s.prompt_tokens + s.cached_tokens - base_prompt,
                  s.gen_tokens, s.t_prompt - base_tp, s.t_gen, per_row)
    out["prompt_tokens_evaluated_per_row"] = round(s.prompt_tokens / len(per_row), 1)
    out["n_params"] = p.engine.model.n_params()
    out["file_bytes"] = Path(model).stat().st_size
    out["model_desc"] = p.engine.model.desc()
    p.engine.close()
    return out


def bench_hf(model: str, data: str, rows: int, llm: dict, hf_dir: str | None = None) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList

    from ..predict.prompting import build_messages, fit_texts, load_template

    originals, rewrites = _rows(data, rows)
    t0 = time.perf_counter()
    kw = {"gguf_file": Path(model).name} if not hf_dir else {}
    src = hf_dir or str(Path(model).parent)
    tok = AutoTokenizer.from_pretrained(src, **kw)
    m = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, **kw).eval()
    t_load = time.perf_counter() - t0
    template = load_template(llm.get("template"))
    max_new = llm.get("max_new_tokens", 32)
    budget = llm.get("n_ctx", 1024) - max_new - 80

    class FirstToken(StoppingCriteria):  # records when prefill + first token are done
        def __call__(self, input_ids, scores, **kwargs):
            self.t = self.t or time.perf_counter()
            return torch.zeros(input_ids.shape[0], dtype=torch.bool)

    per_row, ptoks, gtoks, t_prompt, t_gen = [], 0, 0, 0.0, 0.0
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    for o, r in zip(originals, rewrites):
        t = time.perf_counter()
        o2, r2 = fit_texts(o, r, budget, enc, tok.decode)
        ids = tok.apply_chat_template(build_messages(template, o2, r2), add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        ft = FirstToken()
        ft.t = None
        with torch.no_grad():
            out = m.generate(**ids, max_new_tokens=max_new, do_sample=False, stopping_criteria=StoppingCriteriaList([ft]),
                             pad_token_id=tok.eos_token_id)
        end = time.perf_counter()
        n_in, n_gen = ids["input_ids"].shape[1], out.shape[1] - ids["input_ids"].shape[1]
        ptoks, gtoks = ptoks + n_in, gtoks + n_gen
        t_prompt += (ft.t or end) - t
        t_gen += end - (ft.t or end)
        per_row.append(end - t)
    return _finish("hf transformers generate (fp32)", t_load, sum(per_row), len(per_row), ptoks, gtoks,
                   t_prompt, t_gen, per_row)


def _child(q, fn, args):
    try:
        q.put(fn(*args))
    except Exception as e:  # noqa: BLE001 - reported in the table, the other backend still runs
        q.put({"error": f"{type(e).__name__}: {e}"})


def run_backend(name: str, model: str, data: str, rows: int, llm: dict, hf_dir: str | None = None) -> dict:
    if name.startswith("llama"):
        if ":" in name:
            from ..export.quantize import cached_requant

            model = str(cached_requant(model, name.split(":", 1)[1]))
        fn, args = bench_llama, (model, data, rows, llm)
    else:
        fn, args = bench_hf, (model, data, rows, llm, hf_dir)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_child, args=(q, fn, args))
    proc.start()
    res = q.get()
    proc.join()
    res["backend"] = name
    res["model_file"] = Path(model).name
    return res
