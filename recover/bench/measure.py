"""Measure the real predict path per backend, each in its own process (clean peak RSS, threads).

llama:  recover's LlamaPredictor on llama.cpp; "llama:Q8_0" = the same weights requantized (cached,
        keyed by content).
torch:  recover's LlamaPredictor on its torch engine (bf16, rows batched; "torch:16" = 16 rows in flight, "torch"
        = the rows in flight this machine's CPU choice names, as `recover predict` runs it);
        torch-amp: the same with fp32 weights and bf16 matmuls (torch.autocast); torch-fp32: all fp32 (the
        faster one on a CPU whose bf16 GEMM is slower than its fp32 GEMM); torch-int8: int8 weights
        per channel, activations quantised per token (int8 x int8 matmuls, torch._int_mm).
hf:     PEERS, plain transformers `generate` (greedy, weights dequantised from the same GGUF) doing
        EQUAL work: fed the llama engine's own prompt token ids, stopped by the engine's rules (end-of-
        generation token, max new tokens, `blank_line_stop`). hf = fp32 row by row; hf-bf16 = bf16 row by
        row; hf-bf16-batch / hf-batch = bf16 / fp32, 8 rows per `generate` (left padding, rows sorted by
        length): fp32 is the faster peer on a CPU whose bf16 GEMM is slower than its fp32 one; ":24" = 24 rows
        per `generate` (fewer decode steps, more padding: on the AMX Xeon 0.4118 vs 0.4221 s/row for 8, 0.5177
        for 4, 24 rows of gemma_rewrites_a).
hf-raw: fp32, tokenized by HF and with no stop rule but EOS and the token limit: what a plain
        `generate` call does (the old, unequal figure, kept to show the difference).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path

from .. import constants as C
from ..csvio import read_test
from ..models.llama_engine import blank_line_stop
from ..models.llm import LlamaConfig, LlamaPredictor, is_echo
from ..models.postprocess import clean_llm_output
from ..models.prompting import build_messages, fit_texts, load_template
from ..models.quantize import cached_requant
from ..models.torch_engine import quiet_gguf_loading

BACKENDS = ("llama", "llama-native", "torch", "torch-amp", "torch-fp32", "torch-int8", "hf", "hf-bf16", "hf-bf16-batch", "hf-batch", "hf-raw")
ENGINES = ("llama", "torch", "torch-amp", "torch-fp32", "torch-int8")  # recover's own engines: the candidates for the CPU default
# a PEER too: llama.cpp built for this CPU (AVX-512, VNNI, BF16 on: `make llama-native`), loaded in its own process
# from its own folder, so the portable build the package ships stays the one `recover predict` serves
NATIVE = "llama-native"
PEERS = {"hf": ("fp32", 1), "hf-bf16": ("bf16", 1), "hf-bf16-batch": ("bf16", 8), "hf-batch": ("fp32", 8),
         "hf-raw": ("fp32", 1)}
TORCH_DTYPES = {"torch": "bf16", "torch-amp": "amp", "torch-fp32": "fp32", "torch-int8": "int8"}


def backend_dtype(name: str) -> str | None:
    """The precision a backend multiplies in (a torch engine's dtype, an hf peer's); None: llama.cpp's own kernels."""
    base = name.split(":")[0]
    return TORCH_DTYPES.get(base) or (PEERS[base][0] if base in PEERS else None)


# Before its timed rows every backend, ours and the peers alike, generates once for the first WARM_ROWS rows' prompts
# cut to half their length: one-time costs (compiled kernels, oneDNN primitives per shape, the allocator's first
# pages) stay out of the per-row figures. On 24 rows they were ~1 s of the torch engine's 5.7 (first call 0.2378
# s/row, the next rows 0.20); a 1,400-row run pays them once.
WARM_ROWS = 4


