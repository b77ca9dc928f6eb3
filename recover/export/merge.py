"""Merge a LoRA adapter into a full-precision base (never into 4-bit weights) and save it whole."""
from __future__ import annotations

import shutil
from pathlib import Path


def merge_adapter(base: str | Path, adapter: str | Path, out: str | Path, dtype: str = "float32") -> Path:
    import torch  # torch, peft, transformers: heavy, optional extras
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype))  # fp32/fp16, not 4-bit
    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.save_pretrained(out)
    tok_src = adapter if (Path(adapter) / "tokenizer_config.json").is_file() else base
    tok = AutoTokenizer.from_pretrained(tok_src)
    tok.save_pretrained(out)
    # transformers 5 writes chat_template.jinja but drops tokenizer.model: the converter wants it.
    for name in ("tokenizer.model", "chat_template.jinja"):
        for src in (Path(adapter) / name, Path(base) / name):
            if src.is_file() and not (out / name).is_file():
                shutil.copy2(src, out / name)
    return out
