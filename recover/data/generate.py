"""Plain chat generation on llama.cpp for the data stages (writer mode and the rewriter)."""
from __future__ import annotations

from pathlib import Path

from .. import constants as C
from ..hashing import file_sha256
from ..models.llama_engine import LlamaEngine
from ..models.prompting import ChatFormat


class ChatGenerator:
    """One user message -> the model's answer, with the GGUF's own chat template."""

    def __init__(self, model: str, seed: int = C.DEFAULT_SEED, n_ctx: int = 2048, temperature: float = 0.0,
                 n_gpu_layers: int = 0, n_threads: int | None = None):
        self.model, self.seed, self.temperature = model, seed, temperature
        self.engine = LlamaEngine(model, n_ctx_row=n_ctx, n_seq=1, n_batch=512, seed=seed,
                                  n_gpu_layers=n_gpu_layers, n_threads=n_threads)
        self.chat_format = ChatFormat(self.engine, model)
        self.n_ctx = n_ctx

    def provenance(self) -> dict:
        return {"model_file": Path(self.model).name, "model_sha256": file_sha256(self.model)[:16],
                "temperature": self.temperature, "seed": self.seed}

    def chat(self, user: str, max_new_tokens: int, seed: int) -> tuple[str, bool]:
        """(answer, truncated): truncated means generation stopped at max_new_tokens."""
        toks = self.chat_format.tokenize(self.chat_format.render([{"role": "user", "content": user}]))
        toks = toks[: self.n_ctx - max_new_tokens]
        self.engine.reseed(seed)  # per-job seed: shards and unsharded runs sample identically
        before = self.engine.stats.gen_tokens
        out = self.engine.generate([toks], max_new_tokens, self.temperature, stop_on_blank_line=False)[0]
        return out.strip(), self.engine.stats.gen_tokens - before >= max_new_tokens
