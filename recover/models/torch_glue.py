"""The elementwise glue between the torch engine's matmuls (RMS norms, rotary embedding, gated activation), eager
and, for prefills, fused by torch.compile.

Why: in eager torch each of these is 5-8 passes over the activations (an RMS norm: cast, square, mean, add,
rsqrt, multiply, cast, scale). At prefill sizes those passes, not the matmuls, were a third of a prefill on the
AMX Xeon (2 threads, 5 rows x 540 tokens: one norm 3.8 ms eager, 0.43 ms compiled, timed alone; where a
prefill's time goes: `make experiment NAME=engine_profile ARGS="--rows 24 --dtype bf16 --n-seq 24 --ops"`).
At decode sizes (one token a row) a compiled call costs more than the few eager ops it replaces (0.04 vs
0.027 ms), so decode steps stay eager.

Compiled with `emulate_precision_casts`: the casts to bf16 round where the eager code rounds, so the fused
kernels compute what the eager code does (a few elements in a million differ in the last bit, from the order of
a row's sum). Where torch.compile cannot run (no C++ compiler, an inductor error) the first failing call says so
in one line and the glue stays eager from then on. RECOVER_TORCH_COMPILE=0 turns it off.
"""
from __future__ import annotations

import os
import sys

import torch
import torch.nn.functional as F

from .. import constants as C


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, gemma: bool) -> torch.Tensor:
    xf = x.float()
    xn = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    if gemma:  # (x * w) in fp32, then cast (Gemma3RMSNorm; w is 1 + weight, fp32)
        return (xn * weight).to(x.dtype)
    return xn.to(x.dtype) * weight  # llama: normalise in fp32, cast, then scale (LlamaRMSNorm)


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + rotate_half(x) * sin


def gated_act(g: torch.Tensor, u: torch.Tensor, gemma: bool) -> torch.Tensor:
    return (F.gelu(g, approximate="tanh") if gemma else F.silu(g)) * u


class Glue:
    """The three glue functions, eager or compiled."""

    def __init__(self, compiled: bool):
        self.norm = _Compiled(rms_norm) if compiled else rms_norm
        self.rope = _Compiled(rope) if compiled else rope
        self.act = _Compiled(gated_act) if compiled else gated_act


EAGER = Glue(False)


def prefill_glue() -> Glue:
    """The glue prefills use: compiled unless RECOVER_TORCH_COMPILE=0."""
    return Glue(os.environ.get(C.ENV_TORCH_COMPILE, "1") != "0")


class _Compiled:
    """torch.compile(fn) (dynamic shapes: one kernel for every batch and length), eager after a failure."""
    failed = False  # one failure (no C++ compiler) turns every compiled glue function eager, said once

    def __init__(self, fn):
        import torch._inductor.config as inductor  # torch's compiler: imported only where the glue is compiled

        inductor.emulate_precision_casts = True  # round at each cast as eager does (see the module docstring)
        inductor.compile_threads = 1  # no pool of compile workers beside the engine on a 2-core machine
        self.fn, self.compiled = fn, torch.compile(fn, dynamic=True)

    def __call__(self, *args):
        if not _Compiled.failed:
            try:
                return self.compiled(*args)
            except Exception as e:  # noqa: BLE001 - no C++ compiler, an inductor bug: the eager glue computes the same
                first = (str(e).splitlines() or [""])[0][:200]
                print(f"torch engine: torch.compile failed ({type(e).__name__}: {first}); the glue runs eager "
                      f"(set {C.ENV_TORCH_COMPILE}=0 to skip the attempt)", file=sys.stderr)
                _Compiled.failed = True
        return self.fn(*args)
