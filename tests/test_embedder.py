"""Offline embedder resolution order and the real sentence-t5 code path (tiny model built here)."""
import shutil
import subprocess
import sys

import numpy as np
import pytest

from recover import constants as C
from recover.score.embedder import Embedder, find_kaggle_sentence_t5, packaged_proxy_path, resolve_embedder
from recover.score.scoring import run_score


def fake_kaggle(tmp_path, st5):
    root = tmp_path / "kaggle_input"
    dest = root / "datasets" / "someone" / "sentence-t5-base-offline" / "sentence-t5-base"
    shutil.copytree(st5, dest)
    (root / "competitions" / C.COMPETITION_SLUG).mkdir(parents=True)
    return root, dest


def test_resolution_order(tmp_path, monkeypatch, tiny_sentence_t5):
    root, kaggle_copy = fake_kaggle(tmp_path, tiny_sentence_t5)
    env_copy = shutil.copytree(tiny_sentence_t5, tmp_path / "env_model")
    explicit = shutil.copytree(tiny_sentence_t5, tmp_path / "explicit_model")
    monkeypatch.setenv("RECOVER_KAGGLE_INPUT", str(root))
    monkeypatch.setenv(C.ENV_EMBEDDER, str(env_copy))
    assert resolve_embedder(explicit).source == "--embedder"
    assert resolve_embedder(None).path == env_copy
    monkeypatch.delenv(C.ENV_EMBEDDER)
    spec = resolve_embedder(None)
    assert (spec.path, spec.source) == (kaggle_copy, "/kaggle/input") and not spec.is_proxy
    monkeypatch.setenv("RECOVER_KAGGLE_INPUT", str(tmp_path / "empty"))
    spec = resolve_embedder(None)
    assert spec.path == packaged_proxy_path() and spec.is_proxy
    assert "PROXY" in spec.describe()


def test_bad_explicit_embedder_is_an_error(tmp_path):
    from recover.score.embedder import EmbedderNotFound

    with pytest.raises(EmbedderNotFound, match="not a sentence-transformers folder"):
        resolve_embedder(tmp_path)


def test_kaggle_glob_ignores_unrelated_models(tmp_path, tiny_sentence_t5):
    root = tmp_path / "in"
    shutil.copytree(tiny_sentence_t5, root / "datasets" / "x" / "some-other-model")
    assert find_kaggle_sentence_t5(root) is None


def test_sentence_t5_path_matches_a_hand_computation(tiny_sentence_t5):
    """T5 encoder -> mean pool over real tokens -> dense -> L2 normalise, computed by hand."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, T5EncoderModel

    texts = ["rewrite this text as a poem", "make it formal"]
    emb = Embedder.resolve(str(tiny_sentence_t5))
    v = emb.encode(texts)
    assert v.shape == (2, 16) and not emb.spec.is_proxy
    tok = AutoTokenizer.from_pretrained(tiny_sentence_t5)
    enc = T5EncoderModel.from_pretrained(tiny_sentence_t5).eval()
    dense_dir = next(p for p in tiny_sentence_t5.iterdir() if p.name.endswith("Dense"))
    w = next(iter(load_file(str(next(dense_dir.glob("*.safetensors")))).values()))
    with torch.no_grad():
        b = tok(texts, padding=True, return_tensors="pt")
        h = enc(**b).last_hidden_state
        m = b["attention_mask"].unsqueeze(-1).float()
        pooled = (h * m).sum(1) / m.sum(1)
        out = torch.nn.functional.normalize(pooled @ w.T, dim=-1).numpy()
    assert np.allclose(v, out, atol=1e-5)


def test_a_name_alone_is_not_sentence_t5(tmp_path):
    """The proxy copied into a folder called sentence-t5-base is still the proxy (no T5, no Dense)."""
    fake = tmp_path / "sentence-t5-base"
    shutil.copytree(packaged_proxy_path(), fake)
    assert resolve_embedder(str(fake)).is_proxy


def test_score_report_and_identity(tmp_path, sample_df):
    truth = tmp_path / "truth.csv"
    sample_df[["id", "rewrite_prompt"]].to_csv(truth, index=False)
    res = run_score(truth, truth, Embedder.resolve(None), report=str(tmp_path / "rep"))
    assert res.score == pytest.approx(1.0, abs=1e-5)
    for f in ("per_row.csv", "summary.json", "scs_hist.png"):
        assert (tmp_path / "rep" / f).is_file()
    assert "PROXY" in (tmp_path / "rep" / "summary.json").read_text()


def test_score_rejects_missing_ids(tmp_path, sample_df):
    truth, pred = tmp_path / "truth.csv", tmp_path / "pred.csv"
    sample_df[["id", "rewrite_prompt"]].to_csv(truth, index=False)
    sample_df[["id", "rewrite_prompt"]].iloc[1:].to_csv(pred, index=False)
    from recover.csvio import InputError

    with pytest.raises(InputError, match="no prediction for id 's000'"):
        run_score(pred, truth, Embedder.resolve(None))


def test_score_works_with_no_network_at_all(tmp_path, sample_df):
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"]).returncode != 0:
        pytest.skip("unshare -n not available")
    truth = tmp_path / "truth.csv"
    sample_df[["id", "rewrite_prompt"]].to_csv(truth, index=False)
    env_cmd = ["unshare", "-n", "env", "-u", "HF_HUB_OFFLINE", "-u", "TRANSFORMERS_OFFLINE",
               sys.executable, "-m", "recover", "score", "--pred", str(truth), "--truth", str(truth)]
    r = subprocess.run(env_cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "PROXY SCS: 1.0000" in r.stdout and "packaged proxy" in r.stdout


def test_bf16_features_stay_within_tolerance_and_normalised():
    """bf16 is for the embed predictor's features: same vectors to ~1e-4 in cosine, unit norm in float32."""
    spec = resolve_embedder(None)
    texts = ["Rewrite this as a pirate.", "Make it a formal letter to the city council about parking.", ""]
    a, b = Embedder(spec).encode(texts), Embedder(spec, dtype="bf16").encode(texts)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-6)
    assert (np.einsum("ij,ij->i", a, b) > 0.999).all()
    assert not np.array_equal(a, b)  # really another precision
    with pytest.raises(ValueError, match="dtype"):
        Embedder(spec, dtype="fp16")


def test_auto_dtype_is_bf16_only_on_a_bf16_cpu(monkeypatch):
    import recover.score.embedder as E

    spec = resolve_embedder(None)
    for fast, device, want in ((True, "cpu", "bf16"), (False, "cpu", "fp32"), (True, "cuda", "fp32")):
        monkeypatch.setattr(E, "cpu_has_fast_bf16", lambda fast=fast: fast)
        assert Embedder(spec, device=device, dtype="auto").dtype == want
    assert Embedder(spec, device="cpu").dtype == "fp32"  # scoring's default: the metric's precision


def test_encode_counts_strings_tokens_and_seconds():
    e = Embedder(resolve_embedder(None))
    e.encode(["one two three", "four"])
    n = sum(len(x) for x in e.tokenizer(["one two three", "four"])["input_ids"])
    assert e.strings == 2 and e.tokens == n and e.seconds > 0


def test_bf16_rows_are_cached_apart_from_fp32(tmp_path):
    from recover.eval.cache import EmbeddingCache

    spec = resolve_embedder(None)
    c32, c16 = EmbeddingCache(Embedder(spec), tmp_path), EmbeddingCache(Embedder(spec, dtype="bf16"), tmp_path)
    assert c32.path != c16.path and c16.path.name.endswith("-bf16.npz")
