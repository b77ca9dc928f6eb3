"""This machine's limits for the two phases of a row, measured, and each backend's fraction of them.

prompt: a matmul-bound phase. Limit = torch's faster float GEMM (bf16 or fp32: on a CPU without AMX fp32
        can be the faster one) on this CPU at the prompt's shape (2,400 tokens x 576 -> 1,536, SmolLM2's MLP),
        FLOP/s, at the bench's threads; for an int8 backend, torch's int8 x int8 GEMM (`_int_mm`) at that
        shape, ops/s. Achieved = 2 x the model's non-embedding parameters x prompt tokens evaluated / prompt
        seconds (attention and norms are extra work on top).
generation: a weight-streaming phase (each decode step reads every weight once for the whole batch). Limit =
        memory read bandwidth: one pass over 256 MB (a torch sum; a bf16 matrix-vector pass measured lower,
        and llama.cpp's 4-bit kernels stream above it).
        Achieved = the backend's weight bytes (in the format it computes from) x decode steps / generation
        seconds.
Both limits are what THIS CPU reaches with the same library the torch backends use, not a datasheet figure:
a backend's fraction can exceed 1 only by doing less work than stated (it does not).
"""
from __future__ import annotations

import time

from .measure import backend_dtype


def measure_limits(threads: int) -> dict:
    import torch  # torch: heavy, optional extra

    torch.set_num_threads(threads)

    def best(f, n: int = 5) -> float:
        f()
        times = []
        for _ in range(n):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return min(times)

    flop = 2 * 2400 * 576 * 1536
    gemm = {}
    for dt in (torch.bfloat16, torch.float32):
        a, w = torch.randn(2400, 576, dtype=dt), torch.randn(1536, 576, dtype=dt)
        gemm[str(dt).split(".")[1]] = flop / best(lambda: torch.nn.functional.linear(a, w))  # noqa: B023
    a8, w8 = torch.randint(-127, 127, (2400, 576), dtype=torch.int8), torch.randint(-127, 127, (1536, 576), dtype=torch.int8)
    int8 = flop / best(lambda: torch._int_mm(a8, w8.t()))
    big = torch.ones(64 << 20, dtype=torch.float32)  # 256 MB: well past the caches, as a model's weights are
    stream = big.numel() * 4 / best(lambda: big.sum())
    fast = max(gemm, key=gemm.get)
    return {"prompt_flop_s": round(gemm[fast]), "prompt_int8_op_s": round(int8), "gen_bytes_s": round(stream),
            "gemm_flop_s": {k: round(v) for k, v in gemm.items()}, "threads": threads,
            "how": f"{fast} GEMM 2400x576x1536 (FLOP/s; bf16 {gemm['bfloat16'] / 1e12:.2f}, fp32 "
                   f"{gemm['float32'] / 1e12:.2f} T); int8 GEMM {int8 / 1e12:.2f} Tops for int8 backends; one read "
                   "pass over 256 MB (bytes/s); best of 5"}


GEMM_OF_DTYPE = {"bf16": "bfloat16", "amp": "bfloat16", "int8": "int8"}  # fp32 and llama.cpp are never skipped
SLOW_PRECISION = 0.5  # a precision whose GEMM runs below this fraction of fp32's cannot win here


def slow_precisions(backends: list[str], limits: dict) -> dict[str, str]:
    """{backend: why it is not run} for backends computing in a precision this CPU multiplies far slower than fp32
    (measured: no bf16 or int8 dot-product hardware, emulated; on a 2-core EPYC without AVX-512 bf16 ran at 0.15x
    and int8 at 0.05x of fp32): their GEMMs are most of a row's time, so they can only lose, slowly (there, 24 rows of
    torch int8 took 10 min, and torch bf16 had not finished after 12)."""
    fp32 = limits["gemm_flop_s"]["float32"]
    rate = {**limits["gemm_flop_s"], "int8": limits["prompt_int8_op_s"]}
    out = {}
    for b in backends:
        prec = GEMM_OF_DTYPE.get(backend_dtype(b))
        if prec and rate[prec] < SLOW_PRECISION * fp32:
            out[b] = (f"not run: this CPU's {prec} GEMM {rate[prec] / 1e12:.3f} T/s is {rate[prec] / fp32:.2f}x its "
                      f"fp32 GEMM (the bench's limits; --all-precisions runs it anyway)")
    return out


