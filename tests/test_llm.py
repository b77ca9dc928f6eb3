"""The llama.cpp engine on the REAL SmolLM2-135M-Instruct GGUF from PyPI."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from recover import constants as C
from recover.models.llm import LlamaConfig, LlamaPredictor
from recover.predict.config import PredictConfig
from recover.predict.runner import run_predict

FAST = {"max_new_tokens": 12, "n_ctx": 512, "engine": "llama"}  # this file tests llama.cpp (the GPU engine)


@pytest.fixture(scope="module")
def predictor(smollm2_gguf):
    p = LlamaPredictor(LlamaConfig(model=str(smollm2_gguf), **FAST))
    yield p
    p.engine.close()


def test_chat_template_from_gguf_is_applied(predictor):
    text = predictor.render("orig words", "new words", "")
    assert "<|im_start|>user" in text and text.rstrip().endswith("<|im_start|>assistant")
    assert "orig words" in text and "new words" in text
    toks = predictor.build_prompt_tokens("orig words", "new words")
    assert toks[: len(predictor.engine.head)] == predictor.engine.head  # the shared head is a true prefix


def test_long_texts_are_truncated_to_fit_the_context(predictor):
    long_o, long_r = "The cat sat on the mat. " * 400, "A dog ran in the park. " * 400
    toks = predictor.build_prompt_tokens(long_o, long_r, "Rewrite the text")
    assert len(toks) <= FAST["n_ctx"] - FAST["max_new_tokens"]
    text = predictor.engine.detokenize(toks)
    assert "The cat sat" in text and "A dog ran" in text  # both texts keep their start
    assert text.rstrip().endswith("Rewrite the text")


def test_generation_is_deterministic_and_batched_rows_match_single(predictor, sample_df):
    o, r = list(sample_df.original_text[:3]), list(sample_df.rewritten_text[:3])
    a = predictor.predict_batch(o, r)
    b = predictor.predict_batch(o, r)
    assert a == b
    assert [predictor.predict_batch([o[i]], [r[i]])[0] for i in range(3)] == a


def test_forced_prefixes_open_each_run(smollm2_gguf, sample_df):
    p = LlamaPredictor(LlamaConfig(model=str(smollm2_gguf), prefixes=["Rewrite the text", "Convert"], **FAST))
    out = p.predict_batch(list(sample_df.original_text[:2]), list(sample_df.rewritten_text[:2]))
    p.engine.close()
    for s in out:  # each run opens with its prefix; an unusable run is dropped, never garbled
        assert s == "" or s.startswith("Rewrite the text") or s.startswith("Convert")
    assert any(out)


def test_llm_plus_mean_writes_a_valid_submission(tmp_path, test_csv, smollm2_gguf, sample_df):
    out = tmp_path / "sub.csv"
    stats = run_predict(PredictConfig(str(test_csv), str(out), predictor="llm", model=str(smollm2_gguf),
                                      combine="llm+mean", llm=FAST, batch_size=4))
    sub = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(sub["id"]) == list(sample_df["id"])
    assert all(s.strip() for s in sub[C.COL_PROMPT])
    assert stats["status"].get("ok", 0) == len(sample_df)


class VirtualClock:
    """`time` as the runner and the engine see it, with a monotonic() that ticks a fixed step per call: a
    deadline test then holds on a slow or busy machine (each decode call costs the same virtual time)."""

    def __init__(self, step: float):
        self.now, self.step = 1000.0, step

    def monotonic(self) -> float:
        self.now += self.step
        return self.now

    def __getattr__(self, name):
        return getattr(time, name)


def test_time_budget_is_a_hard_deadline_even_inside_one_long_chunk(tmp_path, test_csv, smollm2_gguf, sample_df,
                                                                   monkeypatch):
    """ONE chunk holds every row, so only the deadline inside decoding can stop it: the file is written
    before the budget ends, the rows decoded in time keep their predictions and the rest get the fallback.
    On a virtual clock (0.25 s a decode call), so the machine's speed cannot decide it."""
    from recover.models import llama_engine
    from recover.predict import chunks, runner

    clock = VirtualClock(0.25)
    monkeypatch.setattr(llama_engine, "time", clock)
    monkeypatch.setattr(runner, "time", clock)
    monkeypatch.setattr(chunks, "time", clock)
    out = tmp_path / "sub.csv"
    stats = run_predict(PredictConfig(str(test_csv), str(out), predictor="llm", model=str(smollm2_gguf),
                                      llm={**FAST, "n_seq": 1}, time_budget="10s", batch_size=len(sample_df)))
    assert stats["seconds"] <= 10.0  # virtual seconds: decoding stopped at the deadline, not after the chunk
    sub = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(sub["id"]) == list(sample_df["id"]) and all(sub[C.COL_PROMPT].str.strip() != "")
    assert stats["status"].get("ok", 0) > 0 and stats["status"].get("budget", 0) > 0


