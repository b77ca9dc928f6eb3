"""Batched greedy generation on llama.cpp: several rows decode together, the prompt head is cached.

Why not `Llama.create_chat_completion` row by row: on CPU that is no faster than HF transformers.
Here (1) the instruction head shared by every row is evaluated once and its KV cells are shared
with each sequence (`seq_cp` on a unified KV cache), (2) up to `n_seq` rows are in flight in one
`llama_decode` batch (continuous batching: a finished slot takes the next row at once), and
(3) generation is capped at `max_new_tokens`.
"""
from __future__ import annotations

import ctypes
import os
import struct
import time
from dataclasses import dataclass, field

import numpy as np

from ..cpus import claim_cpus, usable_cpus
from .sampling import likeliest_first

_GGUF_MAGIC = b"GGUF"


def check_gguf(path: str) -> None:
    """Clear errors for a missing or non-GGUF model file before llama.cpp sees it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != _GGUF_MAGIC:
        raise ValueError(f"{path}: not a GGUF file (magic {magic!r}, expected {_GGUF_MAGIC!r}); corrupt or wrong format")


_GGUF_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value types
_GGUF_STRING = 8


def gguf_architecture(path: str) -> str | None:
    """general.architecture of a GGUF, read from the header's first key-values (writers put it first); None when
    it is not among the scalar / string keys before the first array."""
    with open(path, "rb") as f:
        if f.read(4) != _GGUF_MAGIC:
            return None
        _version, _n_tensors, n_kv = struct.unpack("<IQQ", f.read(20))
        for _ in range(min(n_kv, 64)):
            key = f.read(struct.unpack("<Q", f.read(8))[0]).decode("utf-8", "replace")
            kind = struct.unpack("<I", f.read(4))[0]
            if kind == _GGUF_STRING:
                value = f.read(struct.unpack("<Q", f.read(8))[0])
                if key == "general.architecture":
                    return value.decode("utf-8", "replace")
            elif kind in _GGUF_SCALAR_BYTES:
                f.read(_GGUF_SCALAR_BYTES[kind])
            else:  # an array: stop rather than parse it
                return None
    return None


@dataclass
class EngineStats:
    prompt_tokens: int = 0
    cached_tokens: int = 0
    gen_tokens: int = 0
    decode_calls: int = 0
    gen_steps: int = 0  # decode calls that carried generated tokens only (each reads every weight once)
    t_prompt: float = 0.0  # seconds in decode calls that carried prompt tokens
    t_gen: float = 0.0  # seconds in decode calls of generated tokens only
    # bytes of keys and values those steps had to read (each live row's cached tokens; the torch engine counts
    # them, llama.cpp's engine leaves 0) and did read (the torch engine's whole cache: padding and finished slots)
    gen_kv_bytes: int = 0
    gen_kv_read_bytes: int = 0
    per_job_prompt: list = field(default_factory=list)
    per_job_gen: list = field(default_factory=list)


class GGUFTokens:
    """llama.cpp's tokenizer of the GGUF (self.model): both engines tokenize through it."""

    def tokenize(self, text: str, add_bos: bool = False, special: bool = False) -> list[int]:
        return self.model.tokenize(text.encode("utf-8"), add_bos, special)

    def detokenize(self, tokens) -> str:
        return self.model.detokenize(list(tokens)).decode("utf-8", errors="ignore")

    def token_text(self, tok: int) -> str:
        return self.model.token_get_text(tok)


