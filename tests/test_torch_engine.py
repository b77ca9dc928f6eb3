"""The torch CPU engine on the REAL SmolLM2-135M GGUF and the shipped GGUF LoRA: same tokens, same stop
rules and (in fp32) the same answers as llama.cpp; the adapter merged as llama.cpp applies it."""
import time

import numpy as np
import pytest

from recover import constants as C
from recover.models.llm import LlamaConfig, LlamaPredictor
from recover.models.serving import resolve_engine
from recover.models.torch_engine import TorchEngine

LORA = f"recover/assets/lora/{C.DEFAULT_LORA}/{C.DEFAULT_LORA}.gguf"
FAST = {"max_new_tokens": 12, "n_ctx": 512}


def last_logits_llama(engine, toks):
    engine._fill([(t, i, 0, i == len(toks) - 1) for i, t in enumerate(toks)])
    engine._decode()
    return np.ctypeslib.as_array(engine.ctx.get_logits_ith(len(toks) - 1), shape=(engine.n_vocab,)).copy()


def last_logits_torch(engine, toks):
    return engine.sequence_logits(toks)[-1].numpy()


def test_gguf_lora_is_merged_as_llama_cpp_applies_it(smollm2_gguf):
    """Against llama.cpp with the same adapter the logits differ by the quant's noise only (the base alone:
    ~0.7, recover export's verification), far below what the adapter itself moves them (~5)."""
    from recover.models.llama_engine import LlamaEngine

    text = "<|im_start|>user\nWhat instruction turned this text into a sea shanty?<|im_end|>\n<|im_start|>assistant\n"
    ll = LlamaEngine(str(smollm2_gguf), n_ctx_row=256, n_seq=1, n_batch=256, seed=7, lora_path=LORA)
    merged = TorchEngine(str(smollm2_gguf), n_ctx_row=256, n_seq=1, seed=7, lora_path=LORA, dtype="fp32")
    plain = TorchEngine(str(smollm2_gguf), n_ctx_row=256, n_seq=1, seed=7, dtype="fp32")
    toks = ll.tokenize(text, special=True)
    assert merged.tokenize(text, special=True) == toks  # llama.cpp's own tokenizer on both sides
    a, b, c = last_logits_llama(ll, toks), last_logits_torch(merged, toks), last_logits_torch(plain, toks)
    ll.close()
    diff, effect = np.abs(a - b[: len(a)]).max(), np.abs(b - c).max()
    assert effect > 3.0 and diff < 1.5, (diff, effect)
    assert a.argmax() == b.argmax()


def test_stop_rules_are_the_llama_engine_s(smollm2_gguf):
    e = TorchEngine(str(smollm2_gguf), n_ctx_row=256, n_seq=1, seed=7, dtype="fp32")

    def replay(toks, cap, blank=True):  # feed tokens as the decode loop does -> (text, tokens read)
        gen, lps = [], []
        for t in toks:
            if not e._take(gen, lps, t, 0.0, cap, blank):
                break
        return e.detokenize(gen), len(lps)

    answer = e.tokenize("Rewrite it as a poem.")
    tail = e.tokenize("\n\nSure, here is more")
    assert replay(answer + tail, 32)[0] == "Rewrite it as a poem.\n\n"  # blank line after content: stop
    assert replay(answer + tail, 32, False)[0].endswith("here is more")  # the rule off: runs on
    # end token: stop, not kept, but read (its log-prob is part of the answer's confidence)
    assert replay(answer + [e.eog[0]] + tail, 32) == ("Rewrite it as a poem.", len(answer) + 1)
    assert replay(answer + tail, 3) == (e.detokenize(answer[:3]), 3)  # the token cap


