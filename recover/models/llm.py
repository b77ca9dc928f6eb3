"""LLM predictor: the GGUF's own chat template, token-exact truncation, forced prefixes, cleaning; load_llm loads
it as this machine serves it."""
from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass, field, replace

import numpy as np

from .. import constants as C
from .llama_engine import LlamaEngine, check_gguf, gguf_architecture
from .postprocess import clean_llm_output
from .prompting import ChatFormat, fit_texts, load_template
from .serving import serve_llm, served_config
from .torch_engine import TorchEngine


@dataclass
class LlamaConfig:
    model: str
    seed: int = C.DEFAULT_SEED
    template: str | None = None  # built-in name or file; see models/prompting.py
    prefixes: list[str] = field(default_factory=list)  # forced openings; several = concatenated runs
    n_ctx: int = 1024  # per row
    max_new_tokens: int = 32
    # rows decoded together. None: llama.cpp 1 (>1 pays off on GPU, not on a 2-core CPU: unified KV attention
    # grows), torch the batch `make bench-cpu` measured (serving.TORCH_ROWS unless its choice says otherwise)
    n_seq: int | None = None
    n_batch: int = 512
    n_threads: int | None = None
    temperature: float = 0.0  # greedy by default: deterministic
    # GPU (Kaggle T4 x2): n_gpu_layers=-1, split_mode=1 (layer) or 2 (row), tensor_split=[0.5, 0.5]
    n_gpu_layers: int = 0
    split_mode: int = 1
    tensor_split: list[float] | None = None
    flash_attn: bool = False
    offload_kqv: bool = True
    lora_path: str | None = None
    # "llama" (llama.cpp), "torch" (the GGUF's weights in torch bf16, batched: models/torch_engine.py), or
    # "auto": llama.cpp on a GPU; on a CPU the engine `make bench-cpu` measured fastest at no loss of SCS
    # (recover/assets/cpu_quant.json), torch only where the CPU has bf16 hardware. Resolved at load.
    engine: str = "auto"
    torch_dtype: str | None = None  # torch engine: bf16 | amp | fp32 | int8; None: what `make bench-cpu` chose, else bf16

    def __post_init__(self):
        if self.seed == 0:
            raise ValueError("seed 0 means 'random' to llama.cpp; pass a nonzero seed")
        if self.max_new_tokens < 1 or (self.n_seq is not None and self.n_seq < 1) or self.n_batch < 16:
            raise ValueError("max_new_tokens >= 1, n_seq >= 1 and n_batch >= 16 are required")
        if self.n_ctx < self.max_new_tokens + 128:
            raise ValueError(f"n_ctx {self.n_ctx} leaves no room for the texts (max_new_tokens {self.max_new_tokens})")
        if self.tensor_split and sum(self.tensor_split) <= 0:
            raise ValueError("tensor_split must have a positive sum")
        self.prefixes = [p for p in (self.prefixes or []) if p is not None]
        if self.engine not in ENGINES:
            raise ValueError(f"engine {self.engine!r}: choose one of {', '.join(ENGINES)}")
        if self.torch_dtype not in (None, *C.TORCH_DTYPES):
            raise ValueError(f"torch_dtype {self.torch_dtype!r}: one of {', '.join(C.TORCH_DTYPES)}")
        if self.engine == "torch" and self.n_gpu_layers:
            raise ValueError("engine torch is the CPU engine; n_gpu_layers asks for llama.cpp on a GPU")


ENGINES = C.ENGINES


