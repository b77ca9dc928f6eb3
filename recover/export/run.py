"""`recover export model`: adapter + base -> merged HF -> f16 GGUF -> quants -> verified, with a manifest."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

from .. import __version__
from .. import constants as C
from ..csvio import atomic_write_json
from ..models.hf_model import materialize_hf
from ..models.quantize import QUANT_TYPES, quantize_gguf
from .llama_src import run_converter
from .merge import merge_adapter
from .verify import hf_logits, llama_logits, verify_gguf


def _sha(path: Path) -> str | None:
    f = next((p for p in (path / "adapter_model.safetensors", path / "adapter_model.bin") if p.is_file()), None)
    return hashlib.sha256(f.read_bytes()).hexdigest()[:16] if f else None


def export(base: str, adapter: str | None, quants: list[str], out: str, name: str | None = None,
           lora_gguf: bool = False, log=print) -> dict:
    bad = [q for q in quants if q.upper() not in QUANT_TYPES]
    if bad:
        raise ValueError(f"--quant {','.join(bad)}: choose from {', '.join(QUANT_TYPES)}")
    out_p = Path(out)
    out_p.mkdir(parents=True, exist_ok=True)
    name = name or out_p.name
    base_dir = materialize_hf(base, None)  # an HF folder as is; pypi:smollm2 read from its GGUF once
    t0 = time.time()
    merged = merge_adapter(base_dir, adapter, out_p / "merged") if adapter else Path(base_dir)
    f16 = out_p / f"{name}-F16.gguf"
    run_converter("convert_hf_to_gguf.py", [str(merged), "--outfile", str(f16), "--outtype", "f16"])
    log(f"converted {merged} -> {f16}")
    _, toks, _ = llama_logits(str(f16))
    ref = hf_logits(str(merged), toks)
    files, checks = {}, {}
    for q in ["F16"] + [q.upper() for q in quants if q.upper() != "F16"]:
        path = f16 if q == "F16" else quantize_gguf(f16, out_p / f"{name}-{q}.gguf", q)
        checks[q] = verify_gguf(str(path), q, ref)
        files[q] = {"file": path.name, "bytes": path.stat().st_size}
        log(f"  {q}: {checks[q]}")
    lora = None
    if lora_gguf and adapter:
        lora = out_p / f"{name}-lora-F16.gguf"
        run_converter("convert_lora_to_gguf.py", ["--base", str(base_dir), "--outfile", str(lora), "--outtype", "f16",
                                                  str(adapter)])
        files["lora"] = {"file": lora.name, "bytes": lora.stat().st_size}
    manifest = {"format_version": C.MANIFEST_FORMAT_VERSION, "kind": "gguf_export", "recover": __version__,
                "llama_cpp_python": C.LLAMA_CPP_PYTHON_VERSION, "base": str(base), "base_hf": str(base_dir),
                "adapter": str(adapter) if adapter else None,
                "adapter_sha256": _sha(Path(adapter)) if adapter else None, "quants": list(files),
                "files": files, "verification": checks, "seconds": round(time.time() - t0, 1)}
    atomic_write_json(out_p / C.MANIFEST_FILE, manifest)
    failed = [q for q, c in checks.items() if not c["passed"]]
    if failed:
        raise RuntimeError(f"verification failed for {', '.join(failed)}: see {out_p / C.MANIFEST_FILE}")
    return manifest