def test_torch_agrees_with_every_llama_cpp_token_up_to_near_ties(smollm2_gguf, sample_df):
    """Teacher-forced on llama.cpp's own greedy answers (base + the shipped LoRA): at every generated position
    torch (fp32, the same GGUF, the adapter merged) prefers llama's token or misses it by a near-tie.
    Measured (6 rows): 0.012 logits at worst; bf16 0.25; Q/K adapter rows left in llama.cpp's rotary order
    (no un-permute) 0.70; without the adapter 8.3. (Free-running greedy texts still part at near-ties:
    5 of 8 sample rows identical for the base model alone.)"""
    import torch

    o, r = list(sample_df.original_text[:6]), list(sample_df.rewritten_text[:6])
    llama = LlamaPredictor(LlamaConfig(model=str(smollm2_gguf), engine="llama", lora_path=LORA, **FAST))
    tp = LlamaPredictor(LlamaConfig(model=str(smollm2_gguf), engine="torch", torch_dtype="fp32", lora_path=LORA, **FAST))
    worst = 0.0
    for a, b in zip(o, r):
        ids = llama.build_prompt_tokens(a, b)
        gen = llama.engine.tokenize(llama.engine.generate([ids], 12)[0])
        if not gen:
            continue
        lg = tp.engine.sequence_logits(ids + gen)[len(ids) - 1: len(ids) - 1 + len(gen)]
        margins = lg.max(-1).values - lg[torch.arange(len(gen)), torch.tensor(gen)]
        worst = max(worst, float(margins.max()))
    llama.engine.close()
    assert worst < 0.3, worst


def test_batched_decode_gives_row_by_row_greedy_tokens(smollm2_gguf, sample_df):
    """The fused engine (8 rows of different lengths in one batch, the head's keys shared, new keys written in
    place) against transformers' own model decoding each row ALONE, greedy, recomputing the whole sequence at
    every step (no cache at all), both fp32 with the shipped adapter merged: the same tokens on every row."""
    import torch

    from recover.models.torch_engine import load_hf_from_gguf

    p = LlamaPredictor(LlamaConfig(model=str(smollm2_gguf), engine="torch", torch_dtype="fp32", n_seq=8,
                                   lora_path=LORA, **FAST))
    prompts = [p.build_prompt_tokens(a, b) for a, b in zip(sample_df.original_text[:8], sample_df.rewritten_text[:8])]
    assert len({len(x) for x in prompts}) > 4  # rows of different lengths share the batch
    got = p.engine.generate(prompts, 12, stop_on_blank_line=False)
    hf = load_hf_from_gguf(str(smollm2_gguf), "fp32", LORA)
    for ids, text in zip(prompts, got):
        seq = list(ids)
        with torch.no_grad():
            for _ in range(12):
                t = int(hf(torch.tensor([seq])).logits[0, -1].argmax())
                if t in p.engine._eog:
                    break
                seq.append(t)
        assert p.engine.detokenize(seq[len(ids):]) == text


def test_the_decode_batch_sheds_stopped_rows_and_every_answer_stays_the_same(smollm2_gguf, sample_df, monkeypatch):
    """Once no row waits, the slots of rows that stopped leave the decode batch (`TorchEngine._compact`): the
    steps run on fewer rows, and each row answers exactly as with every slot kept."""
    p = LlamaPredictor(LlamaConfig(model=str(smollm2_gguf), engine="torch", torch_dtype="fp32", n_seq=8, n_ctx=512))
    prompts = [p.build_prompt_tokens(a, b) for a, b in zip(sample_df.original_text[:8], sample_df.rewritten_text[:8])]
    sizes, decode = [], p.engine.lm.decode

    def spy(cache, tok, pos):
        assert cache[0][0].is_contiguous()  # decode reads each layer's cache as one view
        sizes.append((len(tok), cache[0][0].shape[2]))
        return decode(cache, tok, pos)
    monkeypatch.setattr(p.engine.lm, "decode", spy)
    got = p.engine.generate(prompts, 24)
    assert sizes[0][0] == 8 and sizes[-1][0] < 8, sizes  # some rows stopped early; their slots were dropped
    sizes.clear()
    monkeypatch.setattr(TorchEngine, "_compact", lambda self, cache, pos, tok: (cache, pos, tok, len(pos)))
    assert p.engine.generate(prompts, 24) == got
    assert {b for b, _ in sizes} == {8}


