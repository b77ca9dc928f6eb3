"""The CPU training path's two savings (recover/train/cpu_logps.py) give trl's own log-probs and gradients, on a tiny
random Llama with a LoRA adapter and trl's fused LM head."""
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")


def tiny_lora_model(seed=0):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    add_fused_lm_head(model)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]))
    return model


def pair_batch(prompts, chosen, rejected, pad=0):
    """trl's DPO collator's layout: [prompt+chosen rows; prompt+rejected rows], right-padded, labels on answers."""
    rows = [p + c for p, c in zip(prompts, chosen)] + [p + r for p, r in zip(prompts, rejected)]
    answer = [[0] * len(p) + [1] * len(a) for p, a in zip(prompts * 2, chosen + rejected)]
    width = max(map(len, rows))
    ids = torch.tensor([x + [pad] * (width - len(x)) for x in rows])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in rows])
    comp = torch.tensor([a + [0] * (width - len(a)) for a in answer])
    return ids, mask, ids.masked_fill(comp == 0, -100)


PROMPTS = [[5, 9, 11, 30, 2, 7, 44], [8, 3, 60, 61], [12, 13, 14, 15, 16, 17, 18, 19, 20, 21]]
CHOSEN = [[70, 71, 72, 1], [73, 1], [74, 75, 76, 77, 78, 1]]
REJECTED = [[80, 1], [81, 82, 83, 84, 85, 1], [86, 87, 1]]


def logps_and_grads(model, ids, mask, labels):
    model.zero_grad()
    out = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False, fused_lm_head=True)
    # a DPO-like use of every row's sum, weighted so that each row's gradient counts
    (out.log_probs.sum(1) * torch.linspace(0.5, 2.0, ids.shape[0])).sum().backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad}
    return out.log_probs.detach(), grads


def test_a_pairs_prompt_runs_once_and_gives_trls_log_probs_and_gradients():
    from recover.train.cpu_logps import labelled_positions_only, share_pair_prompts, shared_prompt_logps

    ids, mask, labels = pair_batch(PROMPTS, CHOSEN, REJECTED)
    model = tiny_lora_model()
    want_lp, want_g = logps_and_grads(model, ids, mask, labels)
    assert (want_lp != 0).sum() == (labels[:, 1:] != -100).sum()

    calls = []
    hf = model.get_base_model()
    backbone = hf.model
    stock_forward = backbone.forward
    backbone.forward = lambda *a, **k: calls.append(k["input_ids"].shape) or stock_forward(*a, **k)
    counts = share_pair_prompts(model)
    with labelled_positions_only():
        got_lp, got_g = logps_and_grads(model, ids, mask, labels)
    assert counts == {"shared": 1, "trl": 0}
    # two backbone calls: the 3 prompts (but their last token) once, then 6 answer rows
    assert calls == [(3, 9), (6, 7)]
    torch.testing.assert_close(got_lp, want_lp, rtol=1e-5, atol=1e-5)
    for k in want_g:
        torch.testing.assert_close(got_g[k], want_g[k], rtol=1e-4, atol=1e-6)
    assert shared_prompt_logps(hf, ids, mask, labels) is not None


def test_rows_that_are_not_pairs_take_trls_own_forward():
    from recover.train.cpu_logps import pair_prefixes

    ids, mask, labels = pair_batch(PROMPTS, CHOSEN, REJECTED)
    assert pair_prefixes(ids, mask, labels).tolist() == [6, 3, 9] * 2
    other = ids.clone()
    other[4, 1] += 1  # the second pair's rejected row has another prompt
    assert pair_prefixes(other, mask, labels) is None
    assert pair_prefixes(ids[:5], mask[:5], labels[:5]) is None  # odd rows
    left = torch.roll(mask, 1, dims=1)  # left padding
    assert pair_prefixes(ids, left, labels) is None
    unlabelled = labels.clone()
    unlabelled[2] = -100  # a row whose answer was cut off entirely
    assert pair_prefixes(ids, mask, unlabelled) is None


