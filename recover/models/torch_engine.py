"""The CPU engine: the GGUF's weights in torch, batched rows, the llama.cpp engine's own tokens.

Why: on an AVX-512 CPU torch evaluates prompts several times faster than the portable llama.cpp build of
the same model (`recover bench`, docs/benchmarks.md), and prompt evaluation is ~95% of this task's
tokens. llama.cpp stays the GPU (Kaggle) engine. The precision is measured per machine, not assumed (`make
bench-cpu`, models/cpu_choice.py): bf16 where the CPU's bf16 GEMM is fast (AMX), fp32 where it is not (the
avx512_bf16 Xeon without AMX: fp32 GEMM ~340 GFLOP/s, bf16 110-190), int8 x int8 matmuls as an option.

Equal work by construction: tokens come from llama.cpp itself (a vocab-only load of the same GGUF),
so the prompt ids are exactly the llama engine's; the stop rules are the llama engine's (`_trim`
replays them on each row's tokens); the weights are the GGUF's, dequantised by transformers, with
a GGUF LoRA adapter merged in (W += alpha/r * B @ A, as llama.cpp applies it at scale 1).
Rows of similar length are batched (padding masked out); the instruction head every row shares is
evaluated once and its KV cache copied into each batch (~15% of a row's prompt tokens, as the llama
engine's sequence 0), so one row's k samples cost one prompt evaluation. The forward is recover's own
(models/torch_lm.py: fused matmuls, a KV cache allocated once per batch, no `generate`): it matches
transformers' to ~1e-4 logits in fp32 (tests/test_torch_engine.py) at a fraction of the per-step cost.
"""
from __future__ import annotations

import functools
import time
from collections import deque
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import constants as C
from ..cpus import claim_cpus, keep_freed_memory, usable_cpus
from .llama_engine import EngineStats, GGUFTokens, blank_line_stop, check_gguf
from .sampling import nucleus

# The weights' load dtype per --torch-dtype. bf16: weights and activations in bf16. amp: fp32 weights, matmuls
# in bf16 under torch.autocast (norms, softmax and the residual stream stay fp32). int8: loaded fp32, then
# quantised per output channel by models/torch_lm.py (Int8Weight), the rest of the forward in bf16.
DTYPES = {d: "bfloat16" if d == "bf16" else "float32" for d in C.TORCH_DTYPES}


def quiet_gguf_loading() -> None:
    """transformers' per-tensor GGUF bar ignores its own progress-bar switch: seconds of noise in every log."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils  # transformers: heavy, optional extra

    gguf_utils.tqdm = functools.partial(tqdm, disable=True)


def cache_gguf_name_maps() -> None:
    """transformers rebuilds gguf's tensor-name table once per submodule it visits (~400 times, ~5 s a load for
    SmolLM2); the table depends only on (architecture, blocks) and is read-only: build each once."""
    import gguf  # gguf: optional extra (the model stack)
    from gguf import tensor_mapping

    if not hasattr(gguf.get_tensor_name_map, "cache_info"):
        gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(tensor_mapping.get_tensor_name_map)


def load_hf_from_gguf(model_path: str, dtype: str = "bf16", lora_path: str | None = None):
    """transformers' GGUF loader (dequantises every tensor) + the adapter merged, in `dtype`."""
    import torch  # torch, transformers: heavy, optional extras
    from transformers import AutoModelForCausalLM

    quiet_gguf_loading()
    cache_gguf_name_maps()
    p = Path(model_path)
    m = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, dtype=torch.float32).eval()
    if lora_path:
        merge_gguf_lora(m, lora_path)
    return m.to(getattr(torch, DTYPES[dtype]))  # amp keeps fp32 weights: autocast casts per matmul


