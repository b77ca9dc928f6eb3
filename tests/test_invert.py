"""Per-row inversion moves a string toward its target embedding, and never spends more than its per-row
budget of edits; only a run's deadline reads the clock. A bag-of-words embedding stands in for the metric's
embedder: the edits, the ranking and the budget are what is tested, not the encoder."""
import numpy as np
import pytest

from recover.predict.invert import InvertConfig, Inverter, edits

WORDS = ["rewrite", "this", "text", "as", "a", "poem", "formal", "letter", "shanty", "pirate", "email", "summary"]


def bow(texts):
    out = np.zeros((len(texts), len(WORDS)), np.float32)
    for i, t in enumerate(texts):
        for w in t.split():
            if w in WORDS:
                out[i, WORDS.index(w)] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def inverter(**kw):
    return Inverter(bow, WORDS, bow(WORDS), InvertConfig(**kw))


TARGET = bow(["rewrite this text as a pirate shanty"])[0]


def test_edits_move_the_string_toward_its_target():
    out, info = inverter(max_edits=10).row("rewrite this text as a formal letter", TARGET)
    assert info["cos"] > float(bow(["rewrite this text as a formal letter"])[0] @ TARGET) + 0.2
    assert {"pirate", "shanty"} <= set(out.split())
    assert info["stop"] == "converged" and info["edits"] <= 10


def test_the_per_row_edit_budget_holds():
    for n in (0, 1, 2):
        out, info = inverter(max_edits=n).row("rewrite this text as a formal letter", TARGET)
        assert info["edits"] == n
        # each edit changes the word multiset by at most one append / front / replace / delete
        assert len(set(out.split()) ^ set("rewrite this text as a formal letter".split())) <= 2 * n


def test_the_runs_deadline_stops_the_edits():
    """A clock that moves 1 s per encoder call: a deadline at 2.5 s allows the start's encoding and two edits."""
    now = [0.0]

    def slow(texts):
        now[0] += 1.0
        return bow(texts)

    # exact=0: every neighbour encoded (the shortlist would also encode words it has not met: more calls)
    inv = Inverter(slow, WORDS, bow(WORDS), InvertConfig(max_edits=50, exact=0), clock=lambda: now[0])
    out, info = inv.row("rewrite this text as a formal letter", TARGET, deadline=2.5)
    assert info["stop"] == "deadline" and info["edits"] == 2
    # rows() edits all rows in lockstep (one encoder call a round), the deadline checked before each round
    now[0] = 0.0
    outs, infos = inv.rows(["a poem", "an email"], np.stack([TARGET, TARGET]), deadline=4.5)
    assert [d["stop"] for d in infos] == ["deadline", "deadline"] and [d["edits"] for d in infos] == [4, 4]
    assert now[0] == 5.0 and inv.deadline_bound == 3  # the start's encoding + 4 rounds, then the deadline


def test_without_a_deadline_the_strings_do_not_depend_on_the_clock():
    """The default has no deadline: a machine 1,000x slower (a clock jumping 1,000 s a read) edits the same."""
    starts, targets = ["a poem", "rewrite this text as a formal letter"], np.stack([TARGET, TARGET])
    cfg = InvertConfig(max_edits=6, exact=0)
    frozen = Inverter(bow, WORDS, bow(WORDS), cfg, clock=lambda: 0.0).rows(starts, targets)
    t = [0.0]

    def crawling():
        t[0] += 1000.0
        return t[0]

    slow = Inverter(bow, WORDS, bow(WORDS), cfg, clock=crawling)
    out, info = slow.rows(starts, targets)
    assert out == frozen[0] and [d["edits"] for d in info] == [d["edits"] for d in frozen[1]]
    assert "deadline" not in {d["stop"] for d in info} and slow.deadline_bound == 0


def test_an_artifacts_retired_seconds_guard_is_dropped_and_unknown_keys_are_errors():
    cfg = InvertConfig.from_manifest({"max_edits": 3, "max_seconds": 1.0, "exact": 4})
    assert (cfg.max_edits, cfg.exact) == (3, 4)
    with pytest.raises(TypeError, match="max_second"):
        InvertConfig.from_manifest({"max_second": 1.0})


def test_rows_in_lockstep_equal_row_by_row():
    inv = inverter(max_edits=3, exact=5)
    starts = ["rewrite this text as a formal letter", "a poem", "summary email", "pirate"]
    targets = bow(["pirate shanty", "formal letter", "rewrite as a poem", "email summary"])
    together, info = inv.rows(starts, targets)
    assert together == [inv.row(s, t)[0] for s, t in zip(starts, targets)]
    assert all(d["edits"] <= 3 for d in info)
    assert inverter(max_edits=0).rows(starts, targets)[0] == starts


def test_blend_one_stays_put_and_config_errors():
    out, info = inverter(blend=1.0, max_edits=5).row("rewrite this text as a formal letter", TARGET)
    assert out == "rewrite this text as a formal letter" and info["edits"] == 0
    with pytest.raises(ValueError, match="blend"):
        InvertConfig(blend=1.5)
    with pytest.raises(ValueError, match="one embedding per vocabulary word"):
        Inverter(bow, WORDS, bow(WORDS[:3]))


def test_edit_neighbourhood():
    got = edits(["a", "b"], ["x"], 1, 10)
    assert ["a", "b", "x"] in got and ["x", "a", "b"] in got and ["x", "b"] in got and ["a"] in got
    assert all(len(g) <= 2 for g in edits(["a", "b"], ["x"], 1, 2))  # max_words: nothing grows past it


def test_the_additive_shortlist_encodes_only_k_neighbours_and_still_finds_the_edits():
    calls = []

    def counting(texts):
        calls.append(len(texts))
        return bow(texts)

    inv = Inverter(counting, WORDS, bow(WORDS), InvertConfig(max_edits=10, exact=3))
    out, info = inv.row("rewrite this text as a formal letter", TARGET, bow(["rewrite this text as a formal letter"])[0])
    assert {"pirate", "shanty"} <= set(out.split()) and info["stop"] == "converged"
    assert calls and max(calls) <= 3  # each edit: 3 strings encoded, not the ~30 neighbours


def test_the_embed_predictor_hands_the_runs_deadline_to_its_edits(capsys):
    """The embed predictor's inversion stops at the runner's deadline, keeps every row, and says so; with no
    deadline it edits in full."""
    from types import SimpleNamespace

    from recover.predict.embed import EmbedPredictor

    d = len(WORDS)
    W = np.vstack([np.zeros((2 * d, d)), np.eye(d)]).astype(np.float32)  # predicts e(rewrite) - e(original)
    cands = ["rewrite this text as a formal letter"]
    p = EmbedPredictor(W, np.zeros(3 * d, np.float32), np.zeros(d, np.float32), cands, bow(cands),
                       SimpleNamespace(encode=bow), {})
    p.with_invert_vocab(WORDS, bow(WORDS), InvertConfig(max_edits=4, exact=0)).enable_invert()
    p.inverter.clock = lambda: 100.0
    row = (["a"], ["pirate shanty"])
    assert p.predict_batch(*row, deadline=50.0) == cands and "time budget ran out" in capsys.readouterr().err
    edited = p.predict_batch(*row)
    assert edited != cands and {"pirate", "shanty"} <= set(edited[0].split()) and not capsys.readouterr().err
