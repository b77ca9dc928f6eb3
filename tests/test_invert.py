"""Per-row inversion moves a string toward its target embedding, and never spends more than its per-row
budget (edits and seconds). A bag-of-words embedding stands in for the metric's embedder: the edits,
the ranking and the budget are what is tested, not the encoder."""
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


def test_the_per_row_time_budget_holds():
    """A clock that moves 1 s per encoder call: a 2.5 s budget allows the start's encoding and two edits."""
    now = [0.0]

    def slow(texts):
        now[0] += 1.0
        return bow(texts)

    # exact=0: every neighbour encoded (the shortlist would also encode words it has not met: more calls)
    inv = Inverter(slow, WORDS, bow(WORDS), InvertConfig(max_edits=50, max_seconds=2.5, exact=0), clock=lambda: now[0])
    out, info = inv.row("rewrite this text as a formal letter", TARGET)
    assert info["stop"] == "seconds" and info["edits"] == 2
    # rows() edits all rows in lockstep (one encoder call a round): 2 rows get 2 x 2.5 s, checked each round
    now[0] = 0.0
    outs, infos = inv.rows(["a poem", "an email"], np.stack([TARGET, TARGET]))
    assert [d["stop"] for d in infos] == ["seconds", "seconds"] and [d["edits"] for d in infos] == [4, 4]
    assert now[0] == 5.0  # the start's encoding + 4 rounds, then the budget stops it


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