def merge_gguf_lora(model, lora_path: str, scale: float = 1.0) -> int:
    """Merge a llama.cpp LoRA adapter (GGUF, as convert_lora_to_gguf writes it) into an HF model in place.
    -> the number of weight matrices changed. llama.cpp permutes the rows of Q and K for the llama
    architecture (rotary layout), so their B matrices are un-permuted as transformers does the weights."""
    import torch  # torch, gguf, transformers: heavy, optional extras
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from transformers.modeling_gguf_pytorch_utils import TensorProcessor, get_gguf_hf_weights_map

    cache_gguf_name_maps()
    r = GGUFReader(lora_path)
    if str(r.fields["general.type"].contents()) != "adapter":
        raise ValueError(f"{lora_path}: not a LoRA adapter GGUF (general.type is not 'adapter')")
    alpha = float(r.fields["adapter.lora.alpha"].contents()) if "adapter.lora.alpha" in r.fields else None
    names = get_gguf_hf_weights_map(model, TensorProcessor())
    arrays = {t.name: dequantize(t.data, t.tensor_type).astype(np.float32) for t in r.tensors}
    params = dict(model.named_parameters())
    cfg = model.config
    changed = 0
    for name, a in arrays.items():
        if not name.endswith(".lora_a"):
            continue
        base = name[: -len(".lora_a")]
        b = arrays[base + ".lora_b"]  # (out, r); a: (r, in)
        hf = names.get(base)
        if hf not in params:
            raise ValueError(f"{lora_path}: tensor {base} has no counterpart in the model ({hf})")
        if getattr(cfg, "model_type", "") == "llama" and (".attn_q." in base or ".attn_k." in base):
            heads = cfg.num_attention_heads if ".attn_q." in base else cfg.num_key_value_heads
            b = _unpermute(b, heads)
        w = params[hf]
        if (b.shape[0], a.shape[1]) != tuple(w.shape):
            raise ValueError(f"{lora_path}: {base} delta {(b.shape[0], a.shape[1])} does not fit {hf} {tuple(w.shape)}")
        with torch.no_grad():  # in place, in torch: numpy's b @ a plus a temporary took ~3x as long
            w.addmm_(torch.from_numpy(np.ascontiguousarray(b)).to(w.dtype), torch.from_numpy(a).to(w.dtype),
                     alpha=scale * (alpha / a.shape[0] if alpha else 1.0))
        changed += 1
    if not changed:
        raise ValueError(f"{lora_path}: no LoRA tensor pairs found")
    return changed


def _unpermute(x: np.ndarray, n_head: int) -> np.ndarray:
    dim = x.shape[0] // n_head // 2
    return x.reshape(n_head, dim, 2, *x.shape[1:]).swapaxes(2, 1).reshape(x.shape)


# Tokens (padding included) prefilled in one forward: rows enter together up to this many, so each matmul of a
# prefill has M ~ PREFILL_TOKENS rows. On the AMX Xeon bf16 GEMMs reach 2.3-2.9 TFLOP/s from M = 1,024 to 2,400
# and fall again at 8,192 for the gate/up shape (1.15); 24 rows (`make experiment NAME=engine_batch`, bf16, 24 in
# flight): 2,048 -> 0.2354 s/row, 4,096 -> 0.2516, 8,192 -> 0.2876. On the earlier non-AMX CPU groups above ~2,400
# tokens ran slower per token too (activations leave the caches).
PREFILL_TOKENS = 2048


