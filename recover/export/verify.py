"""Check each exported GGUF: it loads in llama.cpp, its next-token logits match the merged HF
model on fixed prompts (max |diff| under a per-quant threshold), and the chat template is there."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import constants as C
from ..models.llama_engine import LlamaEngine
from ..models.prompting import template_source

PROMPTS = ("Rewrite the following text as a haiku about autumn.",
           "Original text: The meeting moved to Thursday.\nRewritten text: Hear ye! The council gathers on Thursday.",
           "What instruction turned a recipe into a pirate shanty?",
           "Summarize the article below in one sentence for a busy executive.",
           "The quick brown fox jumps over the lazy dog near the river bank at dawn.",
           "Translate the tone of this email into that of a Shakespearean sonnet:",
           "List three ways to make the text sound more formal.",
           "Original text: Sales rose 8% this quarter.\nRewritten text: Arr, our plunder grew by eight parts in a hundred!")
# max |logit diff| allowed against the fp32 HF model, per quant: measured by `make export-thresholds`
# (recover/export/thresholds.json holds the distribution over 68 prompts and the command).
THRESHOLDS_FILE = Path(__file__).with_name("thresholds.json")


def load_thresholds() -> dict[str, float]:
    d = json.loads(THRESHOLDS_FILE.read_text())
    return {q: v["threshold"] for q, v in d["quants"].items()}


def threshold(quant: str) -> float:
    t = load_thresholds()
    if quant.upper() not in t:
        raise ValueError(f"no measured logit threshold for {quant}: run `make export-thresholds`")
    return t[quant.upper()]


def llama_logits(gguf: str, prompts=PROMPTS, lora: str | None = None) -> tuple[list[np.ndarray], list[list[int]], dict]:
    e = LlamaEngine(gguf, n_ctx_row=256, n_seq=1, n_batch=256, seed=C.DEFAULT_SEED, lora_path=lora)
    outs, toks = [], []
    for p in prompts:
        t = e.tokenize(p, add_bos=e.model.add_bos_token(), special=True)
        e._ll.llama_memory_clear(e.mem, True)
        e._fill([(tok, i, 0, i == len(t) - 1) for i, tok in enumerate(t)])
        e._decode()
        outs.append(np.array(np.ctypeslib.as_array(e.ctx.get_logits_ith(len(t) - 1), shape=(e.n_vocab,))))
        toks.append(t)
    meta = e.metadata
    e.close()
    return outs, toks, meta


def hf_logits(model_dir: str, token_lists: list[list[int]], adapter: str | None = None) -> list[np.ndarray]:
    """fp32 reference logits; with `adapter`, the LoRA merged in memory (what the GGUF pair must match)."""
    import torch  # torch, transformers, peft: heavy, optional extras
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    if adapter:
        from peft import PeftModel

        m = PeftModel.from_pretrained(m, adapter).merge_and_unload().eval()
    with torch.no_grad():
        return [m(torch.tensor([t])).logits[0, -1].float().numpy() for t in token_lists]


def verify_gguf(gguf: str, quant: str, ref: list[np.ndarray] | None, ref_dir: str | None = None) -> dict:
    """ref: HF logits for the llama token ids (computed once per export and reused per quant)."""
    got, toks, meta = llama_logits(gguf)
    if ref is None:
        ref = hf_logits(ref_dir, toks)
    n = min(len(ref[0]), len(got[0]))  # padded vocab rows beyond the tokenizer are ignored
    diffs = [float(np.max(np.abs(a[:n] - b[:n]))) for a, b in zip(got, ref)]
    agree = [int(np.argmax(a[:n]) == np.argmax(b[:n])) for a, b in zip(got, ref)]
    thr = threshold(quant)
    res = {"quant": quant, "loads": True, "max_abs_logit_diff": round(max(diffs), 4), "threshold": thr,
           "argmax_agree": f"{sum(agree)}/{len(agree)}", "chat_template": template_source(meta) is not None,
           "chat_template_from": template_source(meta)}
    # A quant may shift logits by its threshold, but it must still pick the same next token everywhere.
    res["passed"] = res["max_abs_logit_diff"] <= thr and sum(agree) == len(agree) and res["chat_template"]
    return res
