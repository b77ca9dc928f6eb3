"""Embed predictor: save/load round trip, and it beats the mean prompt where the map is learnable."""
import random

import numpy as np
import pandas as pd

from recover import constants as C
from recover.predict.embed import EmbedPredictor
from recover.predict.runner import PredictConfig, run_predict
from recover.train.embed import EmbedTrainConfig, train_embed

STYLES = {
    "Rewrite this text as a rhyming poem.": "Roses bloom and verses rhyme, {t} in rhythm, line by line.",
    "Make this sound like a pirate captain.": "Arr matey, ahoy! {t} Shiver me timbers, says the captain.",
    "Turn this into a formal business email.": "Dear Sir or Madam, I am writing regarding: {t} Kind regards.",
    "Summarize this text as a short news headline.": "BREAKING NEWS HEADLINE: {t}",
}
TOPICS = ["the bakery opened a new shop", "the river flooded the village", "our team won the final match",
          "the museum shows dinosaur bones", "a storm closed the airport", "the library extends its hours",
          "scientists found water on a moon", "the school play was a success", "prices of coffee went up"]


def make_pairs(n, seed):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        prompt = rng.choice(list(STYLES))
        topic = rng.choice(TOPICS)
        rows.append({"id": f"r{seed}-{i}", "original_text": f"Yesterday {topic}.",
                     "rewritten_text": STYLES[prompt].format(t=topic), "rewrite_prompt": prompt})
    return pd.DataFrame(rows)


def test_embed_predictor_learns_and_round_trips(tmp_path):
    data = tmp_path / "pairs.csv"
    make_pairs(160, 1).to_csv(data, index=False)
    bank = tmp_path / "bank.txt"
    bank.write_text("\n".join(list(STYLES) + ["Make it longer.", "Translate this into French."]) + "\n")
    out = tmp_path / "embed"
    m = train_embed(EmbedTrainConfig(data=[str(data)], out=str(out), bank_size=0, bank_files=[str(bank)],
                                     cache_dir=str(tmp_path / "cache"), runs_dir=str(tmp_path / "runs")))
    v = m["validation"]
    assert v[f"embed:{m['combine']}"] > v["mean"] + 0.1
    p = EmbedPredictor.load(out)
    test = make_pairs(12, 2)
    got = p.predict_batch(list(test.original_text), list(test.rewritten_text))
    assert np.mean([g == t for g, t in zip(got, test.rewrite_prompt)]) >= 0.75
    # load -> save -> load gives the same predictions
    p.save(tmp_path / "again")
    assert EmbedPredictor.load(tmp_path / "again").predict_batch(list(test.original_text), list(test.rewritten_text)) == got
    # and it runs through `recover predict`
    test[["id", "original_text", "rewritten_text"]].to_csv(tmp_path / "t.csv", index=False)
    stats = run_predict(PredictConfig(str(tmp_path / "t.csv"), str(tmp_path / "s.csv"), predictor="embed", model=str(out)))
    assert stats["combine"] == m["combine"] and stats["status"] == {"ok": 12}
    sub = pd.read_csv(tmp_path / "s.csv")
    assert list(sub[C.COL_ID]) == list(test.id)


def test_wrong_artifact_is_a_clear_error(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="not an embed-predictor artifact"):
        EmbedPredictor.load(tmp_path)
