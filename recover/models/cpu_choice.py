"""The CPU engine and precision chosen for THE MACHINE THAT RUNS THEM (issue 40).

Where `recover predict` looks, first hit wins:
1. measured here: `~/.cache/recover/cpu-choice-<key>.json`, written by `recover bench --choose-cpu-quant`
   on this machine; <key> names the CPU's feature class, vendor, family/model and a hash of its SIMD flags
   (keyed like the llama wheel cache: a different CPU never reads another's measurement);
2. the rule for the CPU's feature CLASS (amx / avx512_bf16 / vnni / none), packaged in
   `recover/assets/cpu_rules.json`: each entry says where it was measured, or that it was not. A class holds
   CPUs of more than one maker, and they can disagree (avx512_bf16: an Intel Xeon ran torch fp32 fastest, bf16
   0.79x of it; an AMD Zen 5 ran bf16 2.7x fp32's speed), so a rule measured on one maker's CPU is recorded
   under `<class>/<vendor>` and read first by CPUs of that maker; the bare `<class>` entry is the fallback;
3. nothing: llama.cpp on the file as is.
A packaged file never overrides a measured one: the cache is read first and the bench never writes the
packaged rules unless asked (`--ship-class-rule`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .. import constants as C
from ..cpus import user_cache_dir
from ..csvio import atomic_write_json

# the flags that decide which kernels torch / llama.cpp can use; the cache key hashes these
SIMD_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16",
              "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
CLASSES = ("amx", "avx512_bf16", "vnni", "none")
RULES_FILE = Path(__file__).resolve().parent.parent / "assets" / C.CPU_RULES_FILE


@dataclass(frozen=True)
class CpuFeatures:
    vendor: str
    family: str
    model: str
    flags: frozenset

    @property
    def cls(self) -> str:
        """The feature class a rule is measured per: AMX tiles, AVX512 bf16 dot products, int8 dot products."""
        f = self.flags
        if "amx_bf16" in f:
            return "amx"
        if "avx512_bf16" in f:
            return "avx512_bf16"
        return "vnni" if {"avx512_vnni", "avx_vnni"} & f else "none"

    @property
    def key(self) -> str:
        simd = ",".join(x for x in SIMD_FLAGS if x in self.flags)
        h = hashlib.sha256(simd.encode()).hexdigest()[:10]
        return f"{self.cls}-{self.vendor.lower() or 'cpu'}-f{self.family}m{self.model}-{h}"

    @property
    def fast_bf16(self) -> bool:
        return self.cls in ("amx", "avx512_bf16")

    def describe(self) -> dict:
        return {"class": self.cls, "key": self.key, "vendor": self.vendor, "family": self.family, "model": self.model,
                "simd_flags": [x for x in SIMD_FLAGS if x in self.flags]}


def read_cpu_features(cpuinfo: str = "/proc/cpuinfo") -> CpuFeatures:
    """This machine's features from the first processor block of /proc/cpuinfo (empty where unreadable)."""
    info: dict[str, str] = {}
    try:
        for ln in Path(cpuinfo).read_text().splitlines():
            if not ln.strip():
                if info:
                    break
                continue
            k, _, v = ln.partition(":")
            info.setdefault(k.strip(), v.strip())
    except OSError:
        pass
    return CpuFeatures(vendor=info.get("vendor_id", ""), family=info.get("cpu family", "?"),
                       model=info.get("model", "?"), flags=frozenset(info.get("flags", "").split()))


def cache_path(feat: CpuFeatures) -> Path:
    return user_cache_dir() / f"{C.CPU_CHOICE_PREFIX}{feat.key}.json"


def read_machine_cache(prefix: str, feat: CpuFeatures | None = None) -> dict | None:
    """A per-machine measurement (`<prefix><cpu key>.json` in the user cache) of this format, else None."""
    feat = feat or read_cpu_features()
    f = user_cache_dir() / f"{prefix}{feat.key}.json"
    if not f.is_file():
        return None
    d = json.loads(f.read_text())
    if d.get("format_version") != C.CPU_CHOICE_FORMAT_VERSION or d.get("features", {}).get("key") != feat.key:
        return None  # an older format or a foreign file: measure again rather than guess
    return {**d, "source": f"measured on this machine ({f})"}


def measured_choice(feat: CpuFeatures) -> dict | None:
    """The choice `recover bench --choose-cpu-quant` measured on a CPU with exactly these features."""
    return read_machine_cache(C.CPU_CHOICE_PREFIX, feat)


def rule_keys(feat: CpuFeatures) -> list[str]:
    """The packaged rules that may decide for this CPU, first hit wins: its class measured on its maker's CPU, then
    its class measured on any."""
    return [f"{feat.cls}/{feat.vendor}", feat.cls] if feat.vendor else [feat.cls]


def class_rule(feat: CpuFeatures, rules_file: Path | None = None) -> dict | None:
    """The packaged rule for this CPU's feature class (its maker's entry first), if one is recorded."""
    f = rules_file or RULES_FILE
    if not f.is_file():
        return None
    classes = json.loads(f.read_text()).get("classes", {})
    key = next((k for k in rule_keys(feat) if k in classes), None)
    return {**classes[key], "source": f"class rule '{key}' ({f.name})"} if key else None


def cpu_choice(feat: CpuFeatures | None = None, rules_file: Path | None = None) -> dict | None:
    """{"engine", "backend", "torch_dtype", "n_seq", "quant", "source", ...} for this machine: measured here,
    else the packaged rule of its class, else None."""
    feat = feat or read_cpu_features()
    return measured_choice(feat) or class_rule(feat, rules_file)


def write_measured_choice(choice: dict, feat: CpuFeatures, log=print) -> Path:
    out = cache_path(feat)
    atomic_write_json(out, {"format_version": C.CPU_CHOICE_FORMAT_VERSION, **choice, "features": feat.describe()})
    log(f"CPU choice for this machine ({feat.cls}): {choice['backend']} -> {out}")
    return out


def write_class_rule(choice: dict, feat: CpuFeatures, rules_file: Path | None = None, log=print) -> Path:
    """Record a measured choice as the packaged rule of its feature class (`--ship-class-rule`): the fallback
    for machines of that class that have not measured their own. Written under `<class>/<vendor>` (what CPUs of
    this maker read first), and under the bare `<class>` too unless another maker's CPU measured the one there."""
    f = rules_file or RULES_FILE
    rules = json.loads(f.read_text()) if f.is_file() else {"format_version": C.CPU_CHOICE_FORMAT_VERSION, "classes": {}}
    keep = ("engine", "backend", "torch_dtype", "n_seq", "quant", "s_per_row", "quality", "command", "rows", "data")
    rule = {**{k: choice[k] for k in keep if k in choice},
            "measured_on": {k: v for k, v in feat.describe().items() if k != "key"}}
    keys = rule_keys(feat)
    bare = rules["classes"].get(feat.cls, {}).get("measured_on") or {}
    for key in keys if bare.get("vendor") in (None, feat.vendor) else keys[:1]:
        rules["classes"][key] = rule
    atomic_write_json(f, rules)
    log(f"class rule '{keys[0]}': {choice['backend']} -> {f}")
    return f