def test_decode_steps_count_the_kv_bytes_each_live_row_needed_and_the_cache_they_read(smollm2_gguf, sample_df,
                                                                                       monkeypatch):
    """`recover bench`'s decode bound counts the keys and values a step must read: each live row's tokens up to
    the one it feeds (finished slots and padding are read but not needed), at the cache's bytes per token."""
    p = LlamaPredictor(LlamaConfig(model=str(smollm2_gguf), engine="torch", torch_dtype="fp32", n_seq=8, n_ctx=512))
    e = p.engine
    one = e.lm.new_cache(1, 1)  # one token's keys and values over all layers, as the cache holds them
    assert e.kv_token_bytes == sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in one)
    prompts = [p.build_prompt_tokens(a, b) for a, b in zip(sample_df.original_text[:8], sample_df.rewritten_text[:8])]
    need, read, dead, decode = [0], [0], [0], e.lm.decode

    def spy(cache, tok, pos):
        live = [s for s, j in enumerate(e._slots["job"]) if j is not None]
        dead[0] += len(tok) - len(live)
        need[0] += sum(int(pos[s]) + 1 for s in live) * e.kv_token_bytes
        read[0] += len(tok) * cache[0][0].shape[2] * e.kv_token_bytes
        return decode(cache, tok, pos)
    monkeypatch.setattr(e.lm, "decode", spy)
    before = (e.stats.gen_kv_bytes, e.stats.gen_kv_read_bytes)
    e.generate(prompts, 48)
    assert dead[0] > 0 and 0 < need[0] < read[0]  # rows stop apart: some steps carry a finished slot (< 1/4 of 8)
    assert (e.stats.gen_kv_bytes - before[0], e.stats.gen_kv_read_bytes - before[1]) == (need[0], read[0])


def test_bf16_answers_keep_the_fp32_answers_lengths(smollm2_gguf, sample_df):
    """bf16 differs from fp32 by rounding, so a near-tie may part two answers, but not their shape: rows of
    one batch keep their fp32 lengths. (A cache allocated uninitialised once cut bf16 answers to 1-3 tokens
    in a batch of long prompts while fp32 passed every other test: masked cells still reached SDPA.)"""
    lengths = {}
    for dt in ("fp32", "bf16"):
        p = LlamaPredictor(LlamaConfig(model=str(smollm2_gguf), engine="torch", torch_dtype=dt, n_seq=8, n_ctx=320))
        ids = [p.build_prompt_tokens(a, b) for a, b in zip(sample_df.original_text[:8], sample_df.rewritten_text[:8])]
        lengths[dt] = [len(p.engine.tokenize(x)) for x in p.engine.generate(ids, 32)]
    assert sum(abs(a - b) <= 2 for a, b in zip(lengths["bf16"], lengths["fp32"])) >= 6, lengths


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_a_row_answers_the_same_alone_and_in_a_padded_batch(smollm2_gguf, sample_df, dtype):
    """int8 too: its activations are quantised per token, so a row's neighbours in the batch never move it."""
    o, r = list(sample_df.original_text[:4]), list(sample_df.rewritten_text[:4])
    p = LlamaPredictor(LlamaConfig(model=str(smollm2_gguf), engine="torch", torch_dtype=dtype, n_seq=4, **FAST))
    assert p.predict_batch(o, r) == [p.predict_batch([a], [b])[0] for a, b in zip(o, r)]


def test_deadline_leaves_unstarted_rows_none(smollm2_gguf, sample_df):
    p = LlamaPredictor(LlamaConfig(model=str(smollm2_gguf), engine="torch", n_seq=2, **FAST))
    assert p.predict_batch(list(sample_df.original_text[:3]), list(sample_df.rewritten_text[:3]),
                           deadline=time.monotonic() - 1) == [None] * 3


