"""The torch engine's pieces on synthetic tensors: int8 matmuls quantise activations per token, bf16 weights
prepacked compute the plain matmul, the compiled prefill glue computes the eager glue (and falls back to it),
prefill attention (fused SDPA) equals the eager masked attention, decode reads a cache in place, whole or in part."""
import pytest
import torch

from recover import constants as C
from recover.models import torch_glue
from recover.models.torch_glue import Glue, gated_act, rms_norm, rope
from recover.models.torch_lm import Int8Weight, PackedBF16Weight, attend, packs_bf16


def test_int8_matmul_is_close_and_quantises_each_token_alone():
    g = torch.Generator().manual_seed(0)
    w, x = torch.randn(96, 64, generator=g), torch.randn(5, 64, generator=g)
    lin = Int8Weight(w, torch.float32)
    exact = x @ w.t()
    err = lambda a: float(((a - exact).norm(dim=-1) / exact.norm(dim=-1)).max())  # noqa: E731
    assert err(lin(x)) < 0.02
    # one token with an outlier 1,000x the others: per token, the other rows keep their precision (one
    # scale for the whole call would round them to nothing)
    y = x.clone()
    y[0] *= 1000.0
    out = lin(y)
    assert torch.equal(out[1:], lin(x)[1:])
    assert err(torch.cat([lin(x)[:1], out[1:]])) < 0.02
    assert lin(x.view(1, 5, 64)).shape == (1, 5, 96)


def _causal_bias(B, S, T, head):
    q_pos = head + torch.arange(S)
    ok = torch.arange(T)[None, :] <= q_pos[:, None]
    bias = torch.zeros(S, T).masked_fill_(~ok, float("-inf"))
    return bias.expand(B, 1, S, T).contiguous()


def test_prefill_attention_equals_the_eager_reference_with_grouped_heads():
    g = torch.Generator().manual_seed(1)
    B, H, Hk, D, head, S = 2, 6, 2, 16, 7, 45
    T = head + S
    q = torch.randn(B, H, S, D, generator=g)
    kc, vc = torch.randn(B, Hk, T + 5, D, generator=g), torch.randn(B, Hk, T + 5, D, generator=g)
    bias = _causal_bias(B, S, T, head)
    full = attend(q, kc, vc, T, bias, 0.25)
    # grouped-query heads: query head h reads key head h // (H / Hk), as repeating the keys would
    ref_k, ref_v = kc[:, :, :T].repeat_interleave(H // Hk, 1), vc[:, :, :T].repeat_interleave(H // Hk, 1)
    p = torch.softmax(q @ ref_k.transpose(-1, -2) * 0.25 + bias, dim=-1)
    assert torch.allclose(full, p @ ref_v, atol=1e-5)


def test_decode_reading_the_whole_cache_equals_reading_the_filled_part():
    """`FusedLM.decode` reads all L cells (one contiguous view: no copy); masked cells change nothing."""
    g = torch.Generator().manual_seed(3)
    B, H, Hk, D, L = 3, 4, 2, 8, 40
    pos = torch.tensor([5, 16, 11])
    for dt, tol in ((torch.float32, 1e-6), (torch.bfloat16, 2e-2)):
        kc, vc = torch.randn(B, Hk, L, D, generator=g).to(dt), torch.randn(B, Hk, L, D, generator=g).to(dt)
        q = torch.randn(B, H, 1, D, generator=g).to(dt)
        ok = torch.arange(L)[None] <= pos[:, None]
        bias = torch.zeros(B, 1, 1, L, dtype=dt).masked_fill_(~ok[:, None, None], float("-inf"))
        whole = attend(q, kc, vc, L, bias, 0.3)
        part = attend(q, kc[:, :, :17].contiguous(), vc[:, :, :17].contiguous(), 17, bias[..., :17].contiguous(), 0.3)
        assert torch.allclose(whole.float(), part.float(), atol=tol)
        kc[:, :, 17:] = 1e3  # anything past every row's position: ignored
        assert torch.allclose(attend(q, kc, vc, L, bias, 0.3).float(), whole.float(), atol=tol)


def test_decode_attends_over_a_sliced_fp32_cache_as_over_a_copy():
    g = torch.Generator().manual_seed(2)
    B, H, Hk, D, L, upto = 3, 4, 2, 8, 40, 17
    kc, vc = torch.randn(B, Hk, L, D, generator=g), torch.randn(B, Hk, L, D, generator=g)
    q = torch.randn(B, H, 1, D, generator=g)
    pos = torch.tensor([5, 16, 11])
    bias = torch.zeros(B, 1, 1, upto).masked_fill_(~(torch.arange(upto)[None] <= pos[:, None])[:, None, None],
                                                    float("-inf"))
    got = attend(q, kc, vc, upto, bias, 0.3)
    want = attend(q, kc[:, :, :upto].contiguous(), vc[:, :, :upto].contiguous(), upto, bias, 0.3)
    assert torch.allclose(got, want, atol=1e-6)
    # a row's answer ignores every key after its position
    kc2 = kc.clone()
    kc2[0, :, 6:] = 1e3
    assert torch.allclose(attend(q, kc2, vc, upto, bias, 0.3)[0], got[0], atol=1e-6)


@pytest.mark.skipif(not packs_bf16(), reason="this CPU or torch build has no oneDNN bf16 linear")
def test_prepacked_bf16_weights_compute_the_plain_bf16_matmul():
    g = torch.Generator().manual_seed(4)
    w = torch.randn(96, 64, generator=g).to(torch.bfloat16)  # (out, in), as the checkpoint stores it
    packed = PackedBF16Weight(w)
    for rows in (1, 3, 24):  # decode sizes: the same oneDNN products, bit for bit
        x = torch.randn(rows, 64, generator=g).to(torch.bfloat16)
        assert torch.equal(packed(x), x @ w.t())
    x = torch.randn(2, 7, 64, generator=g).to(torch.bfloat16)
    assert packed(x).shape == (2, 7, 96)
    assert torch.allclose(packed(x).float(), (x @ w.t()).float(), atol=0.05)


def _glue_inputs(dtype):
    g = torch.Generator().manual_seed(5)
    x = (3 * torch.randn(2, 9, 32, generator=g)).to(dtype)
    w = torch.randn(32, generator=g).to(dtype)
    cos, sin = torch.randn(2, 1, 9, 32, generator=g).to(dtype), torch.randn(2, 1, 9, 32, generator=g).to(dtype)
    q = torch.randn(2, 4, 9, 32, generator=g).to(dtype)
    return x, w, q, cos, sin


def test_the_compiled_prefill_glue_computes_the_eager_glue(monkeypatch):
    monkeypatch.delenv(C.ENV_TORCH_COMPILE, raising=False)
    compiled = torch_glue.prefill_glue()
    assert isinstance(compiled.norm, torch_glue._Compiled)
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 0.07)):  # bf16: one rounding at the largest values
        x, w, q, cos, sin = _glue_inputs(dtype)
        for gemma in (False, True):
            assert torch.allclose(compiled.norm(x, w, 1e-6, gemma).float(), rms_norm(x, w, 1e-6, gemma).float(),
                                  atol=tol)
            assert torch.allclose(compiled.act(x, x, gemma).float(), gated_act(x, x, gemma).float(), atol=tol * 10)
        assert torch.allclose(compiled.rope(q, cos, sin).float(), rope(q, cos, sin).float(), atol=tol * 10)
    monkeypatch.setenv(C.ENV_TORCH_COMPILE, "0")
    assert torch_glue.prefill_glue().norm is rms_norm