class LlamaPredictor:
    name = "llm"

    def __init__(self, cfg: LlamaConfig, manifest: dict | None = None):
        """manifest: the adapter's own choices a runner reads ("combine", "suffix"); the model ignores it."""
        self.manifest = manifest or {}
        check_gguf(cfg.model)
        arch = gguf_architecture(cfg.model) if cfg.engine == "auto" else None
        self.cfg = cfg = served_config(cfg, arch)  # engine, rows, precision resolved: the config as served
        self.template = load_template(cfg.template)
        # rows `recover predict` hands over at once: the torch engine sorts them by length into batches of n_seq
        self.chunk_rows = 8 * cfg.n_seq if cfg.engine == "torch" else 8
        if cfg.engine == "torch":
            self.engine = TorchEngine(cfg.model, n_ctx_row=cfg.n_ctx, n_seq=cfg.n_seq, seed=cfg.seed,
                                      n_threads=cfg.n_threads, lora_path=cfg.lora_path, dtype=cfg.torch_dtype)
        else:
            self.engine = LlamaEngine(cfg.model, n_ctx_row=cfg.n_ctx, n_seq=cfg.n_seq, n_batch=cfg.n_batch,
                                      seed=cfg.seed, n_threads=cfg.n_threads, n_gpu_layers=cfg.n_gpu_layers,
                                      split_mode=cfg.split_mode, tensor_split=cfg.tensor_split,
                                      flash_attn=cfg.flash_attn, offload_kqv=cfg.offload_kqv, lora_path=cfg.lora_path)
        self.chat = ChatFormat(self.engine, cfg.model)
        self.chat_template = self.chat.template
        self.head_tokens = self.chat.tokenize(self.chat.head_text(self.template))
        self.engine.set_head(self.head_tokens)  # the head every row shares
        self.overhead = len(self.chat.tokenize(self.chat.prompt_text(self.template, "", "")))
        self.text_budget = self._text_budget()

    def _text_budget(self) -> int:
        cfg = self.cfg
        pre = max((len(self.engine.tokenize(p)) for p in cfg.prefixes), default=0)
        budget = cfg.n_ctx - self.overhead - pre - cfg.max_new_tokens - 16
        if budget < 32:
            raise ValueError(f"n_ctx {cfg.n_ctx} too small: only {budget} tokens left for the texts")
        return budget

    def with_prefixes(self, prefixes: list[str]) -> "LlamaPredictor":
        """The same loaded model and adapter answering with other forced openings (an ensemble's prefixed
        member): one engine, not a second copy of the weights."""
        other = copy.copy(self)
        other.cfg = replace(self.cfg, prefixes=list(prefixes))
        other.text_budget = other._text_budget()
        return other

    def render(self, original: str, rewritten: str, prefix: str) -> str:
        """Full prompt text: chat template from the GGUF, generation prompt, then the forced prefix."""
        return self.chat.prompt_text(self.template, original, rewritten, prefix)

    def fit_row(self, original: str, rewritten: str) -> tuple[str, str]:
        """Both texts cut token-exactly to this predictor's budget: what the model is served (and trained on)."""
        e = self.engine
        return fit_texts(original, rewritten, self.text_budget, e.tokenize, e.detokenize)

    def build_prompt_tokens(self, original: str, rewritten: str, prefix: str = "") -> list[int]:
        e = self.engine
        o, r = self.fit_row(original, rewritten)
        toks = self.chat.tokenize(self.render(o, r, prefix))
        limit = self.cfg.n_ctx - self.cfg.max_new_tokens
        while len(toks) > limit:  # token merges at the seams can add a few: cut a bit more
            over = len(toks) - limit + 4
            o, r = fit_texts(o, r, max(0, len(e.tokenize(o)) + len(e.tokenize(r)) - over), e.tokenize, e.detokenize)
            toks = self.chat.tokenize(self.render(o, r, prefix))
        return toks

    def fit_budget(self, rows_left: int, seconds_left: float) -> None:
        """Nothing to shed: one model (the deadline cuts its decoding, see predict_batch)."""

    def predict_batch(self, originals, rewrites, deadline: float | None = None) -> list[str | None]:
        """One prediction per row; None for a row the deadline (a time.monotonic(): the runner's --time-budget)
        cut off: decoding stops there."""
        prefixes = self.cfg.prefixes or [""]
        jobs = [self.build_prompt_tokens(o, r, p) for o, r in zip(originals, rewrites) for p in prefixes]
        outs = self.engine.generate(jobs, self.cfg.max_new_tokens, self.cfg.temperature, deadline=deadline)
        conf = self.engine.confidence
        # per row: the mean token log-prob of its answer (over its prefixed runs): a confidence signal
        self.confidence = [None if any(conf[i * len(prefixes) + k] is None for k in range(len(prefixes))) else
                           float(np.mean([conf[i * len(prefixes) + k] for k in range(len(prefixes))]))
                           for i in range(len(originals))]
        preds = []
        for i in range(len(originals)):
            if any(outs[i * len(prefixes) + k] is None for k in range(len(prefixes))):
                preds.append(None)
                continue
            parts = [clean_llm_output(p + outs[i * len(prefixes) + k], p) for k, p in enumerate(prefixes)]
            parts = [x for x in parts if not is_echo(x, originals[i], rewrites[i])]
            preds.append(" ".join(x for x in parts if x))
        return preds


    def sample(self, original: str, rewritten: str, k: int, temperature: float, seed: int,
               top_p: float = 1.0) -> list[str]:
        """k sampled RAW answers for one row (what the model generated; `clean_llm_output` gives the
        prompt that would be submitted). The row's prompt is evaluated once (as the engine's head)
        and its KV cells are shared by the k sequences, so k samples cost one prompt evaluation."""
        if temperature <= 0:
            raise ValueError("sampling needs temperature > 0")
        toks = self.build_prompt_tokens(original, rewritten)
        self.engine.set_head(toks)
        self.engine.reseed(seed)
        return [o or "" for o in self.engine.generate([toks] * k, self.cfg.max_new_tokens, temperature, top_p=top_p)]

    def sample_rows(self, rows: list[tuple[str, str]], k: int, temperature: float, seeds: list[int],
                    top_p: float = 1.0) -> list[list[str]]:
        """k sampled RAW answers for each (original, rewritten) row, `seeds` one per row. On the torch engine the
        rows' k samples decode together, each sample drawn from its own generator (seeded from its row's seed and
        its index), each row's prompt evaluated once and fanned out to its k slots: so a row's samples do not hang
        on the generator draws of its batch neighbours. llama.cpp samples row by row (`sample`)."""
        if temperature <= 0:
            raise ValueError("sampling needs temperature > 0")
        if len(seeds) != len(rows):
            raise ValueError(f"{len(seeds)} seeds for {len(rows)} rows")
        if not isinstance(self.engine, TorchEngine):
            return [self.sample(o, r, k, temperature, s, top_p) for (o, r), s in zip(rows, seeds)]
        self.engine.set_head(self.head_tokens)  # `sample` leaves one row's prompt as the head
        prompts = [self.build_prompt_tokens(o, r) for o, r in rows for _ in range(k)]
        outs = self.engine.generate(prompts, self.cfg.max_new_tokens, temperature, top_p=top_p,
                                    seeds=[sample_seed(s, i) for s in seeds for i in range(k)])
        return [[o or "" for o in outs[i * k:(i + 1) * k]] for i in range(len(rows))]