class TorchEngine(GGUFTokens):
    """LlamaEngine's interface (tokenize, set_head, generate, reseed, stats, close) on torch."""

    def __init__(self, model_path: str, *, n_ctx_row: int, n_seq: int, seed: int, n_threads: int | None = None,
                 lora_path: str | None = None, dtype: str | None = None, **_llama_only):
        import llama_cpp  # llama_cpp, torch (and torch_lm, which imports it): heavy, optional extras
        import torch
        from llama_cpp import _internals
        from llama_cpp._logger import set_verbose

        from .torch_lm import FusedLM

        check_gguf(model_path)
        dtype = dtype or "bf16"
        if dtype not in DTYPES:
            raise ValueError(f"torch engine dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
        set_verbose(False)
        self._ll = llama_cpp
        llama_cpp.llama_backend_init()
        mp = llama_cpp.llama_model_default_params()
        mp.vocab_only = True  # tokens and metadata only: the weights live in torch
        self.model = _internals.LlamaModel(path_model=model_path, params=mp, verbose=False)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model.model)
        self.metadata = self.model.metadata()
        self.n_vocab = self.model.n_vocab()
        self.eog = [t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self.vocab, t)]
        self._eog = set(self.eog)
        # tokens that write a newline: only after one can the blank-line stop rule fire (checked per step)
        self._newline = {t for t in range(self.n_vocab) if "\n" in self.detokenize([t])}
        if not n_threads:
            claim_cpus()
        keep_freed_memory()
        torch.set_num_threads(n_threads or usable_cpus())
        self.n_seq, self.n_ctx_row, self.seed, self.dtype = max(1, n_seq), n_ctx_row, seed, dtype
        self.head: list[int] = []
        self._head_cache = None
        self.stats = EngineStats()
        self._job_gens = None  # per-prompt generators while generate() samples with seeds
        self.reseed(seed)
        amp = self._amp()  # the autocast every forward runs under (amp only): the warm-up compiles under it too
        hf = load_hf_from_gguf(model_path, dtype, lora_path)
        self.n_params = sum(x.numel() for x in hf.parameters())
        cfg = getattr(hf.config, "text_config", hf.config)
        self.body_params = self.n_params - cfg.vocab_size * cfg.hidden_size  # the tied embedding counted once
        # bytes one decode step reads: every weight once, in the format the forward computes from
        self.weight_bytes = self.n_params * {"bf16": 2, "int8": 1}.get(dtype, 4)
        self.lm = FusedLM(hf, "int8" if dtype == "int8" else getattr(torch, DTYPES[dtype]))
        # bytes one cached token's keys and values take over all layers: at 24 rows of ~450 tokens a decode step
        # must read about as many of them as of weights (`recover bench` counts both)
        self.kv_token_bytes = 2 * len(self.lm.layers) * self.lm.n_kv * self.lm.head_dim * self.lm.kv_dtype.itemsize
        del hf  # the fused copies hold every weight the forward reads
        with amp:
            self.lm.warm()

    def reseed(self, seed: int) -> None:
        import torch  # torch: heavy, optional extra

        self._gen = torch.Generator().manual_seed(seed)

    def _amp(self):
        import torch  # torch: heavy, optional extra

        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.dtype == "amp")

    def set_head(self, tokens: list[int]) -> None:
        """Evaluate the instruction head every row shares once; each batch starts from a copy of its KV
        cache (the llama engine does the same with its sequence 0): ~15% of a row's prompt tokens."""
        import torch  # torch: heavy, optional extra

        self.head, self._head_cache = list(tokens), None
        if len(self.head) > 1:
            with torch.no_grad(), self._amp():
                self._head_cache = self.lm.head(self.head[:-1])

    def sequence_logits(self, tokens: list[int]):
        """Every position's next-token logits (len, vocab) of one sequence, without the head cache (tests,
        teacher forcing)."""
        with self._amp():
            return self.lm.sequence(list(tokens), last="all")[1][0]

    def generate(self, prompts: list[list[int]], max_new_tokens: int, temperature: float = 0.0,
                 stop_on_blank_line: bool = True, top_p: float = 1.0,
                 deadline: float | None = None, seeds: list[int] | None = None) -> list[str | None]:
        """The generated text per prompt (None: not finished by `deadline`, time.monotonic()). Continuous
        batching, as the llama engine does it: n_seq slots decode together, rows enter shortest first, and a
        slot whose row has stopped takes the next row at once (rows enter in groups of n_seq / 4 up to
        PREFILL_TOKENS, so each prefill is one matmul-sized batch); the llama engine's stop rules, row by row.
        `seeds` (sampling): one per prompt, each sampled from its own generator, so what a prompt draws does not
        depend on which prompts share its batch (the engine's one generator otherwise, reseed())."""
        import torch  # torch: heavy, optional extra

        n = len(prompts)
        if seeds is not None and len(seeds) != n:
            raise ValueError(f"{len(seeds)} seeds for {n} prompts")
        self._job_gens = None if seeds is None else [torch.Generator().manual_seed(int(x)) for x in seeds]
        self._out: list[str | None] = [None] * n
        self.confidence: list[float | None] = [None] * n  # mean log-prob of each row's sampled tokens
        if not n:
            return self._out
        width = max(len(p) for p in prompts)
        if width > self.n_ctx_row + len(self.head):
            raise ValueError(f"prompt of {width} tokens exceeds the context")
        h = self._shared_head(prompts)
        queue = deque(sorted(range(n), key=lambda j: len(prompts[j])))  # similar lengths: little padding
        B = min(self.n_seq, n)
        self._slots = {"job": [None] * B, "gen": [[] for _ in range(B)], "lp": [[] for _ in range(B)]}
        job = self._slots["job"]
        pos, tok = torch.zeros(B, dtype=torch.long), torch.zeros(B, dtype=torch.long)
        late = lambda: deadline is not None and time.monotonic() >= deadline  # noqa: E731
        with torch.no_grad(), self._amp():
            # sized for the shortest rows first, grown as longer ones enter (`_grow`): a decode step reads all of it
            cache = self.lm.decode_cache(B, len(prompts[queue[min(B, n) - 1]]) + max_new_tokens)
            while queue or any(j is not None for j in job):
                free = [s for s in range(B) if job[s] is None]
                if queue and free and len(free) >= min(max(1, B // 4), len(queue)):
                    if late():
                        break
                    self._enter(cache, h, prompts, queue, free, pos, tok, max_new_tokens, temperature, top_p,
                                stop_on_blank_line)
                    continue
                if late():
                    break
                if not queue:  # the tail: fewer rows left than slots
                    cache, pos, tok, B = self._compact(cache, pos, tok)
                    job = self._slots["job"]
                t0 = time.perf_counter()
                logits = self.lm.decode(cache, tok, pos)
                nxt, lp = self._choose(logits, temperature, top_p, job)
                self.stats.t_gen += time.perf_counter() - t0
                self.stats.decode_calls += 1
                self.stats.gen_steps += 1
                live = [s for s in range(B) if job[s] is not None]
                self._count_kv(cache, pos, live)
                for s, t, p in zip(live, nxt[live].tolist(), lp[live].tolist()):
                    self._advance(s, t, p, max_new_tokens, stop_on_blank_line)
                tok[live] = nxt[live]
                pos[live] += 1
        return self._out

    def _enter(self, cache, h, prompts, queue, free, pos, tok, max_new_tokens, temperature, top_p, blank) -> None:
        """The next rows into the free slots: prefilled together, their first token chosen. Equal prompts (one
        row sampled k times; the stable length sort keeps them adjacent) are evaluated once and fanned out."""
        take, rows, src = [], [], []
        while queue and len(take) < len(free):
            j = queue[0]
            new = not rows or prompts[j] != rows[-1]
            if take and new and (len(rows) + 1) * (len(prompts[j]) - h) > PREFILL_TOKENS:
                break  # sorted by length: the row taken last is the longest
            take.append(queue.popleft())
            if new:
                rows.append(prompts[j])
            src.append(len(rows) - 1)
        slots = free[:len(take)]
        t0 = time.perf_counter()
        self._grow(cache, max(len(r) for r in rows) + max_new_tokens)
        logits = self.lm.prefill(cache, self._head_cache if h else None, [r[h:] for r in rows], slots, src)
        nxt, lp = self._choose(logits, temperature, top_p, take)
        s = self.stats
        s.t_prompt += time.perf_counter() - t0
        s.prompt_tokens += sum(len(r) - h for r in rows)
        s.cached_tokens += h * len(take)
        s.per_job_prompt += [len(prompts[j]) for j in take]
        for slot, j, t, p in zip(slots, take, nxt.tolist(), lp.tolist()):
            self._slots["job"][slot], self._slots["gen"][slot], self._slots["lp"][slot] = j, [], []
            pos[slot], tok[slot] = len(prompts[j]), t  # the first generated token sits right after the prompt
            self._advance(slot, t, p, max_new_tokens, blank)

    def _count_kv(self, cache, pos, live: list[int]) -> None:
        """A decode step's key/value bytes: needed (each live row's tokens up to the one just written) and read
        (the step reads every slot's whole cache, `FusedLM.decode`)."""
        self.stats.gen_kv_bytes += (int(pos[live].sum()) + len(live)) * self.kv_token_bytes
        self.stats.gen_kv_read_bytes += cache[0][0].shape[0] * cache[0][0].shape[2] * self.kv_token_bytes

    def _grow(self, cache: list, need: int) -> None:
        """Make the decode cache at least `need` positions long, in place (by 25% at a time at least): a decode
        step reads the whole cache as one contiguous view, so it is kept as short as the rows in it allow."""
        import torch  # torch: heavy, optional extra

        L = cache[0][0].shape[2]
        if need <= L:
            return
        new_len = max(need, L + L // 4)
        for i, (kc, vc) in enumerate(cache):
            shape = (*kc.shape[:2], new_len, kc.shape[3])
            k2, v2 = torch.zeros(shape, dtype=kc.dtype), torch.zeros(shape, dtype=vc.dtype)
            k2[:, :, :L], v2[:, :, :L] = kc, vc
            cache[i] = (k2, v2)

    def _compact(self, cache, pos, tok):
        """Once no row waits, drop the stopped rows' slots when they are a quarter of the batch or more: a decode
        step's attention reads every slot's cache, finished or not (24 rows, 594 keys: 76 ms a step; the same
        step for 12 rows 57 ms), so the tail's few long answers no longer pay for the rows already done. In place:
        each kept slot's cells move down to the first free slot (slots only move down, so none is overwritten
        before it moved) and the cache becomes its first rows, still one contiguous block per layer; a copy into
        new tensors took 0.17 s a compaction on fresh pages. -> (cache, pos, tok, batch size)."""
        st, B = self._slots, len(pos)
        keep = [s for s in range(B) if st["job"][s] is not None]
        if not keep or 4 * (B - len(keep)) < B:
            return cache, pos, tok, B
        for new, old in enumerate(keep):
            if new != old:
                for kc, vc in cache:
                    kc[new].copy_(kc[old])
                    vc[new].copy_(vc[old])
        n = len(keep)
        for key in ("job", "gen", "lp"):
            st[key] = [st[key][s] for s in keep]
        return [(kc[:n], vc[:n]) for kc, vc in cache], pos[keep], tok[keep], n

    def _shared_head(self, prompts) -> int:
        """Tokens of the cached head every prompt opens with (less its last, so each row evaluates one)."""
        h = len(self.head) - 1 if self._head_cache is not None else 0
        return h if h > 0 and all(len(p) > h and p[:h] == self.head[:h] for p in prompts) else 0

    def _advance(self, slot: int, tok: int, lp: float, max_new_tokens: int, blank: bool) -> None:
        """One sampled token into a slot; a row that stops here gives its text and frees the slot."""
        st = self._slots
        gen, lps = st["gen"][slot], st["lp"][slot]
        if self._take(gen, lps, tok, lp, max_new_tokens, blank):
            return
        j = st["job"][slot]
        self._out[j], self.confidence[j] = self.detokenize(gen), float(np.mean(lps))
        self.stats.gen_tokens += len(gen)
        self.stats.per_job_gen.append(len(gen))
        st["job"][slot] = None

    def _take(self, gen: list[int], lps: list[float], tok: int, lp: float, max_new_tokens: int,
              stop_on_blank_line: bool) -> bool:
        """The llama engine's `_step` on one row: record the sampled token -> whether the row goes on."""
        lps.append(lp)
        if tok in self._eog:
            return False
        gen.append(tok)
        if len(gen) >= max_new_tokens:
            return False
        return not (stop_on_blank_line and tok in self._newline and blank_line_stop(self.detokenize(gen)))

    def _choose(self, logits, temperature: float, top_p: float, jobs: list):
        """(next token per row, its log-prob under the raw logits): greedy, or sampled as the llama engine
        samples (temperature, then top-p; no top-k). `jobs`: the prompt of each logits row (None: a free slot),
        whose own generator draws it when generate() was given seeds. A draw is one uniform number per row
        mapped through the candidates' cumulative mass: torch.multinomial over the vocabulary, and a sort of it
        for top-p, cost more than the decode step they follow (24 rows x 49,152 tokens, 2-core EPYC, timed beside a
        compile: 130 and 200 ms)."""
        import torch  # torch: heavy, optional extra

        logp = torch.log_softmax(logits, dim=-1)
        if temperature <= 0:
            tok = logits.argmax(-1)
        else:
            p, idx = nucleus(torch.softmax(logits / temperature, dim=-1), top_p)
            c = p.cumsum(-1)
            tot = c[:, -1]
            u = torch.minimum(self._uniforms(jobs) * tot, torch.nextafter(tot, torch.zeros_like(tot)))
            # right=True below a row's total: the first candidate whose cumulative mass passes u, so one whose
            # probability is above 0 (never a token outside the nucleus)
            pick = torch.searchsorted(c, u[:, None], right=True)
            tok = pick[:, 0] if idx is None else idx.gather(-1, pick)[:, 0]
        return tok, logp.gather(-1, tok[:, None])[:, 0]

    def _uniforms(self, jobs: list):
        """One U[0, 1) draw per logits row: from the engine's generator, or from each prompt's own (a free slot
        draws nothing: no generator moves for it)."""
        import torch  # torch: heavy, optional extra

        if self._job_gens is None:
            return torch.rand(len(jobs), generator=self._gen, dtype=torch.float64).float()
        return torch.tensor([0.0 if j is None else float(torch.rand((), generator=self._job_gens[j],
                                                                      dtype=torch.float64)) for j in jobs])

    def close(self) -> None:
        self.lm = None
        self.model.close()
