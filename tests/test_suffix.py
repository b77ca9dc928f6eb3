"""The suffix fitted to follow a predictor's predictions: its objective, and predict using it by default."""
import json
import shutil

import pandas as pd
import pytest

from recover import constants as C
from recover.meanprompt.optimize import OptimizeConfig
from recover.meanprompt.suffix import SuffixOptimizer, fit_suffix
from recover.score.embedder import Embedder, TokenCap, resolve_embedder
from recover.score.metric import scs_rows

PREDS = ["Rewrite this as a pirate", "Make it a formal letter", "Turn this into a haiku"]
TRUTHS = ["Rewrite this text as a pirate would say it", "Rewrite it as a formal business letter",
          "Convert the text into a haiku poem"]


@pytest.fixture(scope="module")
def emb():
    return Embedder(resolve_embedder(None))


def test_the_objective_is_each_prediction_followed_by_the_suffix(emb):
    """score(s) = mean_i cos(e(pred_i + ' ' + s), e(true_i))^3, not the suffix alone, not the predictions alone."""
    opt = SuffixOptimizer(emb, PREDS, TRUTHS, ["text", "poem", "letter"], OptimizeConfig(beam=1, steps=1))
    s = "text written in a new style"
    by_hand = scs_rows(emb.encode([f"{p} {s}" for p in PREDS]), emb.encode(TRUTHS)).mean()
    alone = scs_rows(emb.encode([s] * 3), emb.encode(TRUTHS)).mean()
    assert opt.score_many([s])[0] == pytest.approx(by_hand, abs=1e-5)
    assert abs(by_hand - alone) > 1e-3  # the two objectives really differ on these rows
    assert opt.score_many([""])[0] == pytest.approx(scs_rows(emb.encode(PREDS), emb.encode(TRUTHS)).mean(), abs=1e-5)


def test_the_fit_is_never_worse_than_the_prediction_alone_or_with_the_mean(emb):
    fit = fit_suffix(emb, PREDS, TRUTHS, ["text", "poem", "letter", "style", "rewrite"],
                     "Rewrite the text in a different style", OptimizeConfig(beam=2, steps=2, prerank=5, insert_words=2),
                     cap=TokenCap.from_spec(emb.spec), log=lambda *_: None)
    sc = fit["scores"]
    assert sc["suffix"] >= max(sc["alone"], sc["mean"]) - 1e-9


@pytest.fixture
def lora_with_suffix(tmp_path):
    src = C.DEFAULT_LORA
    from recover.models.shipped import ASSETS

    d = tmp_path / "lora"
    shutil.copytree(ASSETS / C.LORA_ASSETS_DIR / src, d)
    m = json.loads((d / C.MANIFEST_FILE).read_text())
    m.update(suffix="in a new written style", combine="pred+suffix")
    (d / C.MANIFEST_FILE).write_text(json.dumps(m))
    return d


def test_predict_uses_the_artifact_suffix_by_default(tmp_path, lora_with_suffix, sample_df):
    from recover.predict.config import PredictConfig
    from recover.predict.runner import run_predict

    test = tmp_path / "t.csv"
    sample_df.head(3)[["id", "original_text", "rewritten_text"]].to_csv(test, index=False)
    out = tmp_path / "s.csv"
    llm = {"lora_path": str(lora_with_suffix), "max_new_tokens": 8, "engine": "torch"}
    stats = run_predict(PredictConfig(str(test), str(out), predictor="llm", model=C.PYPI_SMOLLM2, llm=llm,
                                      cpu_quant="none"), log=lambda *_: None)
    assert stats["combine"] == "pred+suffix"
    sub = pd.read_csv(out, keep_default_na=False)
    assert all(p.endswith("in a new written style") for p in sub[C.COL_PROMPT]), list(sub[C.COL_PROMPT])
    alone = run_predict(PredictConfig(str(test), str(tmp_path / "a.csv"), predictor="llm", model=C.PYPI_SMOLLM2,
                                      llm=llm, cpu_quant="none", combine="llm"), log=lambda *_: None)
    assert alone["combine"] == "pred"  # asked for: the model alone
    assert not any(p.endswith("in a new written style") for p in pd.read_csv(tmp_path / "a.csv")[C.COL_PROMPT])


def test_asking_for_a_suffix_the_artifact_lacks_is_one_clear_error(tmp_path, sample_df):
    from recover.predict.defaults import predict_config
    from recover.predict.runner import run_predict

    test = tmp_path / "t.csv"
    sample_df.head(2)[["id", "original_text", "rewritten_text"]].to_csv(test, index=False)
    with pytest.raises(ValueError, match="carries no suffix"):
        run_predict(predict_config(str(test), str(tmp_path / "s.csv"), predictor="llm", model=C.PYPI_SMOLLM2,
                                   llm={"max_new_tokens": 4, "engine": "torch", "lora_path": "none"}, combine="llm+suffix", cpu_quant="none"),
                    log=lambda *_: None)
