"""kernels/tune's hedge decision (recover/kaggle/hedge.py) with the tiny sentence-t5 stand-in: the leaderboard probes
decide which rows the hidden targets look like, and that decides answer alone vs a hedge."""
import json

import pandas as pd
import pytest

from recover.kaggle import hedge

# Two kinds of rows: the model answers A exactly (any appended string can only pull it away), and answers B with
# something unrelated (a hedge equal to B's prompt rescues it).
A = "convert the story into a letter"
B = "summarize in one sentence"
WRONG = "the quick brown fox jumps"


def rows(tmp_path):
    ids = [f"r{i}" for i in range(16)]
    truth = [A if i % 2 else B for i in range(16)]
    answers = [A if t == A else WRONG for t in truth]
    pd.DataFrame({"id": ids, "original_text": "x", "rewritten_text": "y", "rewrite_prompt": truth}).to_csv(
        tmp_path / "gemma_rewrites_f.csv", index=False)
    pd.DataFrame({"id": ids, "rewrite_prompt": answers}).to_csv(tmp_path / "answers.csv", index=False)
    (tmp_path / "mean_prompt.json").write_text(json.dumps({"prompt": B}))


@pytest.mark.parametrize("scores, served", [((0.95, 0.05), "llm"), ((0.05, 0.95), "hedge")])
def test_the_probes_decide_between_the_answer_alone_and_the_hedge(tmp_path, tiny_sentence_t5, scores, served):
    rows(tmp_path)
    # lb_probes.csv's columns: the constant string A scored scores[0] on the leaderboard, B scored scores[1]
    pd.DataFrame({"prompt": [A, B], "public_lb": scores, "source": "test"}).to_csv(tmp_path / "probes.csv", index=False)
    res = hedge.run_hedge(str(tmp_path / "answers.csv"), str(tmp_path / "gemma_rewrites_f.csv"),
                          str(tmp_path / "mean_prompt.json"), str(tmp_path / "out"), str(tmp_path / "probes.csv"),
                          str(tiny_sentence_t5), log=lambda *a: None)
    assert res["probe_report"]["probes"] == 2 and "sentence-t5" in res["why"]
    if served == "llm":
        assert res["choice"] == "llm", res["why"]
    else:
        assert res["choice"] in ("llm+mean", "llm+suffix"), res["why"]
        assert res["scores"][res["choice"]] > res["scores"]["llm"]
    # what the submission notebook then runs, and the line it logs
    flags, why = hedge.serve_flags([str(tmp_path / "out" / hedge.HEDGE_FILE)], str(tmp_path / "mean_prompt.json"))
    assert flags[:2] == ["--combine", "llm" if served == "llm" else "llm+mean"] and why.startswith("hedge: ")
    assert ("answer alone" in why) == (served == "llm")


def test_no_hedge_file_leaves_the_combine_to_the_adapter(tmp_path):
    flags, why = hedge.serve_flags([], None)
    assert flags == [] and "no kernels/tune hedge_choice.json" in why
    (tmp_path / "p.csv").write_text("prompt,rank\nx,1\n")
    with pytest.raises(ValueError, match="score .or public_lb"):
        hedge.read_probes(str(tmp_path / "p.csv"))