def test_batched_decoding_matches_one_row_at_a_time(predictor, smollm2_gguf, sample_df):
    """n_seq > 1 (rows decoded together, the head's KV cells shared): one row alone gives exactly the
    n_seq=1 text. In a MIXED batch llama.cpp's CPU kernels are not batch-invariant (measured: 1 of 5
    greedy texts flips at a near-tie after 5 tokens), so there every row must agree on its opening
    and most rows on the whole text; a cross-sequence leak would garble them."""
    o, r = list(sample_df.original_text[:5]), list(sample_df.rewritten_text[:5])
    batched = LlamaPredictor(LlamaConfig(model=str(smollm2_gguf), n_seq=3, **FAST))
    single = [predictor.predict_batch([a], [b])[0] for a, b in zip(o, r)]
    assert [batched.predict_batch([a], [b])[0] for a, b in zip(o, r)] == single
    mixed = batched.predict_batch(o, r)
    batched.engine.close()
    assert sum(m == s for m, s in zip(mixed, single)) >= 4
    assert all(m.split()[:4] == s.split()[:4] for m, s in zip(mixed, single))


def test_each_llama_flag_reaches_llama_cpp_params(monkeypatch, tmp_path, test_csv, smollm2_gguf):
    """From the command line to the llama.cpp model/context params (captured where the engine hands
    them over): n_gpu_layers, split_mode, tensor_split, flash_attn, offload_kqv, n_threads, n_batch."""
    import llama_cpp
    from llama_cpp import _internals

    from recover.cli import main

    seen = {}

    class Stop(RuntimeError):
        pass

    class Model(_internals.LlamaModel):
        def __init__(self, *, path_model, params, verbose):
            seen["model"] = params
            super().__init__(path_model=path_model, params=params, verbose=verbose)

    class Context(_internals.LlamaContext):
        def __init__(self, *, model, params, verbose):
            seen["ctx"] = params
            raise Stop("captured")

    monkeypatch.setattr(_internals, "LlamaModel", Model)
    monkeypatch.setattr(_internals, "LlamaContext", Context)
    rc = main(["predict", "--input", str(test_csv), "--output", str(tmp_path / "s.csv"), "--model", str(smollm2_gguf),
               "--n-gpu-layers", "0", "--split-mode", "2", "--tensor-split", "0.25,0.75", "--flash-attn", "on",
               "--offload-kqv", "off", "--n-threads", "1", "--n-batch", "64", "--engine", "llama"])
    assert rc == 2 and "model" in seen and "ctx" in seen
    mp, cp = seen["model"], seen["ctx"]
    assert mp.n_gpu_layers == 0 and mp.split_mode == 2
    assert [round(mp.tensor_split[i], 2) for i in range(2)] == [0.25, 0.75]
    assert cp.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED and cp.offload_kqv is False
    assert cp.n_threads == 1 and cp.n_threads_batch == 1 and cp.n_batch == 64


def test_a_non_default_template_is_what_the_model_sees(smollm2_gguf):
    from recover.models.prompting import load_template

    p = LlamaPredictor(LlamaConfig(model=str(smollm2_gguf), template="short", **FAST))
    text = p.engine.detokenize(p.build_prompt_tokens("orig words", "new words"))
    p.engine.close()
    short = load_template("short").split("{original}")[0].strip()
    assert short and short in text and load_template("recover").split("{original}")[0].strip() not in text


