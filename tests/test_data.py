"""Training-data chain on CPU with a real small GGUF rewriter (SmolLM2), few rows, short outputs."""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from recover.data.label import classify, run_label
from recover.data.originals import import_originals
from recover.data.pairs import PairsConfig, build_pairs, sft_rows
from recover.data.rewrite import RewriteConfig, merge_shards, run_rewrite
from recover.models.prompting import build_messages, load_template
from recover.score.embedder import Embedder

FAST = dict(max_new_tokens=16, n_ctx=512, bank_size=50)


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    d = tmp_path_factory.mktemp("orig")
    (d / "a.txt").write_text("The bakery on Main Street sells fresh bread every morning before seven.\n\n"
                             "Too short.\n\nThe bakery on Main Street sells fresh bread every morning before seven.\n")
    (d / "b.jsonl").write_text(json.dumps({"text": "Our hiking club climbed the north ridge in record time this weekend."}) + "\n")
    pd.DataFrame({"original_text": ["The council approved new bike lanes along the river path.",
                                    "Remember   to water\\r\\nthe tomatoes twice a day during the heat wave."]}).to_csv(d / "c.csv", index=False)
    out = d / "originals.csv"
    counts = import_originals([str(d / "a.txt"), str(d / "b.jsonl"), str(d / "c.csv")], str(out), min_chars=20)
    assert counts == {"read": 6, "too_short": 1, "too_long": 0, "duplicate": 1, "kept": 4}
    return out


@pytest.fixture(scope="module")
def unsharded(tmp_path_factory, originals, smollm2_gguf):
    out = tmp_path_factory.mktemp("rw")
    run_rewrite(RewriteConfig(originals=str(originals), out_dir=str(out), model=str(smollm2_gguf), **FAST))
    return merge_shards(str(out))


def _strip_time(df):
    return df.drop(columns=["time"]).reset_index(drop=True)


def test_rewrite_rows_carry_provenance(unsharded):
    df = pd.read_csv(unsharded, dtype=str, keep_default_na=False)
    assert len(df) == 4 and df["id"].is_unique
    for col in ("model_file", "model_sha256", "template", "temperature", "job_seed", "time", "category"):
        assert col in df.columns and (df[col] != "").all()