class LlamaEngine(GGUFTokens):
    def __init__(self, model_path: str, *, n_ctx_row: int, n_seq: int, n_batch: int, seed: int,
                 n_threads: int | None = None, n_gpu_layers: int = 0, split_mode: int = 1,
                 tensor_split: list[float] | None = None, main_gpu: int = 0, flash_attn: bool = False,
                 offload_kqv: bool = True, lora_path: str | None = None, verbose: bool = False):
        import llama_cpp  # llama_cpp: optional extra, loads a native library
        from llama_cpp import _internals

        from llama_cpp._logger import set_verbose

        check_gguf(model_path)
        set_verbose(verbose)  # llama.cpp's own log lines go through this logger
        self._ll = llama_cpp
        llama_cpp.llama_backend_init()
        mp = llama_cpp.llama_model_default_params()
        mp.n_gpu_layers = n_gpu_layers
        mp.split_mode = split_mode
        mp.main_gpu = main_gpu
        if tensor_split:
            self._tensor_split = (ctypes.c_float * llama_cpp.LLAMA_MAX_DEVICES)(*tensor_split)
            mp.tensor_split = self._tensor_split
        self.model = _internals.LlamaModel(path_model=model_path, params=mp, verbose=verbose)
        self.n_seq, self.n_batch, self.n_ctx_row, self.seed = n_seq, n_batch, n_ctx_row, seed
        self.n_ctx_prefix = 512  # room for the shared instruction head (seq 0)
        cp = llama_cpp.llama_context_default_params()
        cp.n_ctx = self.n_ctx_prefix + n_seq * n_ctx_row
        cp.n_batch = cp.n_ubatch = n_batch
        cp.n_seq_max = n_seq + 1
        cp.kv_unified = True  # lets every sequence share the head's KV cells
        threads = n_threads or usable_cpus()
        if not n_gpu_layers and not n_threads:
            claim_cpus()  # a second CPU llama.cpp process on these cores is warned about, loudly
        cp.n_threads = cp.n_threads_batch = threads
        cp.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                              else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        cp.offload_kqv = offload_kqv
        self.ctx = _internals.LlamaContext(model=self.model, params=cp, verbose=verbose)
        if lora_path:
            self._apply_lora(lora_path)
        self.mem = llama_cpp.llama_get_memory(self.ctx.ctx)
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, n_seq + 1)
        self.n_vocab = self.model.n_vocab()
        self.vocab = llama_cpp.llama_model_get_vocab(self.model.model)
        self.metadata = self.model.metadata()
        self.head: list[int] = []
        self.stats = EngineStats()
        self._rng = np.random.default_rng(seed)

    def _apply_lora(self, path: str) -> None:
        ll = self._ll
        adapter = ll.llama_adapter_lora_init(self.model.model, path.encode())
        if not adapter:
            raise ValueError(f"{path}: could not load LoRA adapter")
        self._lora = adapter
        adapters = (ll.llama_adapter_lora_p_ctypes * 1)(adapter)
        scales = (ctypes.c_float * 1)(1.0)
        if ll.llama_set_adapters_lora(self.ctx.ctx, adapters, 1, scales) != 0:
            raise RuntimeError(f"{path}: llama_set_adapters_lora failed")

    def reseed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    # --- KV cache -------------------------------------------------------------------------
    def set_head(self, tokens: list[int]) -> None:
        """Evaluate the shared instruction head once into sequence 0."""
        tokens = tokens[: self.n_ctx_prefix]
        self._ll.llama_memory_clear(self.mem, True)
        for start in range(0, len(tokens), self.n_batch):
            chunk = tokens[start:start + self.n_batch]
            self._fill([(t, start + i, 0, False) for i, t in enumerate(chunk)])
            self._decode()
        self.head = tokens

    def _fill(self, entries) -> None:
        b = self.batch
        for i, (tok, pos, seq, want_logits) in enumerate(entries):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = want_logits
        b.n_tokens = len(entries)

    def _decode(self) -> None:
        rc = self._ll.llama_decode(self.ctx.ctx, self.batch)
        self.stats.decode_calls += 1
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc} (KV cache full or backend error)")

    def _next_token(self, i: int, temperature: float, top_p: float = 1.0) -> tuple[int, float]:
        """(the next token at batch position i, its log-prob under the raw logits: the gate's signal)."""
        logits = np.ctypeslib.as_array(self.ctx.get_logits_ith(i), shape=(self.n_vocab,))
        m = float(logits.max())
        z = logits - m
        log_norm = float(np.log(np.exp(z).sum()))
        if temperature <= 0:
            tok = int(np.argmax(logits))
            return tok, float(z[tok]) - log_norm
        p = np.exp(z / temperature)
        p /= p.sum()
        if top_p < 1.0:  # nucleus: the smallest set of tokens holding top_p of the mass
            order = likeliest_first(p, top_p)
            keep = order[: int(np.searchsorted(np.cumsum(p[order]), top_p)) + 1]
            tok = int(keep[self._rng.choice(len(keep), p=p[keep] / p[keep].sum())])
        else:
            tok = int(self._rng.choice(self.n_vocab, p=p))
        return tok, float(z[tok]) - log_norm

    # --- generation ---------------------------------------------------------------------
    def generate(self, prompts: list[list[int]], max_new_tokens: int, temperature: float = 0.0,
                 stop_on_blank_line: bool = True, top_p: float = 1.0,
                 deadline: float | None = None) -> list[str | None]:
        """Continuation of each token list (greedy unless temperature > 0): the generated text per
        prompt. At `deadline` (time.monotonic()) decoding stops between two decode calls; prompts not
        finished by then get None, so a caller can give those rows its fallback in time."""
        ll, n = self._ll, len(prompts)
        outputs: list[str | None] = [None] * n
        self.confidence: list[float | None] = [None] * n  # per prompt: mean log-prob of the tokens it sampled
        queue = list(range(n))
        slots: dict[int, dict] = {}  # seq id -> state

        def start(seq: int) -> None:
            j = queue.pop(0)
            toks = prompts[j]
            if len(toks) > self.n_ctx_row + len(self.head):
                raise ValueError(f"prompt of {len(toks)} tokens exceeds the context")
            keep = _common_prefix(self.head, toks)
            keep = min(keep, len(toks) - 1)  # at least one token must be decoded for logits
            ll.llama_memory_seq_rm(self.mem, seq, -1, -1)
            if keep:
                ll.llama_memory_seq_cp(self.mem, 0, seq, 0, keep)
            self.stats.cached_tokens += keep
            self.stats.per_job_prompt.append(len(toks))
            slots[seq] = {"job": j, "pending": toks[keep:], "pos": keep, "gen": [], "last": None, "lp": []}

        for seq in range(1, self.n_seq + 1):
            if queue:
                start(seq)
        while slots:
            if deadline is not None and time.monotonic() >= deadline:
                for seq in slots:
                    ll.llama_memory_seq_rm(self.mem, seq, -1, -1)
                slots.clear()
                return outputs  # unfinished (and never started) prompts stay None
            entries, owners, has_prompt = self._batch(slots)
            self._fill(entries)
            t = time.perf_counter()
            self._decode()
            dt = time.perf_counter() - t
            if has_prompt:
                self.stats.t_prompt += dt
            else:
                self.stats.t_gen += dt
                self.stats.gen_steps += 1
            idx = {e[2]: i for i, e in enumerate(entries) if e[3]}
            for seq in owners:
                st = slots[seq]
                tok, lp = self._next_token(idx[seq], temperature, top_p)
                st["lp"].append(lp)
                text = self._step(st, tok, max_new_tokens, stop_on_blank_line)
                if text is not None:
                    outputs[st["job"]] = text
                    self.confidence[st["job"]] = float(np.mean(st["lp"]))
                    self.stats.per_job_gen.append(len(st["gen"]))
                    ll.llama_memory_seq_rm(self.mem, seq, -1, -1)
                    del slots[seq]
                    if queue:
                        start(seq)
        return [o or "" for o in outputs]

    def _batch(self, slots: dict[int, dict]) -> tuple[list[tuple], list[int], bool]:
        """One decode call: each generating slot's last token first, then prompt tokens as many as fit.
        Returns (entries (token, pos, seq, wants_logits), the slots sampled after it, any prompt tokens)."""
        entries, owners = [], []
        for seq, st in slots.items():
            if st["last"] is not None:
                entries.append((st["last"], st["pos"], seq, True))
                owners.append(seq)
                st["pos"] += 1
        room = self.n_batch - len(entries)
        has_prompt = False
        for seq, st in slots.items():
            if st["last"] is None and st["pending"] and room > 0:
                take = st["pending"][:room]
                st["pending"] = st["pending"][len(take):]
                done = not st["pending"]
                for k, t in enumerate(take):
                    entries.append((t, st["pos"] + k, seq, done and k == len(take) - 1))
                st["pos"] += len(take)
                room -= len(take)
                has_prompt = True
                self.stats.prompt_tokens += len(take)
                if done:
                    owners.append(seq)
        return entries, owners, has_prompt

    def _step(self, st: dict, tok: int, max_new_tokens: int, stop_on_blank_line: bool) -> str | None:
        """Take a sampled token into a slot: the slot's finished text when it stops here, else None."""
        if self._ll.llama_vocab_is_eog(self.vocab, tok) or len(st["gen"]) >= max_new_tokens:
            return self.detokenize(st["gen"])
        st["gen"].append(tok)
        st["last"] = tok
        self.stats.gen_tokens += 1
        if len(st["gen"]) >= max_new_tokens:
            return self.detokenize(st["gen"])
        if stop_on_blank_line and tok_has_newline(self, tok):
            sofar = self.detokenize(st["gen"])
            if blank_line_stop(sofar):
                return sofar
        return None

    def perf(self) -> dict:
        d = self._ll.llama_perf_context(self.ctx.ctx)
        return {"t_p_eval_ms": d.t_p_eval_ms, "n_p_eval": d.n_p_eval, "t_eval_ms": d.t_eval_ms, "n_eval": d.n_eval}

    def close(self) -> None:
        if getattr(self, "batch", None) is not None:
            self._ll.llama_batch_free(self.batch)
            self.batch = None
        self.ctx.close()
        self.model.close()


def blank_line_stop(text: str) -> bool:
    """The answer is over at a blank line after some content (what follows is commentary). The
    bench's HF backend stops on this same rule, so both do equal work."""
    return "\n\n" in text.lstrip() and len(text.strip()) >= 8


def tok_has_newline(engine: LlamaEngine, tok: int) -> bool:
    return "\n" in engine.detokenize([tok])


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