def test_labelled_positions_only_gives_the_same_log_probs_and_restores_trl():
    import trl.trainer.utils as trl_utils

    from recover.train.cpu_logps import labelled_positions_only

    stock = trl_utils._use_triton
    ids, mask, labels = pair_batch(PROMPTS, CHOSEN, REJECTED)
    model = tiny_lora_model()
    want_lp, want_g = logps_and_grads(model, ids, mask, labels)
    with labelled_positions_only() as on:
        assert on and trl_utils._use_triton(torch.device("cpu"))
        got_lp, got_g = logps_and_grads(model, ids, mask, labels)
    assert trl_utils._use_triton is stock
    torch.testing.assert_close(got_lp, want_lp, rtol=1e-5, atol=1e-5)
    for k in want_g:
        torch.testing.assert_close(got_g[k], want_g[k], rtol=1e-4, atol=1e-6)


def test_the_shared_path_gives_every_field_trls_dpo_reads():
    """trl's DPO asks its fused head for entropy, mean logits and top-1 hits (its metrics) besides the log-probs."""
    from trl.trainer.utils import add_fused_lm_head

    from recover.train.cpu_logps import shared_prompt_logps

    ids, mask, labels = pair_batch(PROMPTS, CHOSEN, REJECTED)
    hf = tiny_lora_model().get_base_model()
    fields = ("log_probs", "entropy", "mean_logits", "is_top1", "log_sum_sq_probs")
    add_fused_lm_head(hf, outputs=fields)
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
        got = shared_prompt_logps(hf, ids, mask, labels)
    for f in fields:
        assert getattr(got, f).shape == getattr(want, f).shape, f
        if f == "is_top1":
            assert torch.equal(got.is_top1, want.is_top1)
        else:
            torch.testing.assert_close(getattr(got, f), getattr(want, f), rtol=1e-5, atol=1e-5, msg=f)


def test_per_token_fields_from_full_logits():
    from recover.train.cpu_logps import per_token_fields

    logits = torch.tensor([[1.0, 3.0, 2.0], [5.0, 0.0, 0.0], [2.0, 2.0, 0.0]])
    f = per_token_fields(logits, torch.tensor([1, 2, 1]))
    p = logits.softmax(-1)
    torch.testing.assert_close(f["log_probs"], p.log()[[0, 1, 2], [1, 2, 1]])
    torch.testing.assert_close(f["entropy"], -(p * p.log()).sum(-1))
    torch.testing.assert_close(f["log_sum_sq_probs"], (p ** 2).sum(-1).log())
    torch.testing.assert_close(f["mean_logits"], logits.mean(-1))
    assert f["is_top1"].tolist() == [True, False, False]  # a tie goes to the first maximum, as in trl's kernel


def test_a_sliding_window_shorter_than_the_batch_takes_trls_forward():
    """Gemma-3 attends through a sliding window of cache slots; the shared path's cache holds the prompts' pads, so
    where the window is shorter than that cache it must not run. Where it is longer, the answers are trl's."""
    from peft import LoraConfig, get_peft_model
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig
    from trl.trainer.utils import add_fused_lm_head

    from recover.train.cpu_logps import share_pair_prompts

    ids, mask, labels = pair_batch(PROMPTS, CHOSEN, REJECTED)
    for window, path in ((4, "trl"), (512, "shared")):
        torch.manual_seed(0)
        model = Gemma3ForCausalLM(Gemma3TextConfig(vocab_size=96, hidden_size=32, intermediate_size=64,
                                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                                   head_dim=8, max_position_embeddings=64, sliding_window=window))
        add_fused_lm_head(model)
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                                 target_modules=["q_proj", "v_proj", "down_proj"]))
        model.eval()
        want, _ = logps_and_grads(model, ids, mask, labels)
        counts = share_pair_prompts(model)
        got, _ = logps_and_grads(model, ids, mask, labels)
        assert counts[path] == 1, (window, counts)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
