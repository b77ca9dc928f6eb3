"""Submission guarantees: every id once, in order; never blank; never over 128 metric tokens."""
import pandas as pd
import pytest

from recover import constants as C
from recover.predict.config import PredictConfig, parse_duration
from recover.predict.runner import run_predict
from recover.score.embedder import TokenCap, resolve_embedder


def test_mean_predictor_writes_every_id_in_order(tmp_path, test_csv, sample_df):
    out = tmp_path / "sub.csv"
    stats = run_predict(PredictConfig(str(test_csv), str(out)))
    sub = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(sub.columns) == ["id", "rewrite_prompt"]
    assert list(sub["id"]) == list(sample_df["id"])
    assert stats["status"] == {"ok": len(sample_df)}


@pytest.mark.parametrize("which", ["proxy", "sentence-t5"])
def test_long_prompts_are_capped_at_128_metric_tokens(tmp_path, test_csv, tiny_sentence_t5, which):
    embedder = None if which == "proxy" else str(tiny_sentence_t5)
    long = " ".join(["Rewrite this text as a formal poem with vivid imagery"] * 60)
    out = tmp_path / "sub.csv"
    run_predict(PredictConfig(str(test_csv), str(out), mean_prompt=long, embedder=embedder))
    cap = TokenCap.from_spec(resolve_embedder(embedder))
    sub = pd.read_csv(out, dtype=str, keep_default_na=False)
    for s in sub["rewrite_prompt"]:
        assert s.strip()
        assert cap.count(s) <= C.MAX_PROMPT_TOKENS
        assert long.startswith(s)  # cut at a word boundary, text kept as written
    assert cap.count(sub["rewrite_prompt"][0]) > C.MAX_PROMPT_TOKENS - 15  # and not cut far too short


def test_token_cap_handles_one_giant_word(tiny_sentence_t5):
    cap = TokenCap.from_spec(resolve_embedder(str(tiny_sentence_t5)), max_tokens=10)
    out = cap("x" * 500)
    assert out and cap.count(out) <= 10


def test_blank_mean_prompt_is_rejected(tmp_path, test_csv):
    with pytest.raises(ValueError, match="blank"):
        run_predict(PredictConfig(str(test_csv), str(tmp_path / "s.csv"), mean_prompt="   "))


def test_config_rejects_bad_combinations():
    with pytest.raises(ValueError, match="needs --model"):
        PredictConfig("a", "b", predictor="llm")
    with pytest.raises(ValueError, match="seed 0"):
        PredictConfig("a", "b", seed=0)
    with pytest.raises(ValueError, match="--combine"):
        PredictConfig("a", "b", combine="both")
    with pytest.raises(ValueError, match="time-budget"):
        PredictConfig("a", "b", time_budget="soon")
    with pytest.raises(ValueError, match="predict_config"):  # `--lora none` is a flag's word, resolved there
        PredictConfig("a", "b", predictor="llm", model="m.gguf", llm={"lora_path": C.NO_LORA})


def test_the_config_is_read_never_written():
    import dataclasses

    cfg = PredictConfig("a", "b", predictor="embed", model="m", combine="embed+mean")
    assert cfg.combine == "pred+mean"  # the canonical name, so the checkpoint and the record do not see the alias
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.combine = "pred"


def test_parse_duration():
    assert parse_duration("8h30m") == 8.5 * 3600
    assert parse_duration("90s") == 90
    assert parse_duration("45m") == 2700
    assert parse_duration("12") == 12
    assert parse_duration(None) is None


def test_a_backend_failing_every_row_exits_non_zero_after_writing_a_valid_file(tmp_path, test_csv, monkeypatch, capsys):
    from recover.cli import main
    from recover.predict.embed import EmbedPredictor

    def broken(self, originals, rewrites, deadline=None):
        raise RuntimeError("backend exploded")

    monkeypatch.setattr(EmbedPredictor, "predict_batch", broken)
    out = tmp_path / "s.csv"
    assert main(["predict", "--input", str(test_csv), "--output", str(out), "--predictor", "embed"]) == 2
    assert "rows failed in the model" in capsys.readouterr().err
    sub = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert len(sub) == 30 and all(sub["rewrite_prompt"].str.strip() != "")
    # --on-model-error fallback accepts the same run, loudly
    assert main(["predict", "--input", str(test_csv), "--output", str(out), "--predictor", "embed",
                 "--on-model-error", "fallback", "--restart"]) == 0
    assert "ERROR: 30 of 30 rows failed" in capsys.readouterr().out


def test_a_resumed_run_predicts_only_the_rows_it_is_missing(tmp_path, monkeypatch):
    """Killed after two chunks, rerun: the second run asks the backend for the other rows only, once each."""
    import pandas as pd

    from recover.predict import load, runner
    from recover.predict.base import MeanPredictor

    n = 30
    pd.DataFrame({"id": [f"r{i}" for i in range(n)], "original_text": [f"text {i}" for i in range(n)],
                  "rewritten_text": [f"rewrite {i}" for i in range(n)]}).to_csv(tmp_path / "t.csv", index=False)
    asked: list[str] = []

    class Backend(MeanPredictor):
        name = "fake"
        manifest = {"combine": "pred"}
        calls = 0

        def predict_batch(self, originals, rewrites, deadline=None):
            Backend.calls += 1
            if kill_after and Backend.calls > kill_after:
                raise KeyboardInterrupt  # a kill, not a row error: nothing past here is written
            asked.extend(originals)
            return [f"Rewrite {o}" for o in originals]

    monkeypatch.setattr(load, "build_predictor", lambda cfg, mean, cap, log: Backend(mean))
    cfg = dict(input=str(tmp_path / "t.csv"), output=str(tmp_path / "sub.csv"), batch_size=5,
               run_root=str(tmp_path / "runs"))
    kill_after = 2
    with pytest.raises(KeyboardInterrupt):
        runner.run_predict(PredictConfig(**cfg), log=lambda *a: None)
    assert len(asked) == 10 and not (tmp_path / "sub.csv").exists()
    kill_after, asked[:] = 0, []
    runner.run_predict(PredictConfig(**cfg), log=lambda *a: None)
    assert sorted(asked) == sorted(f"text {i}" for i in range(10, n))  # the missing 20, none twice
    out = pd.read_csv(tmp_path / "sub.csv")
    assert list(out.id) == [f"r{i}" for i in range(n)]
    assert list(out.rewrite_prompt) == [f"Rewrite text {i}" for i in range(n)]


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    from recover import csvio

    out = tmp_path / "sub.csv"
    out.write_text("id,rewrite_prompt\nold,previous run\n")

    def disk_full(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(csvio.os, "replace", disk_full)
    with pytest.raises(OSError):
        csvio.write_submission(out, ["a"], ["new prompt"])
    assert out.read_text() == "id,rewrite_prompt\nold,previous run\n"  # never half a file
    assert [p.name for p in tmp_path.iterdir()] == ["sub.csv"]  # and no temp file left behind
