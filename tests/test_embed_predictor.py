"""Embed predictor: fit on rows, save/load round trip, both decodings, `recover predict` runs it."""
import random

import numpy as np
import pandas as pd
import pytest

from recover import constants as C
from recover.data.pairs_io import load_pairs
from recover.eval.cache import EmbeddingCache
from recover.eval.methods import FitSettings, fit_embed
from recover.eval.run import embed_rows
from recover.meanprompt.prompt import MeanPrompt
from recover.predict.embed import EmbedPredictor
from recover.predict.config import PredictConfig
from recover.predict.runner import run_predict
from recover.score.embedder import Embedder

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


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("embed")
    make_pairs(120, 1).to_csv(tmp / "pairs.csv", index=False)
    emb = Embedder.resolve(None)
    cache = EmbeddingCache(emb, tmp / "cache")
    rows = embed_rows(load_pairs([str(tmp / "pairs.csv")]), cache)
    s = FitSettings(bank_size=20, extra_bank=list(STYLES) + ["Make it longer.", "Translate this into French."])
    mean = MeanPrompt("Rewrite this text.", "literal", {})
    return fit_embed(rows, s, mean, cache, emb, log=lambda *a: None), tmp


def test_embed_predictor_learns_and_round_trips(fitted, tmp_path):
    p, _ = fitted
    p.manifest.update(embedder=C.PROXY_MODEL_NAME, embedder_is_proxy=True, embedder_dim=384, combine="pred")
    test = make_pairs(16, 2)
    got = p.predict_batch(list(test.original_text), list(test.rewritten_text))
    # the right prompt, alone or hedged with the mean prompt
    hits = [t in g for g, t in zip(got, test.rewrite_prompt)]
    assert np.mean(hits) >= 0.75, got
    p.save(tmp_path / "a")
    q = EmbedPredictor.load(tmp_path / "a")
    assert q.predict_batch(list(test.original_text), list(test.rewritten_text)) == got  # float16 changes nothing
    test[["id", "original_text", "rewritten_text"]].to_csv(tmp_path / "t.csv", index=False)
    stats = run_predict(PredictConfig(str(tmp_path / "t.csv"), str(tmp_path / "s.csv"), predictor="embed",
                                      model=str(tmp_path / "a")))
    assert stats["combine"] == "pred" and stats["status"] == {"ok": 16}
    sub = pd.read_csv(tmp_path / "s.csv")
    assert list(sub[C.COL_ID]) == list(test.id) and list(sub[C.COL_PROMPT]) == got


def test_alpha_is_chosen_by_decoded_score_on_inner_folds(fitted):
    """Recomputed here with an independent ridge (numpy lstsq on an augmented system) and decoding:
    each alpha's inner-fold decoded SCS, and the chosen alpha is the best of them."""
    from recover.data.protocols import grouped_kfold

    p, tmp = fitted
    emb = Embedder.resolve(None)
    rows = embed_rows(load_pairs([str(tmp / "pairs.csv")]), EmbeddingCache(emb, tmp / "cache"))
    X = np.concatenate([rows.eo, rows.er, rows.er - rows.eo], 1).astype(np.float64)
    B = EmbeddingCache(emb, tmp / "cache").encode(p.candidates).astype(np.float64)
    by_alpha = {}
    for alpha in (1.0, 3.0, 10.0, 30.0, 100.0):
        got = []
        for f in grouped_kfold(list(rows.df[C.COL_PROMPT]), 3, 1234):
            Xa, Ya = X[f.train], rows.ep[f.train].astype(np.float64)
            xm, ym = Xa.mean(0), Ya.mean(0)
            aug_x = np.vstack([Xa - xm, np.sqrt(alpha) * np.eye(X.shape[1])])
            aug_y = np.vstack([Ya - ym, np.zeros((X.shape[1], Ya.shape[1]))])
            W = np.linalg.lstsq(aug_x, aug_y, rcond=None)[0]
            pick = np.argmax(((X[f.val] - xm) @ W + ym) @ B.T, 1)
            got.append(np.mean(np.sum(B[pick] * rows.ep[f.val], 1) ** 3))
        by_alpha[alpha] = float(np.mean(got))
    recorded = {float(k): v for k, v in p.manifest["inner_cv"]["scs_by_alpha"].items()}
    assert recorded == pytest.approx({k: round(v, 5) for k, v in by_alpha.items()}, abs=2e-5)
    assert p.manifest["alpha"] == max(by_alpha, key=by_alpha.get)
    assert p.candidates[0] == "Rewrite this text." and "Rewrite this text as a rhyming poem. Rewrite this text." in p.candidates


def test_wrong_artifact_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an embed-predictor artifact"):
        EmbedPredictor.load(tmp_path)
    (tmp_path / C.MANIFEST_FILE).write_text('{"format_version": 1, "kind": "embed_predictor"}')
    with pytest.raises(ValueError, match="unsupported artifact"):
        EmbedPredictor.load(tmp_path)