def phase_fractions(b: dict, limits: dict) -> dict:
    """Achieved rates and fractions of the limits for one backend's result (needs body_params, weight_bytes,
    gen_steps; a backend that lacks one gets None for that phase)."""
    out = {}
    n, tp = b.get("body_params"), b.get("prompt_s_per_row", 0) * b.get("rows", 0)
    if n and tp:
        flops = 2 * n * b["prompt_tokens_evaluated_per_row"] * b["rows"] / tp
        lim = limits.get("prompt_int8_op_s") if b.get("torch_dtype") == "int8" else None
        out["prompt_flop_s"], out["prompt_of_limit"] = round(flops), round(flops / (lim or limits["prompt_flop_s"]), 3)
    tg, steps, wb = b.get("gen_s_per_row", 0) * b.get("rows", 0), b.get("gen_steps"), b.get("weight_bytes")
    if tg and steps and wb:
        bps = wb * steps / tg
        out["gen_bytes_s"], out["gen_of_limit"] = round(bps), round(bps / limits["gen_bytes_s"], 3)
        # what a step must read is the weights AND each live row's keys and values: at 24 rows of ~450 tokens
        # those are about as many bytes as the weights, so a step at the bandwidth reads ~50% counting weights only
        if b.get("gen_kv_bytes"):
            kv = (wb * steps + b["gen_kv_bytes"]) / tg
            out["gen_kv_bytes_s"], out["gen_kv_of_limit"] = round(kv), round(kv / limits["gen_bytes_s"], 3)
            out["kv_read_over_needed"] = round(b.get("gen_kv_read_bytes", 0) / b["gen_kv_bytes"], 3)
    # the other bound of a decode step: its arithmetic (every weight, the output layer's too, once per generated
    # token). Where rows in flight are many and the GEMM is slow (fp32 on an AVX2-only CPU) it is the nearer one.
    n_all, gt = b.get("n_params"), b.get("gen_tokens_per_row")
    if tg and n_all and gt:
        flops = 2 * n_all * gt * b["rows"] / tg
        lim = limits.get("prompt_int8_op_s") if b.get("torch_dtype") == "int8" else None
        out["gen_flop_s"], out["gen_flop_of_limit"] = round(flops), round(flops / (lim or limits["prompt_flop_s"]), 3)
    return out


def format_limits(r: dict) -> list[str]:
    lim = r.get("limits")
    if not lim:
        return []
    lines = [f"machine limits ({lim['how']}, {lim['threads']} threads): prompt {lim['prompt_flop_s'] / 1e12:.2f} "
             f"TFLOP/s, generation {lim['gen_bytes_s'] / 1e9:.1f} GB/s"]
    ran = {n: b for n, b in r["backends"].items() if "error" not in b}
    lines.append(f"{'by phase':24}" + "".join(f"{n:>16}" for n in ran))
    for key, label, scale, unit in (("prompt_flop_s", "prompt TFLOP/s", 1e12, ""), ("prompt_of_limit", "  of limit", 1, ""),
                                    ("gen_bytes_s", "generation GB/s", 1e9, ""), ("gen_of_limit", "  of limit", 1, ""),
                                    ("gen_kv_bytes_s", "  + KV cache GB/s", 1e9, ""),
                                    ("gen_kv_of_limit", "  of limit", 1, ""),
                                    ("gen_flop_s", "generation TFLOP/s", 1e12, ""),
                                    ("gen_flop_of_limit", "  of GEMM limit", 1, "")):
        cells = []
        for b in ran.values():
            v = b.get("phases", {}).get(key)
            cells.append("-" if v is None else f"{v / scale:.2f}" if scale != 1 else f"{100 * v:.0f}%")
        lines.append(f"{label:24}" + "".join(f"{c:>16}" for c in cells))
    return lines
