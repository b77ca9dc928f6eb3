"""The mean-prompt search vocabulary: target words + the metric tokenizer's pieces, never held-out words."""
import numpy as np
import pandas as pd

from recover import constants as C
from recover.eval.methods import FitSettings, Rows, fit_mean
from recover.data.protocols import normalise_prompt
from recover.meanprompt.optimize import vocab_from_tokenizer
from recover.score.embedder import Embedder


def test_proxy_pieces_are_word_initial_single_tokens():
    tok = Embedder.resolve(None).tokenizer
    pieces = vocab_from_tokenizer(tok)
    assert len(pieces) > 10000 and "story" in pieces and "poem" in pieces and "b" not in pieces
    assert not any(p.startswith("##") or p.startswith("[") for p in pieces)
    sample = pieces[::500]
    assert all(len(tok(p, add_special_tokens=False)["input_ids"]) == 1 for p in sample)


def test_sentencepiece_pieces_open_a_word(tiny_sentence_t5):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_sentence_t5)
    pieces = vocab_from_tokenizer(tok)
    assert pieces and not any(p.startswith("\u2581") for p in pieces)
    assert all(len(tok(p, add_special_tokens=False)["input_ids"]) == 1 for p in pieces[:50])
    # word-internal pieces (no leading \u2581) are not offered as words
    v = tok.get_vocab()
    internal = [p for p in v if not p.startswith("\u2581") and p.isalpha() and len(p) > 1 and "\u2581" + p not in v]
    assert internal and not set(internal[:50]) & set(pieces)


def test_no_held_out_word_reaches_the_search(monkeypatch):
    """A word only the held-out prompts use must not be in the vocabulary, in either vocabulary mode."""
    from recover.eval import methods

    emb = Embedder.resolve(None)
    seen = {}

    class Capture:
        def __init__(self, embedder, targets, vocab, *a, **k):
            seen["vocab"], seen["targets"] = set(vocab) | set(k.get("pieces") or []), list(targets)

        def run(self):
            from recover.meanprompt.optimize import SearchState

            return SearchState(beam=[("rewrite", 0.1)], trajectory=[{}])

    monkeypatch.setattr(methods, "MeanPromptOptimizer", Capture)
    train_prompts = ["Rewrite it as a quixotical poem", "Make it quixotical and short", "Turn it into a letter"]
    held = ["Rewrite it in zorblaxian style", "Make zorblaxian zorblaxian again"]
    df = pd.DataFrame({C.COL_ID: ["1", "2", "3"], C.COL_PROMPT: train_prompts, C.COL_SOURCE: "s"})
    z = np.zeros((3, emb.dim), np.float32)
    rows = Rows(df, z, z, z, np.ones(3, bool))

    class Cache:
        path = None

        def encode(self, texts):
            return emb.encode(list(texts))

    for vocab in ("words", "words+pieces"):
        s = FitSettings(vocab=vocab, extra_targets=held + ["Write it as a quixotical song"], extra_weight=1.0)
        fit_mean(rows, s, emb, Cache(), exclude={normalise_prompt(p) for p in held}, store=None, log=lambda *a: None)
        assert "quixotical" in seen["vocab"]
        assert "zorblaxian" not in seen["vocab"], vocab
        assert not set(held) & set(seen["targets"])
        if vocab == "words+pieces":
            assert "lighthearted" in seen["vocab"] or "story" in seen["vocab"]


def test_pieces_get_their_own_share_of_the_prerank():
    """Adding ~thousands of pieces never pushes the target words out of the candidates of a step."""
    from recover.meanprompt.optimize import MeanPromptOptimizer, OptimizeConfig

    emb = Embedder.resolve(None)
    words = ["poem", "letter", "formal", "story", "pirate", "shorter"]
    pieces = vocab_from_tokenizer(emb.tokenizer)[2000:2600]
    opt = MeanPromptOptimizer(emb, ["Make it a poem", "Write a formal letter"], words,
                              OptimizeConfig(beam=1, steps=1, prerank=4, insert_words=2), log=lambda *a: None,
                              pieces=pieces)
    got = opt._ranked_words("rewrite", 4)
    assert len([w for w in got if w in words]) == 4 and len([w for w in got if w not in words]) == 2
    plain = MeanPromptOptimizer(emb, ["Make it a poem", "Write a formal letter"], words,
                                OptimizeConfig(beam=1, steps=1, prerank=4, insert_words=2), log=lambda *a: None)
    assert set(plain._ranked_words("rewrite", 4)) <= set(words)
