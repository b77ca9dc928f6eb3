"""The torch engine's model: the GGUF's own weights (read and LoRA-merged by transformers) in a fused forward
with a preallocated KV cache, for the architectures the members use (llama: SmolLM2; gemma3: Gemma-3-270M; qwen2:
Qwen2.5-Coder-0.5B, llama's layout plus biases on the query, key and value projections).

Why not `model.generate`: `recover bench` measured the HF decode step at ~6x the cost of streaming the weights
once (per-step Python, logits processors, a cache that grows by concatenation). Here one decode step is ~20
tensor ops a layer: q/k/v in ONE matmul and gate/up in ONE, the new keys written in place into a cache
allocated once per batch, attention over the filled part only (`attend`: grouped-query heads not repeated).
In bf16 the matmuls run on weights prepacked once for oneDNN (`PackedBF16Weight`), a prefill's elementwise glue
(norms, rotary, activation) is fused by torch.compile (models/torch_glue.py) and its keys are padded to whole
blocks of the fused attention kernel (`KEY_BLOCK`).

Layout of a batch (equal work with the llama engine): every row starts with the shared instruction head
(its keys computed once, copied into each batch's cache), then the row's own tokens right-padded to the
batch's longest; generated token t of row i sits at position head + len_i + t, so a row's cache is
contiguous and the decode mask is just `key position <= the row's position`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .torch_glue import EAGER, prefill_glue

ARCHS = ("llama", "gemma3_text", "qwen2")
KEY_BLOCK = 64  # a prefill's keys are padded to a multiple of this (`FusedLM.prefill`)


class Int8Weight:
    """A matmul's weights in int8, one symmetric scale per output channel (N, K); activations quantised per
    token (row), multiplied int8 x int8 with int32 sums (`torch._int_mm`: VNNI dot products) and rescaled. On
    this project's CPU (2 cores, AVX512-VNNI/BF16, no AMX) that ran at ~1,100 GOPS against 110-190 GFLOP/s for
    bf16 F.linear at prompt sizes, and 4x faster at decode sizes (8 rows) too (docs/benchmarks.md)."""

    def __init__(self, w: torch.Tensor, dtype: torch.dtype):
        w = w.float()
        self.scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-8)
        self.q = torch.round(w / self.scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
        self.dtype = dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        xf = x.reshape(-1, shape[-1]).float()
        s = xf.abs().amax(dim=-1, keepdim=True).clamp_(min=1e-8).div_(127.0)  # per token: an outlier token
        y = torch._int_mm(torch.round(xf / s).to(torch.int8), self.q.t())  # costs only its own precision
        return y.float().mul_(s).mul_(self.scale).to(self.dtype).view(*shape[:-1], -1)


class PackedBF16Weight:
    """A bf16 matmul's weights reordered ONCE into oneDNN's blocked layout (what torch.compile's freezing does
    for CPU linears): `x @ w` on a plain bf16 tensor repacks the weights on every call. Measured on the AMX Xeon
    (2 threads, SmolLM2's 120 layer matmuls streamed in turn): 12.7 vs 20.6 ms at 3 rows (a decode step's), 14.9 vs
    21.5 at 24, 32.5 vs 46.5 at 256, equal at 2,048 (timed alone, not kept as a script). Same products: oneDNN computes
    both (bit-equal at decode sizes; at some prompt sizes its blocking differs by a rounding). oneDNN's epilogues
    (the residual add, silu times up inside the matmul) were tried: faster alone (4.8 vs 6.2 ms a gated MLP at
    2,700 tokens), no faster in the engine (a 24-row call 0.218 vs 0.209-0.216 s/row, within this VM's noise),
    so not used."""

    def __init__(self, w: torch.Tensor):
        self.out = w.shape[0]
        self.packed = torch.ops.mkldnn._reorder_linear_weight(w.to(torch.bfloat16).contiguous(), 24)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), self.packed, None, "none", [], "")
        return y.view(*x.shape[:-1], self.out)


def packs_bf16() -> bool:
    """Whether this torch build and CPU run oneDNN's bf16 linear on prepacked weights."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False


def _linear(x: torch.Tensor, w) -> torch.Tensor:
    """x @ w for float weights stored (in, out): on this CPU fp32 `x @ w` matched F.linear's (out, in) layout at
    prompt sizes and ran 1.3-3x faster at decode sizes (8-16 rows: 0.057 vs 0.118 ms for 576 -> 960)."""
    return torch.matmul(x, w) if isinstance(w, torch.Tensor) else w(x)


def attend(q, kc, vc, upto: int, bias, scale: float, fused: bool = True) -> torch.Tensor:
    """Attention of q (B, H, S, D) over the first `upto` keys of a contiguous cache kc, vc (B, Hkv, L, D),
    grouped-query heads served without copying the keys; bias (B, 1, S, upto) additive (0 or -inf), built
    once per forward (`FusedLM.masks`). Measured on the AMX Xeon (2 threads, 24 rows x 300 tokens, one layer):
    - a prefill (S > 1) runs torch's fused SDPA kernel: 14.6 ms in bf16 against 52 ms for the scores and
      probabilities written out (fp32: 37 vs 84 ms); the additive mask carries causality, padding and windows;
    - a decode step (S == 1) is bandwidth-bound on the cache: computed by hand as transformers' eager attention
      does, the keys read in place as (B * Hkv, upto, D) views. With upto == L (`FusedLM.decode` passes the
      whole cache) the view is contiguous and a bf16 `bmm` reads it without a copy: 0.70 ms for 24 rows x 732
      keys, against 2.3 ms for a slice (bf16 `bmm` copies a strided one) and 1.0 ms for SDPA.
    fused=False: a prefill computed by hand too (int8: its per-token activation scales amplify the fused kernel's
    batch-dependent rounding into different answers for a row alone and in a padded batch).
    A masked VALUE still meets a zero weight, so cells must hold finite numbers: the decode cache starts zeroed."""
    if q.shape[2] > 1 and fused:
        return F.scaled_dot_product_attention(q, kc[:, :, :upto], vc[:, :, :upto], attn_mask=bias, scale=scale,
                                              enable_gqa=True)
    B, Hk, L, D = kc.shape
    return _attend(q, kc.view(B * Hk, L, D)[:, :upto], vc.view(B * Hk, L, D)[:, :upto], bias, scale)


def _attend(q, k3, v3, bias, scale: float) -> torch.Tensor:
    B, H, S, D = q.shape
    T = k3.shape[1]
    Hk = k3.shape[0] // B
    G = H // Hk
    s = torch.bmm(q.reshape(B * Hk, G * S, D) * scale, k3.transpose(1, 2)).view(B, Hk, G, S, T)
    s.add_(bias[:, :, None])
    p = torch.softmax(s, dim=-1).view(B * Hk, G * S, T)
    return torch.bmm(p, v3).view(B, H, S, D)


class FusedLM:
    """Inference-only forward over an HF causal LM's weights (not a copy of the module tree)."""

    def __init__(self, hf, dtype: torch.dtype | str, max_positions: int = 4096):
        cfg = getattr(hf.config, "text_config", hf.config)
        self.arch = cfg.model_type
        if self.arch not in ARCHS:
            raise ValueError(f"torch engine: architecture {self.arch!r} is not built here ({', '.join(ARCHS)}); "
                             "use --engine llama")
        # "int8": every matmul (the layers' and the head's) on int8 weights (Int8Weight), the rest of the forward
        # (norms, attention, residual stream) in bf16
        self.int8 = dtype == "int8"
        dtype = torch.bfloat16 if self.int8 else dtype
        self.dtype, self.cfg = dtype, cfg
        # keys, values and attention: the model's dtype; fp32 under int8, whose answers must not depend on a
        # row's neighbours in the batch (bf16 attention rounds differently with the batch's padded length)
        self.kv_dtype = torch.float32 if self.int8 else dtype
        self.n_head, self.n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.gemma = self.arch == "gemma3_text"
        self.eps = cfg.rms_norm_eps
        base = hf.model

        packed = dtype == torch.bfloat16 and not self.int8 and packs_bf16()

        def w(t):
            t = t.detach()
            if self.int8:
                return Int8Weight(t, dtype)
            return PackedBF16Weight(t) if packed else t.to(dtype).t().contiguous()
        # gemma's norms scale by (1 + weight), in fp32 as transformers does; llama's by weight
        nw = (lambda n: (1.0 + n.weight.detach().float())) if self.gemma else (lambda n: n.weight.detach().to(dtype))
        self.layers = []
        for i, layer in enumerate(base.layers):
            a, m = layer.self_attn, layer.mlp
            L = {"qkv": w(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])), "o": w(a.o_proj.weight),
                 "gu": w(torch.cat([m.gate_proj.weight, m.up_proj.weight])), "down": w(m.down_proj.weight),
                 "in_norm": nw(layer.input_layernorm), "type": "full_attention", "qkv_bias": None}
            if a.q_proj.bias is not None:  # qwen2
                L["qkv_bias"] = torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]).detach().to(dtype)
            if self.gemma:
                L.update(post_attn=nw(layer.post_attention_layernorm), pre_ff=nw(layer.pre_feedforward_layernorm),
                         post_ff=nw(layer.post_feedforward_layernorm), q_norm=nw(a.q_norm), k_norm=nw(a.k_norm),
                         type=cfg.layer_types[i])
            else:
                L["post_attn"] = nw(layer.post_attention_layernorm)
            self.layers.append(L)
        self.final_norm = nw(base.norm)
        self.embed = base.embed_tokens.weight.detach().to(dtype).contiguous()
        self.lm_head = w(hf.get_output_embeddings().weight)
        # transformers multiplies gemma's embeddings by sqrt(hidden) rounded to the weights' dtype
        self.embed_scale = torch.tensor(math.sqrt(cfg.hidden_size)).to(dtype) if self.gemma else None
        self.scale = (cfg.query_pre_attn_scalar ** -0.5) if self.gemma else self.head_dim ** -0.5
        self.window = getattr(cfg, "sliding_window", None) if self.gemma else None
        self.rope = {t: self._rope_table(self._theta(t), max_positions) for t in {L["type"] for L in self.layers}}
        self.max_positions = max_positions
        self.glue = prefill_glue()  # prefills: the norms, rotary and activation fused (torch_glue.py)

    def _theta(self, layer_type: str) -> float:
        rp = getattr(self.cfg, "rope_parameters", None) or {}
        rp = rp.get(layer_type, rp) if isinstance(rp, dict) else {}
        if rp.get("rope_type", "default") != "default":
            raise ValueError(f"torch engine: rope type {rp.get('rope_type')!r} is not built here; use --engine llama")
        return float(rp.get("rope_theta", getattr(self.cfg, "rope_theta", 10000.0)))

    def _rope_table(self, theta: float, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        inv = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
        f = torch.arange(n, dtype=torch.float32)[:, None] * inv
        emb = torch.cat((f, f), dim=-1)
        return emb.cos().to(self.dtype), emb.sin().to(self.dtype)

    # --- pieces ----------------------------------------------------------------------------------
    def _norm(self, x: torch.Tensor, weight: torch.Tensor, glue=EAGER) -> torch.Tensor:
        return glue.norm(x, weight, self.eps, self.gemma)

    def decode_cache(self, batch: int, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The cache decode steps read, in the model's dtype: each step reads ALL of it as one contiguous view
        (`decode`), which bf16 `bmm` reads in place (a slice of it was copied first: half a decode step)."""
        return self.new_cache(batch, length)

    def new_cache(self, batch: int, length: int, dtype=None, zeroed: bool = True) -> list[tuple[torch.Tensor, torch.Tensor]]:
        # zeros where cells may be read before written (the decode cache): a masked cell's weight is 0, but a
        # NaN bit pattern left in memory would still poison the row (seen in bf16: answers cut to a token or two)
        shape = (batch, self.n_kv, length, self.head_dim)
        dtype = dtype or self.kv_dtype
        new = torch.zeros if zeroed else torch.empty
        return [(new(shape, dtype=dtype), new(shape, dtype=dtype)) for _ in self.layers]

    def masks(self, q_pos: torch.Tensor, key_ok: torch.Tensor, dtype=None) -> dict[str, torch.Tensor]:
        """q_pos (B, S) absolute positions; key_ok (B, T) keys that hold a token of the row -> additive masks
        (B, 1, S, T), 0 where a query may look and -inf elsewhere, per layer type: causal, the row's keys only,
        gemma's sliding window on its local layers."""
        k = torch.arange(key_ok.shape[1])
        m = (k[None, None, :] <= q_pos[:, :, None]) & key_ok[:, None, :]
        ms = {"full_attention": m}
        if self.window:
            ms["sliding_attention"] = m & (k[None, None, :] > q_pos[:, :, None] - self.window)
        return {t: torch.zeros(x.shape, dtype=dtype or self.kv_dtype).masked_fill_(~x, float("-inf"))[:, None]
                for t, x in ms.items()}

    def forward(self, ids: torch.Tensor, pos: torch.Tensor, cache, write, masks: dict, upto: int,
                last: torch.Tensor | str | None = None) -> torch.Tensor:
        """ids, pos: (B, S). write(k_cache, v_cache, k, v) stores the new keys; attention reads cache[..., :upto].
        -> logits (B, V) at `last` (per-row index into S; default the last column; "all": (B, S, V)), float32."""
        B, S = ids.shape
        x = F.embedding(ids, self.embed)
        if self.embed_scale is not None:
            x = x * self.embed_scale
        H, Hk, D = self.n_head, self.n_kv, self.head_dim
        glue = self.glue if S > 1 else EAGER  # one token a row: a compiled call costs more than it saves
        rope = {t: (c[pos][:, None], s[pos][:, None]) for t, (c, s) in self.rope.items()}
        for L, (kc, vc) in zip(self.layers, cache):
            h = self._norm(x, L["in_norm"], glue)
            qkv = _linear(h, L["qkv"])
            if L["qkv_bias"] is not None:
                qkv = qkv + L["qkv_bias"]
            q, k, v = qkv.split((H * D, Hk * D, Hk * D), dim=-1)
            q = q.view(B, S, H, D).transpose(1, 2)
            k = k.view(B, S, Hk, D).transpose(1, 2)
            v = v.view(B, S, Hk, D).transpose(1, 2)
            if self.gemma:
                q, k = self._norm(q, L["q_norm"], glue), self._norm(k, L["k_norm"], glue)
            cos, sin = rope[L["type"]]
            q, k = glue.rope(q, cos, sin), glue.rope(k, cos, sin)
            write(kc, vc, k, v)
            a = attend(q.to(kc.dtype), kc, vc, upto, masks[L["type"]], self.scale, fused=not self.int8).to(x.dtype)
            a = _linear(a.transpose(1, 2).reshape(B, S, H * D), L["o"])
            if self.gemma:
                a = self._norm(a, L["post_attn"], glue)
                x = x + a
                h = self._norm(x, L["pre_ff"], glue)
            else:
                x = x + a
                h = self._norm(x, L["post_attn"], glue)
            g, u = _linear(h, L["gu"]).chunk(2, dim=-1)
            f = _linear(glue.act(g, u, self.gemma), L["down"])
            x = x + (self._norm(f, L["post_ff"], glue) if self.gemma else f)
        if last == "all":  # teacher forcing: every position's logits (B, S, V)
            return _linear(self._norm(x, self.final_norm, glue), self.lm_head).float()
        idx = torch.full((B,), S - 1) if last is None else last
        x = self._norm(x[torch.arange(B), idx], self.final_norm)
        return _linear(x, self.lm_head).float()

    # --- the three calls a batch makes ---------------------------------------------------------------
    def head(self, tokens: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The shared head's keys/values, (1, kv heads, len, dim) per layer."""
        return self.sequence(tokens)[0]

    def sequence(self, tokens: list[int], last=None) -> tuple[list, torch.Tensor]:
        """One sequence from position 0 into a fresh cache -> (the cache, its logits at `last`)."""
        n = len(tokens)
        cache = self.new_cache(1, n)
        pos = torch.arange(n)[None]

        def write(kc, vc, k, v):
            kc.copy_(k)
            vc.copy_(v)
        with torch.no_grad():
            out = self.forward(torch.tensor([tokens]), pos, cache, write,
                               self.masks(pos, torch.ones(1, n, dtype=torch.bool)), n, last=last)
        return cache, out

    def prefill(self, cache, head, rows: list[list[int]], slots: list[int], src: list[int] | None = None) -> torch.Tensor:
        """The rows' own tokens (after the shared head) into `slots` of `cache` -> next-token logits per slot.
        They run right-padded on a small cache of their own (the head's keys copied in), installed into the
        slots afterwards, so the other slots can go on decoding around them. `src`: the row each slot copies
        (default one row a slot): a row sampled k times is evaluated once and fanned out to its k slots."""
        src = list(range(len(rows))) if src is None else src
        B, lens = len(rows), torch.tensor([len(r) for r in rows])
        head_len = head[0][0].shape[2] if head else 0
        S = int(lens.max())
        T = head_len + S
        # the keys padded to a multiple of 64 (masked, zeroed): torch's CPU flash attention runs a partial key
        # block several times slower (AMX Xeon, 5 rows x 450 queries, bf16: 8.0 ms at 511 keys, 5.0 at 512;
        # 8.1 at 575, 5.9 at 576)
        Tp = -(-T // KEY_BLOCK) * KEY_BLOCK
        local = self.new_cache(B, Tp, zeroed=False)  # every cell is written: the head's, the rows' (pads too), the tail
        for (kc, vc), (hk, hv) in zip(local, head or []):
            kc[:, :, :head_len] = hk
            vc[:, :, :head_len] = hv
        for kc, vc in local:
            kc[:, :, T:] = 0
            vc[:, :, T:] = 0
        ids = torch.tensor([r + [0] * (S - len(r)) for r in rows])
        pos = head_len + torch.arange(S)[None].expand(B, S)
        key_ok = torch.zeros(B, Tp, dtype=torch.bool)
        key_ok[:, :head_len] = True
        key_ok[:, head_len:T] = torch.arange(S)[None] < lens[:, None]

        def write(kc, vc, k, v):
            kc[:, :, head_len:T] = k
            vc[:, :, head_len:T] = v
        logits = self.forward(ids, pos, local, write, self.masks(pos, key_ok), Tp, last=lens - 1)
        idx, rows_of = torch.tensor(slots), torch.tensor(src)
        for (kc, vc), (lk, lv) in zip(cache, local):
            kc[idx, :, :T] = lk[rows_of, :, :T].to(kc.dtype)
            vc[idx, :, :T] = lv[rows_of, :, :T].to(vc.dtype)
        return logits[rows_of]

    def warm(self) -> None:
        """Compile the prefill glue now, at load, not inside the first rows' time: for one row and for several
        (torch.compile specialises a dimension of size 1), on throwaway tokens."""
        with torch.no_grad():
            for rows in ([[0, 1, 2]], [[0, 1, 2], [0, 1]]):
                self.prefill(self.new_cache(len(rows), 8), None, rows, list(range(len(rows))))

    def decode(self, cache, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """One token per row at its own position `pos` (B,) -> next-token logits (B, V). Attention reads the
        whole cache (its keys past a row's position masked): one contiguous view, no copy (`attend`)."""
        B = len(tokens)
        rows = torch.arange(B)
        upto = cache[0][0].shape[2]

        def write(kc, vc, k, v):
            kc[rows, :, pos] = k[:, :, 0].to(kc.dtype)
            vc[rows, :, pos] = v[:, :, 0].to(vc.dtype)
        key_ok = torch.arange(upto)[None] <= pos[:, None]
        masks = self.masks(pos[:, None], key_ok, cache[0][0].dtype)
        return self.forward(tokens[:, None], pos[:, None], cache, write, masks, upto)