def test_auto_engine_is_torch_only_where_measured_and_on_bf16_cpus(monkeypatch, smollm2_gguf):
    import recover.models.serving as D

    cfg = lambda **kw: LlamaConfig(model=str(smollm2_gguf), **kw)  # noqa: E731
    monkeypatch.setattr(D, "default_cpu_quant", lambda: {"engine": "torch", "n_seq": 8})
    monkeypatch.setattr(D, "cpu_has_fast_bf16", lambda: True)
    assert resolve_engine(cfg()) == ("torch", 8)
    assert resolve_engine(cfg(n_gpu_layers=-1)) == ("llama", 1)  # a GPU: llama.cpp
    assert resolve_engine(cfg(engine="llama")) == ("llama", 1)  # asked for
    monkeypatch.setattr(D, "cpu_has_fast_bf16", lambda: False)
    assert resolve_engine(cfg()) == ("llama", 1)  # no bf16 hardware: torch bf16 would be slow
    monkeypatch.setattr(D, "default_cpu_quant", lambda: {"engine": "llama"})
    monkeypatch.setattr(D, "cpu_has_fast_bf16", lambda: True)
    assert resolve_engine(cfg()) == ("llama", 1)
    with pytest.raises(ValueError, match="CPU engine"):
        cfg(engine="torch", n_gpu_layers=-1)


def test_samples_are_seeded_and_share_one_prompt_evaluation(smollm2_gguf, sample_df):
    """k samples of one row (on-policy pairs): the row's prompt becomes the cached head and its last token is
    evaluated once for the k copies; the same seed gives the same samples."""
    p = LlamaPredictor(LlamaConfig(model=str(smollm2_gguf), engine="torch", **FAST))
    o, r = sample_df.original_text[0], sample_df.rewritten_text[0]
    before = p.engine.stats.prompt_tokens
    a = p.sample(o, r, k=4, temperature=1.0, seed=11)
    assert p.engine.stats.prompt_tokens - before == 1  # one token, fanned out to the 4 copies
    assert a == p.sample(o, r, k=4, temperature=1.0, seed=11) and len(set(a)) > 1


def test_rows_sampled_together_evaluate_each_prompt_once_and_repeat_with_their_seeds(smollm2_gguf, sample_df):
    """The pair stage's batches: several rows' k samples decode together; each row's prompt is evaluated once
    (after the shared head) however many slots sample it, and the same seeds give the same samples."""
    p = LlamaPredictor(LlamaConfig(model=str(smollm2_gguf), engine="torch", n_seq=9, **FAST))
    rows = [p.fit_row(o, r) for o, r in zip(sample_df.original_text[:3], sample_df.rewritten_text[:3])]
    h = len(p.head_tokens) - 1
    before = p.engine.stats.prompt_tokens
    a = p.sample_rows(rows, k=3, temperature=1.0, seeds=[5, 6, 7])
    assert p.engine.stats.prompt_tokens - before == sum(len(p.build_prompt_tokens(o, r)) - h for o, r in rows)
    assert [len(x) for x in a] == [3, 3, 3] and any(len(set(x)) > 1 for x in a)
    assert a == p.sample_rows(rows, k=3, temperature=1.0, seeds=[5, 6, 7])
    assert a != p.sample_rows(rows, k=3, temperature=1.0, seeds=[8, 6, 7])