def sample_seed(row_seed: int, i: int) -> int:
    """The seed of a row's i-th sample: stable, distinct per (row seed, i)."""
    return int.from_bytes(hashlib.sha256(f"{row_seed}:{i}".encode()).digest()[:8], "little") >> 1


def load_llm(model: str, llm: dict, cpu_quant: str | None, seed: int, log=print) -> LlamaPredictor:
    """The model as this machine serves it (`recover predict`, alone or as an ensemble member): its GGUF (a cached
    requant on CPU) and its adapter with the settings it was trained with (flags win)."""
    served = serve_llm(model, llm, cpu_quant, log)
    lora = served.manifest
    # the adapter's chosen combine and its fitted suffix, read by predict's combine policy (predict/finish.py)
    p = LlamaPredictor(LlamaConfig(model=served.path, seed=seed, **served.options),
                       manifest={k: lora[k] for k in ("combine", "suffix") if k in lora})
    c = p.cfg
    log(f"lora: {lora.get('name', c.lora_path)}" if c.lora_path else "lora: none (the bare base model)")
    log(f"llm engine: {c.engine}" + (f" ({c.torch_dtype}, {c.n_seq} rows a batch)" if c.engine == "torch" else
                                     f" ({c.n_seq} sequence(s), {c.n_gpu_layers} GPU layers)"))
    return p


def _norm_words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def is_echo(pred: str, original: str, rewritten: str, min_words: int = 6) -> bool:
    """Small models often copy the input instead of naming the instruction: that is not a prompt."""
    p = _norm_words(pred)
    if len(p.split()) < min_words:
        return False
    return p in _norm_words(rewritten) or p in _norm_words(original)
