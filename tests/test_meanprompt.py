import json

import pytest

from recover.meanprompt.optimize import MeanPromptOptimizer, OptimizeConfig, load_state, vocab_from_texts
from recover.score.embedder import Embedder

TARGETS = [f"{verb} this text {how}" for verb in ("Rewrite", "Convert", "Make", "Turn")
           for how in ("as a poem", "into a formal letter", "more casual", "like a pirate", "as a short story")]


@pytest.fixture(scope="module")
def emb():
    return Embedder.resolve(None)


def test_optimizer_improves_monotonically_and_respects_the_cap(emb, tmp_path):
    cfg = OptimizeConfig(beam=2, steps=5, prerank=20, insert_words=4, max_tokens=12)
    opt = MeanPromptOptimizer(emb, TARGETS, vocab_from_texts(TARGETS, min_count=1), cfg, heldout=TARGETS[:4])
    st = opt.run(out=tmp_path / "mp.json")
    scores = [t["score"] for t in st.trajectory]
    assert scores == sorted(scores) and scores[-1] > scores[0]
    assert all(len(emb.tokenizer(text)["input_ids"]) <= 12 for text, _ in st.beam)  # the metric tokenizer's count
    saved = json.loads((tmp_path / "mp.json").read_text())
    assert saved["prompt"] == st.beam[0][0] and saved["scores"]["heldout"] is not None
    # the recorded score is the metric of the saved string against the targets, computed here by hand
    import numpy as np

    e, t = emb.encode([saved["prompt"]])[0], emb.encode(TARGETS)
    by_hand = float(np.mean([(float(e @ x) / (np.linalg.norm(e) * np.linalg.norm(x))) ** 3 for x in t]))
    assert by_hand == pytest.approx(saved["scores"]["train"], abs=1e-5)


def test_tight_token_cap(emb):
    cfg = OptimizeConfig(beam=1, steps=6, prerank=10, insert_words=2, max_tokens=4)
    opt = MeanPromptOptimizer(emb, TARGETS, vocab_from_texts(TARGETS, min_count=1), cfg)
    st = opt.run()
    assert len(emb.tokenizer(st.beam[0][0])["input_ids"]) <= 4


def test_resume_continues_the_trajectory(emb, tmp_path):
    vocab = vocab_from_texts(TARGETS, min_count=1)
    out = tmp_path / "mp.json"
    MeanPromptOptimizer(emb, TARGETS, vocab, OptimizeConfig(beam=1, steps=2, prerank=10, min_gain=-1)).run(out=out)
    st = load_state(out)
    assert len(st.trajectory) == 2
    st2 = MeanPromptOptimizer(emb, TARGETS, vocab, OptimizeConfig(beam=1, steps=4, prerank=10, min_gain=-1)).run(st, out)
    assert [t["step"] for t in st2.trajectory] == [1, 2, 3, 4]


def test_bad_config():
    with pytest.raises(ValueError):
        OptimizeConfig(max_tokens=500)
    with pytest.raises(ValueError):
        OptimizeConfig(moves=("teleport",))


def test_bench_takes_no_search_flag_it_would_ignore(tmp_path, capsys):
    from recover.cli import main

    # `meanprompt bench` times greedy append steps (beam 1, append only): the search's knobs are not its flags
    (tmp_path / "t.txt").write_text("Make it a poem\nTurn it into a letter\n")
    for flag, value in (("--beam", "8"), ("--steps", "3"), ("--insert-words", "2"), ("--resume", "")):
        with pytest.raises(SystemExit):
            main(["meanprompt", "bench", "--targets", str(tmp_path / "t.txt"), flag, *([value] if value else [])])
        assert f"unrecognized arguments: {flag}" in capsys.readouterr().err
