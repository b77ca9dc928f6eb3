"""Two pieces of work trl does on a CPU that its answer does not need. Neither changes the arithmetic: the same sums
come out, in another order (tests/test_cpu_logps.py checks log-probs and gradients against trl's own forward).

- Labelled positions only. trl's fused LM head scores only the positions that carry a label on Triton devices, and
  every position elsewhere (a guard against recompiles on Neuron). On a CPU that runs the 49k-wide LM head three times
  (forward, recompute, input gradient) over the whole prompt, for the ~20 answer tokens a row that carry a label.
- A DPO pair's prompt once. trl evaluates prompt+chosen and prompt+rejected as two rows, so the prompt, ~90% of a
  chain row's tokens, goes through the policy twice and the reference twice. Here it goes through once; its KV cache
  serves both answers, and the gradient flows back through the cache.
"""
from __future__ import annotations

import contextlib
import types

# keyword arguments trl and peft pass to the model's forward that the shared-prompt path may see and ignore, where
# they are None, False or True
_IGNORABLE = frozenset({"inputs_embeds", "output_attentions", "output_hidden_states", "return_dict", "use_cache",
                        "num_items_in_batch"})


@contextlib.contextmanager
def labelled_positions_only():
    """While it is open, trl's fused LM head scores only labelled positions on a CPU too, as it does on Triton
    devices. The switch is trl's own (`compact`), read from `trl.trainer.utils._use_triton` at each call; the tile
    kernels keep their own binding, so the CPU still folds the tiles with torch ops."""
    import trl.trainer.utils as trl_utils  # trl: heavy, optional extra

    stock = getattr(trl_utils, "_use_triton", None)
    if stock is None:  # another trl: nothing to switch, and trl's own path still runs
        yield False
        return
    trl_utils._use_triton = lambda device: device.type == "cpu" or stock(device)
    try:
        yield True
    finally:
        trl_utils._use_triton = stock


def share_pair_prompts(model) -> dict:
    """Wrap the (trl-fused) forward of the HF model under `model` (a peft model or the bare model): a fused-head
    call on a batch of pairs, [rows; the same prompts with other answers], evaluates each prompt once. Any other
    call goes to the wrapped forward unchanged. -> counts of the fused calls each way, kept up to date (a trl whose
    batches stop matching falls back silently otherwise: the run would be right, and slow)."""
    hf = model.get_base_model() if hasattr(model, "get_base_model") else model
    fused = hf.forward
    counts = {"shared": 0, "trl": 0}

    def forward(self, *args, fused_lm_head=False, labels=None, **kw):
        plain = {k: v for k, v in kw.items() if k not in ("input_ids", "attention_mask")}
        if fused_lm_head and not args and labels is not None and kw.get("input_ids") is not None and \
                kw.get("attention_mask") is not None and all(k in _IGNORABLE and v in (None, False, True)
                                                             for k, v in plain.items()):
            out = shared_prompt_logps(self, kw["input_ids"], kw["attention_mask"], labels)
            if out is not None:
                counts["shared"] += 1
                return out
        counts["trl"] += fused_lm_head
        return fused(*args, fused_lm_head=fused_lm_head, labels=labels, **kw)

    hf.forward = types.MethodType(forward, hf)
    return counts


def pair_prefixes(input_ids, attention_mask, labels):
    """-> the shared prefix length of each row (its prompt but the last token), or None where the batch is not
    right-padded pairs whose halves share each prompt, each row with a labelled answer after >= 2 prompt tokens."""
    import torch  # torch: heavy, optional extra

    n, length = input_ids.shape
    if n == 0 or n % 2:
        return None
    b, pos = n // 2, torch.arange(length, device=input_ids.device)
    lengths = attention_mask.sum(1)
    labelled = labels != -100
    if not torch.equal(attention_mask.bool(), pos[None] < lengths[:, None]) or not labelled.any(1).all() or \
            (labelled & ~attention_mask.bool()).any():
        return None
    start = labelled.int().argmax(1)  # the answer's first token
    if not torch.equal(start[:b], start[b:]) or bool((start < 2).any()):
        return None
    prefix = start - 1  # the last prompt token predicts the answer's first: it runs with the answers
    if ((input_ids[:b] != input_ids[b:]) & (pos[None] < prefix[:b, None])).any():
        return None
    return prefix