def warm_prompts(prompt_ids: list[list[int]]) -> list[list[int]]:
    return [ids[: max(2, len(ids) // 2)] for ids in prompt_ids[:WARM_ROWS]]


def _rows(data: str, n: int) -> tuple[list[str], list[str]]:
    df = read_test(data).head(n)
    return list(df[C.COL_ORIGINAL]), list(df[C.COL_REWRITTEN])  # read_test cleaned them


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
    originals, rewrites = _rows(data, rows)
    t0 = time.perf_counter()
    p = LlamaPredictor(LlamaConfig(model=model, **llm))
    t_load = time.perf_counter() - t0
    ids = [p.build_prompt_tokens(o, r) for o, r in zip(originals, rewrites)]  # what predict_batch builds
    p.engine.generate(warm_prompts(ids), p.cfg.max_new_tokens)
    s = p.engine.stats
    base = (s.prompt_tokens, s.gen_tokens, s.t_prompt, s.t_gen, s.gen_steps)  # the head at load, the warm-up
    kv_base = (s.gen_kv_bytes, s.gen_kv_read_bytes)
    per_row, preds, step = [], [], p.chunk_rows  # as `recover predict` feeds it: chunk_rows rows per call
    for i in range(0, len(originals), step):
        t = time.perf_counter()
        preds += p.predict_batch(originals[i:i + step], rewrites[i:i + step])
        n = len(originals[i:i + step])
        per_row += [(time.perf_counter() - t) / n] * n
    torch_engine = p.cfg.engine == "torch"
    out = _finish(f"recover engine: {p.cfg.engine}", t_load, sum(per_row), per_row, [len(x) for x in ids],
                  s.prompt_tokens - base[0], s.gen_tokens - base[1], s.t_prompt - base[2], s.t_gen - base[3], preds)
    e = p.engine
    n_params = e.n_params if torch_engine else e.model.n_params()
    body = e.body_params if torch_engine else n_params - e.model.n_vocab() * e.model.n_embd()
    if torch_engine:  # the keys and values its decode steps needed and read (llama.cpp's engine does not count them)
        out.update(gen_kv_bytes=s.gen_kv_bytes - kv_base[0], gen_kv_read_bytes=s.gen_kv_read_bytes - kv_base[1])
    out.update(prompt_ids=ids, n_params=n_params, file_bytes=Path(model).stat().st_size, body_params=body,
               weight_bytes=e.weight_bytes if torch_engine else Path(model).stat().st_size, gen_steps=s.gen_steps - base[4],
               model_desc="torch " + p.engine.dtype if torch_engine else p.engine.model.desc(),
               torch_dtype=p.engine.dtype if torch_engine else None,
               max_new_tokens=p.cfg.max_new_tokens, engine=p.cfg.engine, n_seq=p.cfg.n_seq,
               llama_cpp=str(Path(__import__("llama_cpp").__file__).parent))
    p.engine.close()
    return out


def _load_hf(model: str, hf_dir: str | None, dtype: str):
    """-> (tokenizer, model in dtype, load seconds, end-token ids): the GGUF's weights through transformers."""
    import torch  # torch, transformers: heavy, optional extras
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_gguf_loading()  # no "de-quantizing GGUF tensors" bars in the bench's log
    t0 = time.perf_counter()
    kw = {"gguf_file": Path(model).name} if not hf_dir else {}
    src = hf_dir or str(Path(model).parent)
    tok = AutoTokenizer.from_pretrained(src, **kw)
    m = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, **kw).eval().to(
        torch.bfloat16 if dtype == "bf16" else torch.float32)
    eos = set(m.generation_config.eos_token_id if isinstance(m.generation_config.eos_token_id, list)
              else [m.generation_config.eos_token_id or tok.eos_token_id])
    return tok, m, time.perf_counter() - t0, eos


def _phases(tok, eos: set, equal: bool):
    """A stopping criterion that records when prefill + the first token are done and applies the engine's
    stop rule (end token; at equal work also a blank line after content)."""
    import torch  # torch, transformers: heavy, optional extras
    from transformers import StoppingCriteria

    class Phases(StoppingCriteria):
        def __init__(self, n_in):
            self.n_in, self.t = n_in, None

        def __call__(self, input_ids, scores, **kwargs):
            self.t = self.t or time.perf_counter()
            stop = []
            for row in input_ids[:, self.n_in:].tolist():
                gen = [t for t in row if t not in eos]
                stop.append(len(gen) < len(row) or (equal and blank_line_stop(tok.decode(gen))))
            return torch.tensor(stop, dtype=torch.bool)
    return Phases


def bench_hf(model: str, data: str, rows: int, llm: dict, hf_dir: str | None = None,
             prompt_ids: list[list[int]] | None = None, dtype: str = "fp32", batch: int = 1) -> dict:
    """prompt_ids given: equal work (the engine's ids and stop rules); None: a plain `generate`.
    batch > 1: that many rows per `generate` (left padding, rows sorted by length), equal work only."""
    import torch  # torch, transformers: heavy, optional extras
    from transformers import StoppingCriteriaList

    originals, rewrites = _rows(data, rows)
    tok, m, t_load, eos = _load_hf(model, hf_dir, dtype)
    max_new = llm.get("max_new_tokens", 32)
    equal = prompt_ids is not None
    if batch > 1 and not equal:
        raise ValueError("batched hf runs only at equal work (on the engine's ids)")
    Phases = _phases(tok, eos, equal)
    n = len(originals)
    order = sorted(range(n), key=lambda j: len(prompt_ids[j])) if batch > 1 else list(range(n))
    per_row, counts, gen_counts, t_prompt, t_gen, preds = [0.0] * n, [0] * n, 0, 0.0, 0.0, [""] * n
    steps = 0
    pad = tok.eos_token_id if tok.eos_token_id is not None else 0
    if equal:  # the warm-up every backend makes (WARM_ROWS), batched as the timed rows are
        warm = warm_prompts(prompt_ids)
        for k in range(0, len(warm), batch):
            ids, mask = _hf_inputs(tok, range(k, min(k + batch, len(warm))), warm, pad, llm, max_new, [], [])
            with torch.no_grad():
                m.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                           stopping_criteria=StoppingCriteriaList([Phases(ids.shape[1])]), pad_token_id=pad)
    for k in range(0, n, batch):
        chunk = order[k:k + batch]
        t = time.perf_counter()
        ids, mask = _hf_inputs(tok, chunk, prompt_ids, pad, llm, max_new, originals, rewrites)
        ph = Phases(ids.shape[1])
        with torch.no_grad():
            out = m.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                             stopping_criteria=StoppingCriteriaList([ph]), pad_token_id=pad)
        end = time.perf_counter()
        steps += out.shape[1] - ids.shape[1]  # one forward per generated position, for the whole batch
        t_prompt += (ph.t or end) - t
        t_gen += end - (ph.t or end)
        for b, j in enumerate(chunk):
            gen = []
            for x in out[b, ids.shape[1]:].tolist():  # up to the first end token: the engine does not count it
                if x in eos:
                    break
                gen.append(x)
            counts[j] = int(mask[b].sum())
            gen_counts += len(gen)
            per_row[j] = (end - t) / len(chunk)
            text = clean_llm_output(tok.decode(gen), "")
            preds[j] = "" if is_echo(text, originals[j], rewrites[j]) else text
    name = f"hf generate {dtype}" + (f", {batch} rows/batch" if batch > 1 else "") + (", equal work" if equal else ", raw")
    res = _finish(name, t_load, sum(per_row), per_row, counts, sum(counts), gen_counts, t_prompt, t_gen, preds)
    n_params = sum(x.numel() for x in m.parameters())
    res.update(n_params=n_params, body_params=n_params - m.config.vocab_size * m.config.hidden_size, gen_steps=steps,
               weight_bytes=n_params * (2 if dtype == "bf16" else 4))
    return res


