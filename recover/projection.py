"""Cost model for a Kaggle T4 run. Everything here is PROJECTED, never measured.

per-row time = prompt_tokens / prompt_rate + gen_tokens / gen_rate + overhead

- Generation is memory-bandwidth bound: every new token streams the whole weight file once.
  time/token = file_bytes / effective_bandwidth + fixed per-token cost (kernel launches, sampling,
  Python). Two published Kaggle-T4 llama.cpp figures pin the two unknowns:
    * Gemma-2-2B-it Q4_K_M (1.71 GB): ~60 tok/s generation
    * Mistral/Llama-7B Q4_K_M (4.37 GB): ~35 tok/s generation
  (community benchmarks of llama-cpp-python on Kaggle T4, 2024; llama.cpp discussion #4225 reports
  the same order for T4). Solving gives ~224 GB/s effective of the 320 GB/s peak (0.70) and ~9 ms
  fixed per token.
- Prompt eval is compute bound: 2 * n_params FLOPs per token against 65 TFLOP/s fp16 (T4 tensor
  cores) times an efficiency factor. llama.cpp's CUDA pp512 on a T4 for 7B Q4_K_M is ~1,100 tok/s
  (llama.cpp CUDA benchmark tables), which gives an efficiency of ~0.245.
Sources, honestly: the two generation anchors are community figures for llama-cpp-python on a
Kaggle T4 (2024 notebooks and forum posts) with no single pinned page; the pp512 figure is from
llama.cpp's CUDA benchmark tables. Checked on a point NOT used in the fit (tests/test_bench.py):
llcuda's verified T4 figure for Gemma-3-1B-it Q4_K_M (0.806 GB), 134.3 tok/s generation
(https://llcuda.github.io/performance/benchmarks, Colab T4, CUDA 12.2). The model projects ~79 tok/s
there: it is conservative by ~1.7x for small files (the fixed ~9 ms/token is an old-llama.cpp
figure), which errs on the safe side for a "fits in 9 h" decision.
`recover bench --calibrate results.json` replaces these with rates measured by kernels/bench.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

T4_BANDWIDTH = 320e9  # bytes/s, NVIDIA T4 datasheet
T4_FP16_FLOPS = 65e12  # FLOP/s, tensor cores, datasheet
# Calibration points (published T4 llama.cpp generation figures), see the module docstring.
_CAL = ((1.71e9, 60.0), (4.37e9, 35.0))
_inv = [(s, 1.0 / r) for s, r in _CAL]
GEN_EFF_BANDWIDTH = (_inv[1][0] - _inv[0][0]) / (_inv[1][1] - _inv[0][1])  # bytes/s actually achieved
GEN_FIXED_S = _inv[0][1] - _inv[0][0] / GEN_EFF_BANDWIDTH  # s/token, size-independent
PROMPT_EFF = 1100.0 * 2 * 7.24e9 / T4_FP16_FLOPS  # from ~1,100 tok/s pp512 for 7B Q4_K_M
ROW_OVERHEAD_S = 0.05  # tokenize, template, post-process, checkpoint write
WHEEL_INSTALL_S = 90.0  # pip install --no-index of the shipped wheels
LOAD_FIXED_S = 15.0
DISK_BYTES_S = 150e6  # Kaggle dataset mount read rate (conservative)
LIMIT_S = 9 * 3600
VRAM_BYTES = 15e9  # one T4; two give 30 GB with a layer split

# Candidate models for "what is the largest that fits": (name, params, GGUF bytes).
MODEL_TABLE = (
    ("SmolLM2-135M Q8_0", 0.135e9, 0.145e9),
    ("Qwen2.5-0.5B Q8_0", 0.49e9, 0.53e9),
    ("Gemma-2-2B Q4_K_M", 2.61e9, 1.71e9),
    ("Phi-2 Q4_K_M", 2.78e9, 1.79e9),
    ("Phi-2 Q8_0", 2.78e9, 2.96e9),
    ("Mistral-7B Q4_K_M", 7.24e9, 4.37e9),
    ("Gemma-7B Q4_K_M", 8.54e9, 5.33e9),
    ("Mistral-7B Q8_0", 7.24e9, 7.70e9),
    ("Llama-2-13B Q4_K_M", 13.0e9, 7.87e9),
    ("Llama-2-13B Q8_0", 13.0e9, 13.8e9),
    ("Qwen2.5-32B Q4_K_M", 32.8e9, 19.9e9),
)  # dense models only: an MoE reads and computes a fraction of its weights per token


@dataclass
class T4Rates:
    prompt_tok_s: float
    gen_tok_s: float
    source: str = "projected"


def t4_rates(n_params: float, file_bytes: float, calibration: dict | None = None) -> T4Rates:
    if calibration:
        # Measured once on a T4 (kernels/bench): rescale by size, as the cost model says.
        c = calibration
        prompt = c["prompt_tok_s"] * c["n_params"] / n_params
        per_tok = file_bytes / c.get("eff_bandwidth", GEN_EFF_BANDWIDTH) + c.get("gen_fixed_s", GEN_FIXED_S)
        if "gen_tok_s" in c and "file_bytes" in c and abs(c["file_bytes"] - file_bytes) / file_bytes < 0.05:
            per_tok = 1.0 / c["gen_tok_s"]
        return T4Rates(prompt, 1.0 / per_tok, "calibrated")
    prompt = PROMPT_EFF * T4_FP16_FLOPS / (2.0 * n_params)
    gen = 1.0 / (file_bytes / GEN_EFF_BANDWIDTH + GEN_FIXED_S)
    return T4Rates(prompt, gen)


def load_calibration(path) -> dict:
    """A bench.json measured on a T4 by kernels/bench (or a dict with the same four keys)."""
    d = json.loads(Path(path).read_text())
    if "backends" in d:
        llama = [b for k, b in d["backends"].items() if k.startswith("llama") and "error" not in b]
        if not llama:
            raise ValueError(f"{path}: no llama backend measurement to calibrate from")
        d = llama[0]
    missing = [k for k in ("prompt_tok_s", "gen_tok_s", "n_params", "file_bytes") if not d.get(k)]
    if missing:
        raise ValueError(f"{path}: calibration needs {', '.join(missing)}")
    # Solve the per-token fixed cost from the measured generation rate at the default bandwidth.
    fixed = max(0.0, 1.0 / d["gen_tok_s"] - d["file_bytes"] / GEN_EFF_BANDWIDTH)
    return {"prompt_tok_s": d["prompt_tok_s"], "gen_tok_s": d["gen_tok_s"], "n_params": d["n_params"],
            "file_bytes": d["file_bytes"], "gen_fixed_s": fixed}


def row_seconds(prompt_tokens: float, gen_tokens: float, rates: T4Rates) -> float:
    return prompt_tokens / rates.prompt_tok_s + gen_tokens / rates.gen_tok_s + ROW_OVERHEAD_S


def project(name: str, n_params: float, file_bytes: float, prompt_tokens: float, gen_tokens: float,
            rows: int = 1400, calibration: dict | None = None) -> dict:
    rates = t4_rates(n_params, file_bytes, calibration)
    per_row = row_seconds(prompt_tokens, gen_tokens, rates)
    load = LOAD_FIXED_S + file_bytes / DISK_BYTES_S
    total = WHEEL_INSTALL_S + load + rows * per_row
    return {"model": name, "label": rates.source, "rows": rows, "prompt_tok_s": round(rates.prompt_tok_s, 1),
            "gen_tok_s": round(rates.gen_tok_s, 1), "s_per_row": round(per_row, 3), "install_s": WHEEL_INSTALL_S,
            "load_s": round(load, 1), "total_s": round(total, 1), "total_h": round(total / 3600, 3),
            "margin_h": round((LIMIT_S - total) / 3600, 3), "fits": total < LIMIT_S,
            "fits_vram": file_bytes < 2 * VRAM_BYTES * 0.9}


def largest_fitting(prompt_tokens: float, gen_tokens: float, rows: int = 1400, calibration: dict | None = None) -> dict | None:
    fits = [project(n, p, b, prompt_tokens, gen_tokens, rows, calibration) for n, p, b in MODEL_TABLE]
    sizes = {n: b for n, _, b in MODEL_TABLE}
    fits = [f for f in fits if f["fits"] and f["fits_vram"]]
    return max(fits, key=lambda f: sizes[f["model"]]) if fits else None


# kernels/tune on a T4: sentence-t5-base encodes every text once (a cold cache) in fp32, the fit itself is
# numpy on the CPU. Encoding is compute bound: 2 FLOPs per non-embedding weight per token.
T4_FP32_FLOPS = 8.1e12  # FLOP/s, datasheet (sentence-transformers runs fp32 unless told otherwise)
ENCODE_EFF = 0.5  # ASSUMED fraction of fp32 peak for batched encoder GEMMs (not measured on a T4)
ST5_BASE_FLOP_PARAMS = 85e6  # T5-base encoder without the token embedding: 12 x (4*768^2 + 2*768*3072)
TUNE_LOAD_S = 30.0  # load sentence-t5 from the dataset mount + CUDA init


def tune_projection(tokens: int, other_s: float) -> dict:
    """PROJECTED wall time of kernels/tune on a T4 for a run that encoded `tokens` (cold cache) and spent
    `other_s` outside the encoder on this machine's CPU (kept as is: Kaggle's GPU box has 4 vCPUs, this
    one 2, so it errs long)."""
    enc = tokens * 2 * ST5_BASE_FLOP_PARAMS / (T4_FP32_FLOPS * ENCODE_EFF)
    total = WHEEL_INSTALL_S + TUNE_LOAD_S + enc + other_s
    return {"label": "projected", "tokens": int(tokens), "encode_s": round(enc, 1), "other_s": round(other_s, 1),
            "total_s": round(total, 1), "fits": total < LIMIT_S}


def constants() -> dict:
    return {"t4_bandwidth": T4_BANDWIDTH, "t4_fp16_flops": T4_FP16_FLOPS, "gen_eff_bandwidth": GEN_EFF_BANDWIDTH,
            "gen_fixed_s": GEN_FIXED_S, "prompt_eff": PROMPT_EFF, "row_overhead_s": ROW_OVERHEAD_S,
            "calibration_points": [asdict(T4Rates(0, r, f"{s / 1e9:.2f} GB")) for s, r in _CAL]}


# --- the training chain on Kaggle T4 x2 (kernels/train): PROJECTED per stage, never measured on a T4 ---------------
# QLoRA step cost: forward 2N + backward through the frozen weights 2N (no weight grads) + the recomputed forward
# of gradient checkpointing 2N = 6N FLOPs per token trained (N = base params); a DPO pair adds the frozen
# reference's forward (2N) over both sequences: 2 x (6N + 2N) per pair token.
QLORA_FLOPS_PER_TOKEN = 6.0
DPO_FLOPS_PER_PAIR_TOKEN = 2 * (6.0 + 2.0)
QLORA_T4_EFF = 0.12  # ASSUMED fraction of the T4's fp16 peak for nf4 QLoRA (dequantise + small-batch GEMMs)
DDP_SCALING = 1.8  # ASSUMED speed-up of two T4s (DDP) over one
CONVERT_PASSES = 3  # base stage: read HF fp16, write GGUF f16, read it to quantize (+ write the quant, smaller)
KAGGLE_SESSION_S = 12 * 3600  # a Kaggle GPU notebook session (the 9 h limit is the submission's)
SESSION_SAFETY_S = 40 * 60  # kept back per session: install, load, packaging the output
# base params and bytes per GGUF weight at the chain's base_quant, by the recipe the chain trains with
CHAIN_MODELS = {"mistral-7b-instruct-t4": 7.24e9, "gemma-7b-it-t4": 8.54e9, "gemma-2b-it-t4": 2.51e9,
                "phi-2-t4": 2.78e9, "smollm2-cpu": 0.135e9, "gemma3-270m-cpu": 0.27e9}
QUANT_BYTES_PER_PARAM = {"Q8_0": 1.0625, "Q6_K": 0.82, "Q5_K_M": 0.71, "Q4_K_M": 0.6, "Q4_1": 0.625, "F16": 2.0}


def _train_s(tokens: float, flops_per_token: float, n_params: float) -> float:
    return tokens * flops_per_token * n_params / (T4_FP16_FLOPS * QLORA_T4_EFF * DDP_SCALING)


def chain_projection(cfg, session_s: float = KAGGLE_SESSION_S) -> dict:
    """PROJECTED seconds per chain stage on Kaggle T4 x2 for a ChainConfig (train/chain_config.py), and the
    sessions they split into (a stage never straddles two: the notebook resumes at stage boundaries)."""
    if cfg.sft_recipe not in CHAIN_MODELS:
        raise ValueError(f"sft_recipe {cfg.sft_recipe}: no size for it in CHAIN_MODELS (recover/projection.py)")
    n = CHAIN_MODELS[cfg.sft_recipe]
    quant = str(cfg.base_quant).upper()
    gguf = n * QUANT_BYTES_PER_PARAM.get(quant, 1.0625)
    rates = t4_rates(n, gguf)
    prompt, gen = cfg.n_ctx, cfg.max_new_tokens
    epochs_sft, epochs_dpo = float(cfg.sft_epochs), float(cfg.dpo_epochs)
    pairs = cfg.dpo_rows  # at most one pair per sampled row
    llm_load = LOAD_FIXED_S + gguf / DISK_BYTES_S
    eval_rows = cfg.eval_rows or 1000
    stages = {
        "base": 0.0 if cfg.base else LOAD_FIXED_S + CONVERT_PASSES * 2 * n / DISK_BYTES_S,
        "split": 10.0, "rows": 30.0 + 0.01 * (cfg.sft_rows + cfg.dpo_rows),
        "sft": 120.0 + _train_s(cfg.sft_rows * (prompt + gen) * epochs_sft, QLORA_FLOPS_PER_TOKEN, n),
        "sft_gguf": 60.0 + 2 * n / DISK_BYTES_S,
        # k samples per row: the prompt is evaluated once per sample (no prefix cache across samples assumed)
        "pairs": llm_load + cfg.dpo_rows * cfg.k * row_seconds(prompt, gen, rates),
        "dpo": 120.0 + _train_s(pairs * (prompt + gen) * epochs_dpo, DPO_FLOPS_PER_PAIR_TOKEN, n),
        "dpo_gguf": 60.0 + 2 * n / DISK_BYTES_S,
        "predict": 0.0 if cfg.final else 3 * (llm_load + eval_rows * row_seconds(prompt, gen, rates)),
        "eval": 0.0 if cfg.final else 120.0,
    }
    usable = session_s - SESSION_SAFETY_S
    sessions, cur, used = [], [], 0.0
    for s, sec in stages.items():
        if sec > usable:
            raise ValueError(f"chain stage {s}: projected {sec / 3600:.1f} h, longer than one Kaggle session "
                             f"({usable / 3600:.1f} h usable): shrink the recipe (rows, epochs, n_ctx)")
        if used + sec > usable:
            sessions.append(cur)
            cur, used = [], 0.0
        cur.append(s)
        used += sec
    sessions.append(cur)
    return {"label": "projected", "model_params": n, "base_quant": quant,
            "stages": {s: round(v, 1) for s, v in stages.items()}, "total_s": round(sum(stages.values()), 1),
            "session_s": session_s, "usable_session_s": usable, "sessions": sessions}


# An ensemble on Kaggle T4 x2: its LLM members answer every row one after another (each its own llama.cpp
# context), the embed member costs the embedder's encode (seconds for 1,400 rows on a GPU: neglected here).
def ensemble_projection(llm_members: list[tuple[str, float, float]], prompt_tokens: float, gen_tokens: float,
                        rows: int = 1400, calibration: dict | None = None) -> dict:
    """llm_members: (name, n_params, GGUF bytes) each. PROJECTED total time of the submission on T4 x2."""
    parts = [project(n, p, b, prompt_tokens, gen_tokens, rows, calibration) for n, p, b in llm_members]
    per_row = sum(x["s_per_row"] for x in parts)
    total = WHEEL_INSTALL_S + sum(x["load_s"] for x in parts) + rows * per_row
    return {"label": "projected" if not calibration else "calibrated", "rows": rows, "members": len(parts),
            "prompt_tokens": prompt_tokens, "gen_tokens": gen_tokens, "s_per_row": round(per_row, 3),
            "total_s": round(total, 1), "total_h": round(total / 3600, 3), "fits": total < LIMIT_S,
            "margin_h": round((LIMIT_S - total) / 3600, 3)}