def shared_prompt_logps(model, input_ids, attention_mask, labels):
    """trl's fused-head output (per-token log-probs, zero where unlabelled, shape [n, L-1]) for a batch of pairs,
    each prefix run once; None where `pair_prefixes` says no, the model's LM head is scaled or capped, or a sliding
    window is shorter than the cache this path builds."""
    import torch  # torch, transformers, trl: heavy, optional extras
    from transformers import DynamicCache
    from trl.trainer.utils import FusedCausalLMOutput

    cfg = model.config.get_text_config()
    if any(getattr(cfg, k, None) is not None for k in ("final_logit_softcapping", "logit_scale", "output_multiplier",
                                                       "lm_head_multiplier", "logits_scaling")):
        return None
    prefix = pair_prefixes(input_ids, attention_mask, labels)
    if prefix is None:
        return None
    n, length = input_ids.shape
    b, dev = n // 2, input_ids.device
    q, tails = int(prefix.max()), attention_mask.sum(1) - prefix
    r = int(tails.max())
    window = getattr(cfg, "sliding_window", None)
    if window and q + r > window:  # a sliding window counts cache slots, and the prompts' pads would shift them
        return None
    backbone = getattr(model, model.base_model_prefix)
    # the prompts, right-padded: the pads sit between a prompt and its answers in the cache, masked
    cols = torch.arange(q, device=dev)
    prompt_mask = (cols[None] < prefix[:b, None]).long()
    cache = DynamicCache(config=model.config)
    backbone(input_ids=input_ids[:b, :q], attention_mask=prompt_mask, position_ids=cols[None].expand(b, q),
             past_key_values=cache, use_cache=True)
    cache.reorder_cache(torch.arange(n, device=dev) % b)  # row i and row i + b read prompt i
    # the answers: the last prompt token on, at their own positions
    steps = torch.arange(r, device=dev)
    where = prefix[:, None] + steps[None]
    live = steps[None] < tails[:, None]
    hidden = backbone(input_ids=input_ids.gather(1, where.clamp(max=length - 1)),
                      attention_mask=torch.cat([prompt_mask.repeat(2, 1), live.long()], 1),
                      position_ids=where, past_key_values=cache, use_cache=True).last_hidden_state
    # position k predicts token k + 1 (trl's log_probs are shifted so)
    target = labels.gather(1, (where + 1).clamp(max=length - 1)).masked_fill(~live | (where + 1 >= length), -100)
    keep = target != -100
    head = model.get_output_embeddings()
    logits = torch.nn.functional.linear(hidden[keep], head.weight, head.bias).float()
    rows = torch.arange(n, device=dev)[:, None].expand(n, r)[keep]
    fields = per_token_fields(logits, target[keep])

    def place(x):  # trl's layout: [n, L-1], zero where unlabelled
        return x if x is None else x.new_zeros(n, length - 1).index_put((rows, where[keep]), x)

    mask = labels[:, 1:] != -100
    return FusedCausalLMOutput(loss=-fields["log_probs"].sum() / mask.sum().clamp(min=1), label_mask=mask,
                               **{k: place(v) for k, v in fields.items()})


def per_token_fields(logits, target) -> dict:
    """The per-token fields trl's fused head returns, from full logits: log-probs (and entropy) with gradient; the
    rest, metrics and WPO weights, without."""
    import torch  # torch: heavy, optional extra

    logp = logits.log_softmax(-1)
    with_grad = {"log_probs": logp.gather(1, target[:, None]).squeeze(1), "entropy": -(logp.exp() * logp).sum(-1)}
    with torch.no_grad():
        return {**with_grad, "log_sum_sq_probs": (2 * logp).logsumexp(-1), "mean_logits": logits.mean(-1),
                "is_top1": logits.argmax(-1) == target}


def computed_tokens(prompt_ids, chosen_ids, rejected_ids) -> int:
    """Tokens the shared-prompt path runs through the model for these pairs (the prompt once; the last prompt
    token with each answer), against trl's 2 x prompt + both answers."""
    return sum(len(p) - 1 + 2 + len(c) + len(r) for p, c, r in zip(prompt_ids, chosen_ids, rejected_ids))