def test_shards_merged_equal_the_unsharded_run(tmp_path, originals, smollm2_gguf, unsharded):
    for i in range(2):
        run_rewrite(RewriteConfig(originals=str(originals), out_dir=str(tmp_path), model=str(smollm2_gguf),
                                  shard=f"{i}/2", **FAST))
    merged = pd.read_csv(merge_shards(str(tmp_path)), dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(_strip_time(merged), _strip_time(pd.read_csv(unsharded, dtype=str, keep_default_na=False)))


def test_rewrite_resumes_after_kill_without_loss_or_duplicates(tmp_path, originals, smollm2_gguf):
    cmd = [sys.executable, "-m", "recover", "data", "rewrite", "--originals", str(originals), "--model", str(smollm2_gguf),
           "--out", str(tmp_path), "--max-new-tokens", "48", "--bank-size", "50", "--per-original", "3"]
    shard = tmp_path / "rewrites.shard-0-of-1.jsonl"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not (shard.exists() and len(shard.read_text().splitlines()) >= 3):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = len([x for x in shard.read_text().splitlines() if x.strip()])
    assert 3 <= before < 12
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    ids = [json.loads(x)["id"] for x in shard.read_text().splitlines() if x.strip()]
    assert len(ids) == 12 and len(set(ids)) == 12


@pytest.mark.parametrize("orig, rew, trunc, want", [
    ("a b c", "", False, "empty"),
    ("a b c", "I'm sorry, but I cannot help with that.", False, "refusal"),
    ("a b c", "As an AI language model I won't.", False, "refusal"),
    ("a b c", "Some long rewrite that was cut", True, "truncated"),
    ("the cat sat on the mat today", "The cat sat on the mat today!", False, "copy_through"),
    ("the cat sat on the mat", "A feline rested upon a rug, content.", False, "keep"),
])
def test_each_filter(orig, rew, trunc, want):
    assert classify(orig, rew, trunc) == want


def test_label_and_pairs_use_the_inference_prompt_format(tmp_path, unsharded):
    df = pd.read_csv(unsharded, dtype=str, keep_default_na=False)
    df.loc[0, "rewritten_text"] = "I'm sorry, I can't do that."
    df.loc[1, "rewritten_text"] = "A completely different and lively text about fresh loaves and early mornings."
    df.loc[1, "truncated"] = "False"
    df.to_csv(tmp_path / "rw.csv", index=False)
    emb = Embedder.resolve(None)
    rep = run_label(str(tmp_path / "rw.csv"), str(tmp_path / "lab"), emb)
    assert rep["dropped"]["refusal"] == 1 and rep["kept"] >= 1
    lab = pd.read_csv(tmp_path / "lab" / "labelled.csv")
    assert "scs_original_rewrite" in lab and "category" in lab
    out = tmp_path / "pairs.jsonl"
    build_pairs(PairsConfig(labelled=str(tmp_path / "lab" / "labelled.csv"), out=str(out), bank_size=200,
                            band_low=0.0, band_high=0.95), emb)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert rows
    tpl = load_template(None)
    for r in rows:
        src = lab[lab["id"] == r["id"]].iloc[0]
        assert r["prompt"] == build_messages(tpl, src["original_text"], src["rewritten_text"])
        assert r["chosen"][0]["content"] == src["rewrite_prompt"] != r["rejected"][0]["content"]
    n = sft_rows(str(tmp_path / "lab" / "labelled.csv"), str(tmp_path / "sft.jsonl"))
    assert n == len(lab)


def test_writer_mode_writes_originals_from_the_grid(tmp_path, smollm2_gguf):
    from recover.data.originals import write_originals

    out = tmp_path / "written.csv"
    assert write_originals(str(smollm2_gguf), str(out), n=2, max_new_tokens=24) == {"written": 2}
    df = pd.read_csv(out)
    assert set(df.columns) >= {"id", "original_text", "genre", "topic"} and df["original_text"].str.len().min() > 0


def test_bank_is_labelled_distinct_and_dedupes_near_duplicates():
    from recover.data.prompt_bank import BankPrompt, dedupe_by_embedding, generate_bank

    bank = generate_bank(300, seed=7)
    assert len({b.prompt for b in bank}) == 300 and all(b.category for b in bank)
    assert generate_bank(300, seed=7) == bank  # seeded: the same bank every time
    dup = [BankPrompt("Rewrite this text as a poem.", "convert"), BankPrompt("Rewrite this text as a poem!", "convert"),
           BankPrompt("Summarize the text in one sentence.", "length")]
    kept = dedupe_by_embedding(dup, Embedder.resolve(None), threshold=0.95)
    assert [k.prompt for k in kept] == ["Rewrite this text as a poem.", "Summarize the text in one sentence."]


def test_pairs_hard_negatives_come_from_the_model_under_the_pairs_template(tmp_path, monkeypatch):
    import pandas as pd

    from recover.data import pairs as P

    seen = {}

    class Fake:
        def __init__(self, cfg):
            seen["template"] = cfg.template

        def predict_batch(self, originals, rewrites):
            return ["Make it shorter" for _ in originals]

    monkeypatch.setattr(P, "LlamaPredictor", Fake)
    lab = tmp_path / "labelled.csv"
    pd.DataFrame({"id": ["1", "2"], "original_text": ["a cat sat", "the sun"], "rewritten_text": ["a cat, sat!", "sun."],
                  "rewrite_prompt": ["Add punctuation", "Shorten it"]}).to_csv(lab, index=False)

    class Emb:
        def encode(self, texts):
            import numpy as np

            rng = np.random.default_rng(len(texts))
            x = rng.normal(size=(len(texts), 8)).astype("float32")
            return x / np.linalg.norm(x, axis=1, keepdims=True)

    P.build_pairs(P.PairsConfig(labelled=str(lab), out=str(tmp_path / "p.jsonl"), model="m.gguf", template="short"),
                  Emb(), log=lambda *a: None)
    assert seen["template"] == "short"