def _hf_inputs(tok, chunk, prompt_ids, pad: int, llm: dict, max_new: int, originals, rewrites):
    """(input ids, attention mask) of one generate call: the engine's ids left-padded (equal work), or the
    row's prompt built by transformers' own chat template (raw)."""
    import torch  # torch: heavy, optional extra

    if prompt_ids is not None:
        width = max(len(prompt_ids[j]) for j in chunk)
        ids = torch.tensor([[pad] * (width - len(prompt_ids[j])) + prompt_ids[j] for j in chunk])
        mask = torch.tensor([[0] * (width - len(prompt_ids[j])) + [1] * len(prompt_ids[j]) for j in chunk])
        return ids, mask
    template, budget = load_template(llm.get("template")), llm.get("n_ctx", 1024) - max_new - 80
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    o2, r2 = fit_texts(originals[chunk[0]], rewrites[chunk[0]], budget, enc, tok.decode)
    ids = tok.apply_chat_template(build_messages(template, o2, r2), add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    return ids, torch.ones_like(ids)


def native_dir() -> Path:
    """Where `make llama-native` installs llama-cpp-python built for this CPU ($RECOVER_LLAMA_NATIVE to override)."""
    return Path(os.environ.get("RECOVER_LLAMA_NATIVE") or Path.home() / ".cache" / "recover-wheels" / C.LLAMA_NATIVE_NAME / "site")


def run_backend(name: str, model: str, data: str, rows: int, llm: dict, hf_dir: str | None = None,
                prompt_ids: list[list[int]] | None = None, cache_dir: str = "build/cache") -> dict:
    path = None
    if name.split(":")[0] == NATIVE:
        path = native_dir()
        if not (path / "llama_cpp").is_dir():
            return {"error": f"no llama.cpp built for this CPU in {path}: make llama-native", "backend": name}
    if name.startswith("llama"):
        if ":" in name:
            model = str(cached_requant(model, name.split(":", 1)[1], cache_dir))
        fn, args = bench_llama, (model, data, rows, {**llm, "engine": "llama"})
    elif name.startswith("torch"):
        n_seq = int(name.split(":", 1)[1]) if ":" in name else None  # None: this machine's choice, else TORCH_ROWS
        dtype = backend_dtype(name)
        fn, args = bench_llama, (model, data, rows, {**llm, "engine": "torch", "n_seq": n_seq, "torch_dtype": dtype})
    else:
        equal = name != "hf-raw"
        if equal and prompt_ids is None:
            raise ValueError(f"backend {name} (equal work) needs a llama backend first: it runs on the engine's token ids")
        dtype, batch = PEERS[name.split(":")[0]]
        batch = int(name.split(":", 1)[1]) if ":" in name else batch  # hf-bf16-batch:24: 24 rows per generate
        fn, args = bench_hf, (model, data, rows, llm, hf_dir, prompt_ids if equal else None, dtype, batch)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_child, args=(q, fn, args, str(path) if path else None))
    proc.start()
    res = q.get()
    proc.join()
    res["backend"] = name
    res["model_file"] = Path(model).name
    return res


def _child(q, fn, args, path: str | None = None):
    try:
        if path:  # this process imports llama_cpp from the native build's folder, not the venv's
            sys.path.insert(0, path)
        q.put(fn(*args))
    except Exception as e:  # noqa: BLE001 - reported in the table, the other backend still runs
        q.put({"error": f"{type(e).__name__}: {e}"})
