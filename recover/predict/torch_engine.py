"""The CPU engine: the GGUF's weights in torch bf16, batched rows, the llama.cpp engine's own tokens.

Why: on a CPU with bf16 hardware (AMX / AVX512_BF16) torch bf16 evaluates prompts several times
faster than the best llama.cpp build of the same model (`recover bench`, README "CPU engine"), and
prompt evaluation is ~95% of this task's tokens. llama.cpp stays the GPU (Kaggle) engine.

Equal work by construction: tokens come from llama.cpp itself (a vocab-only load of the same GGUF),
so the prompt ids are exactly the llama engine's; the stop rules are the llama engine's (`_trim`
replays them on each row's tokens); the weights are the GGUF's, dequantised by transformers, with
a GGUF LoRA adapter merged in (W += alpha/r * B @ A, as llama.cpp applies it at scale 1).
Rows of similar length are batched (padding masked out); the instruction head every row shares is
evaluated once and its KV cache copied into each batch (~15% of a row's prompt tokens, as the llama
engine's sequence 0), so one row's k samples cost one prompt evaluation.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..cpus import claim_cpus, usable_cpus
from .llama_engine import EngineStats, GGUFTokens, blank_line_stop, check_gguf

# bf16: weights and activations in bf16. amp: fp32 weights, matmuls in bf16 under torch.autocast (norms,
# softmax and the residual stream stay fp32).
DTYPES = {"bf16": "bfloat16", "fp32": "float32", "amp": "float32"}


def quiet_gguf_loading() -> None:
    """transformers' per-tensor GGUF bar ignores its own progress-bar switch: seconds of noise in every log."""
    import functools

    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from tqdm.auto import tqdm

    gguf_utils.tqdm = functools.partial(tqdm, disable=True)


def load_hf_from_gguf(model_path: str, dtype: str = "bf16", lora_path: str | None = None):
    """transformers' GGUF loader (dequantises every tensor) + the adapter merged, in `dtype`."""
    import torch
    from transformers import AutoModelForCausalLM

    quiet_gguf_loading()
    p = Path(model_path)
    m = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, dtype=torch.float32).eval()
    if lora_path:
        merge_gguf_lora(m, lora_path)
    return m.to(getattr(torch, DTYPES[dtype]))  # amp keeps fp32 weights: autocast casts per matmul


def merge_gguf_lora(model, lora_path: str, scale: float = 1.0) -> int:
    """Merge a llama.cpp LoRA adapter (GGUF, as convert_lora_to_gguf writes it) into an HF model in place.
    -> the number of weight matrices changed. llama.cpp permutes the rows of Q and K for the llama
    architecture (rotary layout), so their B matrices are un-permuted as transformers does the weights."""
    import torch
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from transformers.modeling_gguf_pytorch_utils import TensorProcessor, get_gguf_hf_weights_map

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
        delta = torch.from_numpy(b @ a) * (scale * (alpha / a.shape[0] if alpha else 1.0))
        if tuple(delta.shape) != tuple(w.shape):
            raise ValueError(f"{lora_path}: {base} delta {tuple(delta.shape)} does not fit {hf} {tuple(w.shape)}")
        with torch.no_grad():
            w.add_(delta.to(w.dtype))
        changed += 1
    if not changed:
        raise ValueError(f"{lora_path}: no LoRA tensor pairs found")
    return changed


def _unpermute(x: np.ndarray, n_head: int) -> np.ndarray:
    dim = x.shape[0] // n_head // 2
    return x.reshape(n_head, dim, 2, *x.shape[1:]).swapaxes(2, 1).reshape(x.shape)