def test_a_failing_row_falls_back_and_the_run_goes_on(tmp_path, smollm2_gguf, monkeypatch):
    df = pd.DataFrame({"id": ["a", "b", "c"], "original_text": ["fine text", "BOOM text", "more text"],
                       "rewritten_text": ["fine", "boom", "more"]})
    df.to_csv(tmp_path / "t.csv", index=False)
    real = LlamaPredictor.predict_batch

    def flaky(self, originals, rewrites, deadline=None):
        if any("BOOM" in o for o in originals):
            raise RuntimeError("backend exploded")
        return real(self, originals, rewrites, deadline)

    monkeypatch.setattr(LlamaPredictor, "predict_batch", flaky)
    stats = run_predict(PredictConfig(str(tmp_path / "t.csv"), str(tmp_path / "s.csv"), predictor="llm",
                                      model=str(smollm2_gguf), llm=FAST, batch_size=3, on_model_error="fallback"))
    assert stats["status"] == {"ok": 2, "error": 1}
    sub = pd.read_csv(tmp_path / "s.csv", dtype=str, keep_default_na=False)
    assert list(sub["id"]) == ["a", "b", "c"] and all(sub[C.COL_PROMPT].str.strip() != "")


@pytest.mark.parametrize("kind", ["missing", "corrupt"])
def test_missing_or_corrupt_model(tmp_path, test_csv, kind):
    model = tmp_path / "m.gguf"
    if kind == "corrupt":
        model.write_bytes(b"NOPE" + b"\0" * 64)
    cfg = dict(predictor="llm", model=str(model))
    with pytest.raises((FileNotFoundError, ValueError), match="not found|not a GGUF file"):
        run_predict(PredictConfig(str(test_csv), str(tmp_path / "s.csv"), **cfg))
    stats = run_predict(PredictConfig(str(test_csv), str(tmp_path / "s.csv"), on_model_error="fallback", **cfg))
    assert set(stats["status"]) == {"model_error"} and stats["model_error"]
    assert len(pd.read_csv(tmp_path / "s.csv")) == 30


def test_resume_after_kill_loses_and_duplicates_nothing(tmp_path, test_csv, smollm2_gguf, sample_df):
    out = tmp_path / "sub.csv"
    ckpt = tmp_path / ("sub.csv" + C.CHECKPOINT_SUFFIX)
    cmd = [sys.executable, "-m", "recover", "predict", "--input", str(test_csv), "--output", str(out),
           "--model", str(smollm2_gguf), "--max-new-tokens", "12", "--n-ctx", "512", "--batch-size", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline:
        if ckpt.exists() and len(ckpt.read_text().splitlines()) >= 5:  # header + >= 4 rows
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    before = [json.loads(x)["id"] for x in ckpt.read_text().splitlines()[1:] if x.strip()]
    assert 4 <= len(before) < len(sample_df)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming: {len(before)} of {len(sample_df)} rows" in r.stdout
    sub = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(sub["id"]) == list(sample_df["id"])  # every id once, in order
    assert not ckpt.exists()


def test_llama_sampler_looks_at_the_likeliest_tokens_first_and_keeps_the_full_sorts_nucleus():
    """Top-p on llama.cpp's logits: the nucleus cut from the likeliest 64 tokens (or from a full sort where
    those hold less than top_p) is the one a full argsort gives, in the same order, so draws do not change."""
    from recover.models.sampling import likeliest_first

    rng = np.random.default_rng(0)
    for scale in (8.0, 3.0, 0.5):  # peaked (64 hold it), flatter, flat (the full sort)
        for _ in range(20):
            z = scale * rng.standard_normal(5000)
            p = np.exp(z - z.max())
            p /= p.sum()
            want = np.argsort(-p)
            got = likeliest_first(p, 0.95)
            cut = lambda o: list(o[: int(np.searchsorted(np.cumsum(p[o]), 0.95)) + 1])  # noqa: E731
            assert cut(got) == cut(want)
            assert (len(got) == 64) == (scale == 8.0)
