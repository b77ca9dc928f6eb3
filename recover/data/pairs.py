"""Stage 5, DPO pairs: chosen = the true prompt; rejected = hard negatives that score lower.

Negatives: bank prompts in an SCS band against the truth (close but wrong), and the current
model's own predictions when a model is given. The prompt side is built by
`models.prompting.build_messages`, the SAME function the predictor serves with, in trl's
conversational format ({"prompt": [messages], "chosen": [...], "rejected": [...]}).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import constants as C
from ..csvio import atomic_write_json, atomic_write_text, read_table
from ..models.llm import LlamaConfig, LlamaPredictor
from ..models.prompting import build_messages, load_template
from ..score.metric import scs_matrix, scs_rows
from .prompt_bank import generate_bank


@dataclass
class PairsConfig:
    labelled: str
    out: str
    template: str | None = None
    bank_size: int = 2000
    band_low: float = 0.2  # negatives must resemble the truth at least this much (SCS)...
    band_high: float = 0.8  # ...and at most this much: close but wrong
    margin: float = 0.1  # a model prediction is a negative only if SCS(pred, truth) <= 1 - margin
    negatives_per_row: int = 2
    max_text_chars: int = 1200  # keep the head of long texts (as inference's truncation does) so rows fit max_length
    model: str | None = None
    seed: int = C.DEFAULT_SEED

    def __post_init__(self):
        if not 0 <= self.band_low < self.band_high <= 1:
            raise ValueError("need 0 <= band_low < band_high <= 1")


def build_pairs(cfg: PairsConfig, embedder, log=print) -> dict:
    df = read_table(cfg.labelled, (C.COL_ID, C.COL_ORIGINAL, C.COL_REWRITTEN, C.COL_PROMPT))
    if df.empty:
        raise ValueError(f"{cfg.labelled}: no labelled rows to pair (every row was filtered: see label_report.json)")
    template = load_template(cfg.template)
    rng = random.Random(cfg.seed)
    bank = [b.prompt for b in generate_bank(cfg.bank_size, cfg.seed)]
    truths = list(df[C.COL_PROMPT])
    T, B = embedder.encode(truths), embedder.encode(bank)
    S = scs_matrix(T, B)  # rows x bank
    preds = [None] * len(df)
    if cfg.model:
        # the hard negatives come from the model prompted exactly as the pairs are (train as you serve)
        p = LlamaPredictor(LlamaConfig(model=cfg.model, seed=cfg.seed, template=cfg.template))
        preds = p.predict_batch(list(df[C.COL_ORIGINAL]), list(df[C.COL_REWRITTEN]))
        P = embedder.encode([x or " " for x in preds])
        pred_scs = scs_rows(P, T)
    lines, counts = [], {"model": 0, "bank_band": 0, "rows_without_negative": 0}
    for i, row in df.iterrows():
        negs = []
        if cfg.model and preds[i] and preds[i].strip() != truths[i].strip() and pred_scs[i] <= 1 - cfg.margin:
            negs.append(("model", preds[i]))
        band = [j for j in np.flatnonzero((S[i] >= cfg.band_low) & (S[i] <= cfg.band_high)) if bank[j] != truths[i]]
        rng.shuffle(band)
        negs += [("bank_band", bank[j]) for j in band[: max(0, cfg.negatives_per_row - len(negs))]]
        if not negs:
            counts["rows_without_negative"] += 1
        prompt = build_messages(template, row[C.COL_ORIGINAL][: cfg.max_text_chars], row[C.COL_REWRITTEN][: cfg.max_text_chars])
        for kind, neg in negs:
            counts[kind] += 1
            lines.append(json.dumps({"prompt": prompt, "chosen": [{"role": "assistant", "content": truths[i]}],
                                     "rejected": [{"role": "assistant", "content": neg}], "id": row[C.COL_ID],
                                     "negative": kind}, ensure_ascii=False))
    out = Path(cfg.out)
    atomic_write_text(out, "\n".join(lines) + ("\n" if lines else ""))
    report = {"rows": len(df), "pairs": len(lines), **counts, "template": cfg.template or "recover"}
    atomic_write_json(out.with_suffix(".report.json"), report)
    log(f"DPO pairs: {len(lines)} from {len(df)} rows ({counts})")
    return report


def sft_rows(labelled: str, out: str, template: str | None = None, max_text_chars: int = 1200) -> int:
    """SFT rows in trl's conversational 'messages' format, same prompt builder as inference."""
    df = read_table(labelled, (C.COL_ID, C.COL_ORIGINAL, C.COL_REWRITTEN, C.COL_PROMPT))
    tpl = load_template(template)
    n = max_text_chars
    lines = [json.dumps({"messages": build_messages(tpl, o[:n], r[:n]) + [{"role": "assistant", "content": p}]},
                        ensure_ascii=False) for o, r, p in zip(df[C.COL_ORIGINAL], df[C.COL_REWRITTEN], df[C.COL_PROMPT])]
    atomic_write_text(out, "\n".join(lines) + "\n")
    return len(lines)