class TorchEngine(GGUFTokens):
    """LlamaEngine's interface (tokenize, set_head, generate, reseed, stats, close) on torch."""

    def __init__(self, model_path: str, *, n_ctx_row: int, n_seq: int, seed: int, n_threads: int | None = None,
                 lora_path: str | None = None, dtype: str | None = None, **_llama_only):
        import llama_cpp
        import torch
        from llama_cpp import _internals
        from llama_cpp._logger import set_verbose

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
        torch.set_num_threads(n_threads or usable_cpus())
        self.n_seq, self.n_ctx_row, self.seed, self.dtype = max(1, n_seq), n_ctx_row, seed, dtype
        self.hf = load_hf_from_gguf(model_path, dtype, lora_path)
        self.head: list[int] = []
        self._head_cache = None
        self.stats = EngineStats()
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        import torch

        self._gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)  # generate() samples from the global generator

    def set_head(self, tokens: list[int]) -> None:
        """Evaluate the instruction head every row shares once; each batch starts from a copy of its KV
        cache (the llama engine does the same with its sequence 0): ~15% of a row's prompt tokens."""
        import torch

        self.head, self._head_cache = list(tokens), None
        if len(self.head) > 1:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.dtype == "amp"):
                self._head_cache = self.hf(torch.tensor([self.head[:-1]]), use_cache=True).past_key_values

    def generate(self, prompts: list[list[int]], max_new_tokens: int, temperature: float = 0.0,
                 stop_on_blank_line: bool = True, top_p: float = 1.0,
                 deadline: float | None = None) -> list[str | None]:
        outputs: list[str | None] = [None] * len(prompts)
        self.confidence: list[float | None] = [None] * len(prompts)  # mean log-prob of each row's sampled tokens
        order = sorted(range(len(prompts)), key=lambda j: len(prompts[j]))  # similar lengths: little padding
        for start in range(0, len(order), self.n_seq):
            if deadline is not None and time.monotonic() >= deadline:
                return outputs  # rows not started stay None: the runner gives them the fallback in time
            chunk = order[start:start + self.n_seq]
            rows, lps = self._generate_batch([prompts[j] for j in chunk], max_new_tokens, temperature, top_p,
                                             stop_on_blank_line)
            for j, toks, lp in zip(chunk, rows, lps):
                outputs[j], used = self._trim(toks, max_new_tokens, stop_on_blank_line)
                self.confidence[j] = float(np.mean(lp[:max(1, used)]))
        return outputs

    def _generate_batch(self, prompts, max_new_tokens, temperature, top_p, stop_on_blank_line) -> list[list[int]]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        width = max(len(p) for p in prompts)
        if width > self.n_ctx_row + len(self.head):
            raise ValueError(f"prompt of {width} tokens exceeds the context")
        pad = self.eog[0] if self.eog else 0
        # rows that all open with the cached head (less its last token, so every row has one to evaluate):
        # head + padding + the rest, the padding masked out (positions follow the mask, as without a gap)
        h = len(self.head) - 1 if self._head_cache is not None else 0
        shared = h > 0 and all(len(p) > h and p[:h] == self.head[:h] for p in prompts)
        h = h if shared else 0
        ids = torch.tensor([p[:h] + [pad] * (width - len(p)) + p[h:] for p in prompts])
        mask = torch.tensor([[1] * h + [0] * (width - len(p)) + [1] * (len(p) - h) for p in prompts])
        cache = None
        if shared:
            import copy

            cache = copy.deepcopy(self._head_cache)
            cache.batch_repeat_interleave(len(prompts))
        engine, eog, newline = self, self._eog, self._newline

        class RowStop(StoppingCriteria):  # the llama engine's rules, per row, cheaply; times the first token
            t_first = None

            def __init__(self):
                self.done = [False] * len(prompts)

            def __call__(self, input_ids, scores, **kwargs):
                RowStop.t_first = RowStop.t_first or time.perf_counter()
                last = input_ids[:, -1].tolist()
                for i, t in enumerate(last):
                    if self.done[i] or input_ids.shape[1] <= width:
                        continue
                    if t in eog:
                        self.done[i] = True
                    elif stop_on_blank_line and t in newline:
                        self.done[i] = blank_line_stop(engine.detokenize(input_ids[i, width:].tolist()))
                return torch.tensor(self.done, dtype=torch.bool)

        t0 = time.perf_counter()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.dtype == "amp"):
            # sampling as the llama engine samples: temperature and top-p, no top-k
            sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0} \
                if temperature > 0 else {"do_sample": False}
            out = self.hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, **sampling,
                                   stopping_criteria=StoppingCriteriaList([RowStop()]), past_key_values=cache,
                                   pad_token_id=pad, eos_token_id=self.eog or None,
                                   return_dict_in_generate=True, output_logits=True)
        end = time.perf_counter()
        first = RowStop.t_first or end
        rows = [r[width:] for r in out.sequences.tolist()]
        # the log-prob of each sampled token under the model's raw logits (the gate's confidence signal)
        steps = torch.stack(out.logits, 1).float().log_softmax(-1)  # (rows, steps, vocab)
        chosen = out.sequences[:, width:width + steps.shape[1]]
        lps = steps.gather(-1, chosen.unsqueeze(-1)).squeeze(-1).tolist()
        s = self.stats
        s.prompt_tokens += sum(len(p) - h for p in prompts)
        s.cached_tokens += h * len(prompts)
        s.per_job_prompt += [len(p) for p in prompts]
        s.decode_calls += 1
        s.t_prompt += first - t0
        s.t_gen += end - first
        return rows, lps

    def _trim(self, toks: list[int], max_new_tokens: int, stop_on_blank_line: bool) -> tuple[str, int]:
        """The llama engine's `_step`, replayed over a row's generated tokens: the same text it would return,
        and how many sampled tokens it read (an end token counts: the llama engine sampled it too)."""
        gen: list[int] = []
        used = 0
        for tok in toks:
            if len(gen) >= max_new_tokens:
                break
            used += 1
            if tok in self._eog:
                break
            gen.append(tok)
            if stop_on_blank_line and "\n" in self.detokenize([tok]) and blank_line_stop(self.detokenize(gen)):
                break
        self.stats.gen_tokens += len(gen)
        self.stats.per_job_gen.append(len(gen))
        return self.detokenize(gen), used

    def close(self) -> None:
        self.hf = None
        self.model.close()
