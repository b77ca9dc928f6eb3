"""Measure the real predict path per backend, each in its own process (clean peak RSS, threads).

llama:  recover's LlamaPredictor (the engine `recover predict` runs); "llama:Q8_0" = the same
        weights requantized (cached, keyed by content).
hf:     transformers `generate` (greedy, fp32 weights dequantised from the same GGUF) doing EQUAL
        work: fed the engine's own prompt token ids, stopped by the engine's rules (end-of-generation
        token, max new tokens, `blank_line_stop`).
hf-raw: the same, tokenized by HF and with no stop rule but EOS and the token limit: what a plain
        `generate` call does (the old, unequal figure, kept to show the difference).
"""
from __future__ import annotations

import multiprocessing as mp
import resource
import time
from pathlib import Path

from .. import constants as C
from ..csvio import clean_text, read_test

BACKENDS = ("llama", "hf", "hf-raw")


def _rows(data: str, n: int) -> tuple[list[str], list[str]]:
    df = read_test(data).head(n)
    return [clean_text(x) for x in df[C.COL_ORIGINAL]], [clean_text(x) for x in df[C.COL_REWRITTEN]]


def _finish(name, t_load, t_run, per_row, prompt_counts, evaluated, gen_toks, t_prompt, t_gen, preds):
    n = len(per_row)
    return {"backend": name, "rows": n, "load_s": round(t_load, 3), "s_per_row": round(t_run / n, 4),
            "rows_per_s": round(n / t_run, 4), "prompt_tokens_per_row": round(sum(prompt_counts) / n, 1),
            "prompt_tokens_evaluated_per_row": round(evaluated / n, 1),  # the engine reuses the shared head's KV
            "gen_tokens_per_row": round(gen_toks / n, 2),
            "prompt_tok_s": round(evaluated / t_prompt, 1) if t_prompt else None,
            "gen_tok_s": round(gen_toks / t_gen, 1) if t_gen else None,
            "prompt_s_per_row": round(t_prompt / n, 4), "gen_s_per_row": round(t_gen / n, 4),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "per_row_s": [round(x, 4) for x in per_row], "prompt_token_counts": prompt_counts, "predictions": preds}


def bench_llama(model: str, data: str, rows: int, llm: dict) -> dict:
    from ..predict.llm import LlamaConfig, LlamaPredictor

    originals, rewrites = _rows(data, rows)
    t0 = time.perf_counter()
    p = LlamaPredictor(LlamaConfig(model=model, **llm))
    t_load = time.perf_counter() - t0
    ids = [p.build_prompt_tokens(o, r) for o, r in zip(originals, rewrites)]  # what predict_batch builds
    s = p.engine.stats
    base_eval, base_tp = s.prompt_tokens, s.t_prompt  # the head was evaluated at load
    per_row, preds = [], []
    for o, r in zip(originals, rewrites):
        t = time.perf_counter()
        preds += p.predict_batch([o], [r])
        per_row.append(time.perf_counter() - t)
    out = _finish("llama.cpp (recover engine)", t_load, sum(per_row), per_row, [len(x) for x in ids],
                  s.prompt_tokens - base_eval, s.gen_tokens, s.t_prompt - base_tp, s.t_gen, preds)
    out.update(prompt_ids=ids, n_params=p.engine.model.n_params(),
               file_bytes=Path(model).stat().st_size, model_desc=p.engine.model.desc(),
               max_new_tokens=p.cfg.max_new_tokens)
    p.engine.close()
    return out


def bench_hf(model: str, data: str, rows: int, llm: dict, hf_dir: str | None = None,
             prompt_ids: list[list[int]] | None = None) -> dict:
    """prompt_ids given: equal work (the engine's ids and stop rules); None: a plain `generate`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList

    from ..predict.llama_engine import blank_line_stop
    from ..predict.llm import is_echo
    from ..predict.postprocess import clean_llm_output
    from ..predict.prompting import build_messages, fit_texts, load_template

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "de-quantizing GGUF tensors" bars in the bench's log
    originals, rewrites = _rows(data, rows)
    t0 = time.perf_counter()
    kw = {"gguf_file": Path(model).name} if not hf_dir else {}
    src = hf_dir or str(Path(model).parent)
    tok = AutoTokenizer.from_pretrained(src, **kw)
    m = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, **kw).eval()
    t_load = time.perf_counter() - t0
    max_new = llm.get("max_new_tokens", 32)
    eos = set(m.generation_config.eos_token_id if isinstance(m.generation_config.eos_token_id, list)
              else [m.generation_config.eos_token_id or tok.eos_token_id])
    equal = prompt_ids is not None

    class Phases(StoppingCriteria):  # records when prefill + first token are done; applies the engine's stop rule
        def __init__(self, n_in):
            self.n_in, self.t = n_in, None

        def __call__(self, input_ids, scores, **kwargs):
            self.t = self.t or time.perf_counter()
            gen = [t for t in input_ids[0, self.n_in:].tolist() if t not in eos]
            stop = equal and blank_line_stop(tok.decode(gen))
            return torch.full((input_ids.shape[0],), stop, dtype=torch.bool)

    if not equal:
        template, budget = load_template(llm.get("template")), llm.get("n_ctx", 1024) - max_new - 80
        enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    per_row, counts, gtoks, t_prompt, t_gen, preds = [], [], 0, 0.0, 0.0, []
    for i, (o, r) in enumerate(zip(originals, rewrites)):
        t = time.perf_counter()
        if equal:
            ids = torch.tensor([prompt_ids[i]])
        else:
            o2, r2 = fit_texts(o, r, budget, enc, tok.decode)
            ids = tok.apply_chat_template(build_messages(template, o2, r2), add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)["input_ids"]
        ph = Phases(ids.shape[1])
        with torch.no_grad():
            out = m.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                             do_sample=False, stopping_criteria=StoppingCriteriaList([ph]), pad_token_id=tok.eos_token_id)
        end = time.perf_counter()
        gen = [x for x in out[0, ids.shape[1]:].tolist() if x not in eos]  # the engine does not count its EOG token
        counts.append(ids.shape[1])
        gtoks += len(gen)
        t_prompt += (ph.t or end) - t
        t_gen += end - (ph.t or end)
        per_row.append(end - t)
        text = clean_llm_output(tok.decode(gen), "")
        preds.append("" if is_echo(text, o, r) else text)
    name = "hf generate fp32, equal work" if equal else "hf generate fp32, raw"
    return _finish(name, t_load, sum(per_row), per_row, counts, sum(counts), gtoks, t_prompt, t_gen, preds)


def run_backend(name: str, model: str, data: str, rows: int, llm: dict, hf_dir: str | None = None,
                prompt_ids: list[list[int]] | None = None, cache_dir: str = "build/cache") -> dict:
    if name.startswith("llama"):
        if ":" in name:
            from ..predict.quantize import cached_requant

            model = str(cached_requant(model, name.split(":", 1)[1], cache_dir))
        fn, args = bench_llama, (model, data, rows, llm)
    else:
        if name == "hf" and prompt_ids is None:
            raise ValueError("backend hf (equal work) needs a llama backend first: it runs on the engine's token ids")
        fn, args = bench_hf, (model, data, rows, llm, hf_dir, prompt_ids if name == "hf" else None)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_child, args=(q, fn, args))
    proc.start()
    res = q.get()
    proc.join()
    res["backend"] = name
    res["model_file"] = Path(model).name
    return res


def _child(q, fn, args):
    try:
        q.put(fn(*args))
    except Exception as e:  # noqa: BLE001 - reported in the table, the other backend still runs
        q.put({"error": f"{type(e).__name__}: {e}"})