def test_weighted_ridge_equals_duplicated_rows_and_zero_drops_a_row():
    """Independent of the code under test's algebra: weight 2 == the row written twice; weight 0 == the row
    left out (alpha rescaled, since weights are scaled to mean 1)."""
    import numpy as np

    from recover.predict.embed import fit_ridge

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(12, 4)), rng.normal(size=(12, 3))
    w = np.ones(12)
    w[0] = 2.0
    W1, xm1, _ = fit_ridge(X, Y, 1.0, w)
    Xd, Yd = np.vstack([X, X[:1]]), np.vstack([Y, Y[:1]])
    W2, xm2, _ = fit_ridge(Xd, Yd, 1.0 * w.sum() / 12)  # weights scaled to mean 1: alpha x 13/12
    assert np.allclose(W1, W2, atol=1e-5) and np.allclose(xm1, xm2, atol=1e-6)
    w0 = np.ones(12)
    w0[:3] = 0
    W3, _, _ = fit_ridge(X, Y, 1.0, w0)
    W4, _, _ = fit_ridge(X[3:], Y[3:], 1.0 * 9 / 12)
    assert np.allclose(W3, W4, atol=1e-5)


def test_source_weights_reach_the_ridge_fit(monkeypatch):
    import numpy as np
    import pandas as pd

    from recover import constants as C
    from recover.eval import methods as M
    from recover.meanprompt.prompt import MeanPrompt

    rng = np.random.default_rng(1)
    n = 12
    e = rng.normal(size=(n, 8)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    df = pd.DataFrame({C.COL_ID: [str(i) for i in range(n)], C.COL_PROMPT: [f"p{i}" for i in range(n)],
                       C.COL_SOURCE: ["a"] * 6 + ["b"] * 6})
    rows = M.Rows(df, e, e, e, np.ones(n, bool))

    class Cache:
        def encode(self, texts):
            x = rng.normal(size=(len(texts), 8)).astype(np.float32)
            return x / np.linalg.norm(x, axis=1, keepdims=True)

    seen = []
    real = M.fit_ridge
    monkeypatch.setattr(M, "fit_ridge", lambda X, Y, alpha, w=None: seen.append(w) or real(X, Y, alpha, w))
    M.fit_embed(rows, M.FitSettings(bank_size=5, source_weights={"b": 0.25}), MeanPrompt("m", "x", {}), Cache(), None,
                log=lambda *a: None)
    final = seen[-1]
    assert final is not None and list(final) == [1.0] * 6 + [0.25] * 6


def test_embed_invert_ships_in_the_artifact_and_predict_runs_it(fitted, tmp_path):
    """--combine embed+invert: each decoded string is edited toward its row's predicted embedding with the
    vocabulary the artifact carries, within the per-row budget; an artifact without one says so."""
    import copy

    from recover.predict.invert import InvertConfig

    p, _ = fitted
    p = copy.copy(p)
    p.manifest = {**p.manifest, "embedder": C.PROXY_MODEL_NAME, "embedder_is_proxy": True, "embedder_dim": 384,
                  "combine": "pred"}
    test = make_pairs(12, 3)
    test[["id", "original_text", "rewritten_text"]].to_csv(tmp_path / "t.csv", index=False)
    p.save(tmp_path / "plain")
    with pytest.raises(ValueError, match="no inversion vocabulary"):
        run_predict(PredictConfig(str(tmp_path / "t.csv"), str(tmp_path / "x.csv"), predictor="embed",
                                  model=str(tmp_path / "plain"), combine="embed+invert"))
    words = ["poem", "pirate", "email", "headline", "rhyming", "formal", "captain", "news", "verse", "french"]
    p.with_invert_vocab(words, p.embedder.encode(words), InvertConfig(max_edits=2, exact=4))
    p.save(tmp_path / "inv")
    q = EmbedPredictor.load(tmp_path / "inv")
    assert q.invert_vocab == words and q.manifest["invert"]["config"]["max_edits"] == 2
    stats = run_predict(PredictConfig(str(tmp_path / "t.csv"), str(tmp_path / "s.csv"), predictor="embed",
                                      model=str(tmp_path / "inv"), combine="embed+invert"))
    assert stats["combine"] == "pred+invert" and stats["status"] == {"ok": 12}
    plain = q.predict_batch(list(test.original_text), list(test.rewritten_text))  # inversion not enabled here
    got = list(pd.read_csv(tmp_path / "s.csv")[C.COL_PROMPT])
    assert got != plain
    pe = q.predict_embeddings(list(test.original_text), list(test.rewritten_text))
    # each edited string is at least as close to its row's predicted embedding as the decoded one, in <= 2 edits
    e_got, e_plain = q.embedder.encode(got), q.embedder.encode(plain)
    assert ((e_got * pe).sum(1) >= (e_plain * pe).sum(1) - 1e-3).all()
    assert all(len(set(g.split()) - set(s.split())) <= 2 for g, s in zip(got, plain))