def test_each_prompt_draws_from_its_own_generator_whatever_its_neighbours(smollm2_gguf):
    """With seeds, a slot's draw depends on its prompt's generator only: not on which other prompts share the
    step, on their order, or on free slots (the engine's one generator would hand each a neighbour-dependent
    draw)."""
    import torch

    e = TorchEngine(str(smollm2_gguf), n_ctx_row=64, n_seq=3, seed=7, dtype="fp32")
    logits = 3 * torch.randn(3, e.n_vocab, generator=torch.Generator().manual_seed(0))

    def draws(jobs, steps=20):
        e._job_gens = [torch.Generator().manual_seed(100 + j) for j in range(3)]
        return [e._choose(logits[[j or 0 for j in jobs]], 0.8, 0.95, jobs)[0].tolist() for _ in range(steps)]

    alone = [d[0] for d in draws([0, None, None])]
    assert [d[0] for d in draws([0, 1, 2])] == alone
    assert [d[2] for d in draws([2, 1, 0])] == alone
    assert len(set(alone)) > 1
    e._job_gens = None
    e.reseed(7)
    shared = [e._choose(logits, 0.8, 0.95, [0, 1, 2])[0].tolist() for _ in range(20)]
    e.reseed(7)
    assert [e._choose(logits, 0.8, 0.95, [0, 1, 2])[0].tolist() for _ in range(20)] == shared  # no seeds: reseed()


def test_top_p_draws_come_from_the_nucleus_with_its_probabilities():
    """The sampler's candidates are exactly the full sort's nucleus (whether the top-64, top-1,024 or the whole
    vocabulary holds it), and draws follow their renormalised probabilities."""
    import torch

    from recover.models.sampling import nucleus
    from recover.models.torch_engine import TorchEngine

    g = torch.Generator().manual_seed(3)
    for scale in (8.0, 1.0, 0.05):  # peaked (top-64 holds it), flatter, nearly flat (only the full sort does)
        probs = torch.softmax(scale * torch.randn(4, 5000, generator=g), -1)
        p, idx = nucleus(probs, 0.9)
        s, sidx = probs.sort(-1, descending=True)
        keep = (s.cumsum(-1) - s) < 0.9
        for r in range(4):
            assert set(idx[r][p[r] > 0].tolist()) == set(sidx[r][keep[r]].tolist())
    e = TorchEngine.__new__(TorchEngine)
    e._job_gens, e._gen = None, torch.Generator().manual_seed(1)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    toks = torch.cat([e._choose(logits, 1.0, 0.9, [0])[0] for _ in range(4000)])
    freq = torch.bincount(toks, minlength=4).double() / len(toks)
    assert freq[3] == 0  # outside the nucleus: 0.5 + 0.3 + 0.15 already hold 0.9
    assert torch.allclose(freq[:3], torch.tensor([0.5, 0.3, 0.15], dtype=torch.double) / 0.95, atol=0.03)

def test_confidence_is_the_mean_log_prob_of_the_answer_tokens(smollm2_gguf, sample_df):
    """The gate's signal: per row, the mean log-prob of the tokens the engine sampled for it (its end token
    included), recomputed here by a teacher-forced forward pass; llama.cpp reports one per row too."""
    import torch

    o, r = list(sample_df.original_text[1:4]), list(sample_df.rewritten_text[1:4])
    p = LlamaPredictor(LlamaConfig(model=str(smollm2_gguf), engine="torch", torch_dtype="fp32", n_seq=3, **FAST))
    p.predict_batch(o, r)
    got = list(p.confidence)
    for a, b, c in zip(o, r, got):
        ids = p.build_prompt_tokens(a, b)
        text = p.engine.generate([ids], FAST["max_new_tokens"])[0]
        gen = p.engine.tokenize(text)
        from recover.models.llama_engine import blank_line_stop

        ended = len(gen) < FAST["max_new_tokens"] and not blank_line_stop(text)  # it sampled an end token
        full = gen + ([p.engine.eog[0]] if ended else [])
        lg = p.engine.sequence_logits(ids + full)[len(ids) - 1: len(ids) - 1 + len(full)]
        want = lg.log_softmax(-1)[torch.arange(len(full)), torch.tensor(full)].mean().item()
        assert c == pytest.approx(want, abs=0.05), (text, c, want)
    llama = LlamaPredictor(LlamaConfig(model=str(smollm2_gguf), engine="llama", **FAST))
    llama.predict_batch(o, r)
    assert len(llama.confidence) == 3 and all(c is not None and c <= 0 for c in llama.confidence)
    llama.engine.close()