def test_a_glue_that_cannot_compile_runs_eager_and_says_so_once(monkeypatch, capsys):
    def no_compiler(fn, **_):
        def broken(*args):
            raise RuntimeError("InductorError: no working C++ compiler found\nmore detail")
        return broken
    monkeypatch.setattr(torch, "compile", no_compiler)
    monkeypatch.setattr(torch_glue._Compiled, "failed", False)
    glue = Glue(True)
    x, w, q, cos, sin = _glue_inputs(torch.float32)
    assert torch.equal(glue.norm(x, w, 1e-6, False), rms_norm(x, w, 1e-6, False))
    assert torch.equal(glue.rope(q, cos, sin), rope(q, cos, sin))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torch.compile failed" in err[0] and "no working C++ compiler" in err[0], err


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3_text"])
def test_the_fused_forward_gives_transformers_logits_for_each_architecture(arch, monkeypatch):
    """FusedLM on a tiny random model of each architecture it builds: a prefill's logits at every position, and a
    decode step's, equal transformers' forward. Qwen2's query/key/value biases are random, so dropping one shows."""
    from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config,
                              Qwen2ForCausalLM)

    from recover.models.torch_lm import FusedLM

    monkeypatch.setenv(C.ENV_TORCH_COMPILE, "0")
    dims = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64)
    make = {"llama": (LlamaForCausalLM, LlamaConfig), "qwen2": (Qwen2ForCausalLM, Qwen2Config),
            "gemma3_text": (Gemma3ForCausalLM, Gemma3TextConfig)}[arch]
    extra = {"head_dim": 8, "sliding_window": 512} if arch == "gemma3_text" else {}
    torch.manual_seed(0)
    hf = make[0](make[1](**dims, **extra)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # biases and norms away from their init (zeros, ones)
    if arch == "qwen2":
        assert hf.model.layers[0].self_attn.q_proj.bias is not None
    tokens = [3, 17, 42, 5, 88, 61, 9]
    fused = FusedLM(hf, torch.float32, max_positions=64)
    cache, got = fused.sequence(tokens[:-1], last="all")
    with torch.no_grad():
        want = hf(torch.tensor([tokens])).logits
    assert torch.allclose(got[0], want[0, :-1], atol=1e-4)
    step_cache = fused.new_cache(1, len(tokens))
    for (kc, vc), (hk, hv) in zip(step_cache, cache):
        kc[:, :, : len(tokens) - 1], vc[:, :, : len(tokens) - 1] = hk, hv
    with torch.no_grad():
        step = fused.decode(step_cache, torch.tensor([tokens[-1]]), torch.tensor([len(tokens) - 1]))
    assert torch.allclose(step[0], want[0, -1], atol=1e-4)
