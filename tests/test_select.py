"""The selection rule chooses on the Gemma folds only; the other folds are robustness columns."""
import numpy as np
import pandas as pd
import pytest

from recover.eval.leaderboard import leaderboard
from recover.eval.select import pick_winner, rule_figures, selection_sources

SOURCES = ["gemma_rewrites_a", "gemma_rewrites_b", "gemma_rewrites_d", "gpt35_rewrites_c", "llama_rewrites_e"]
F = "gemma_rewrites_f"


def per_row(means: dict[str, dict[str, float]], n: int = 40, seed: int = 0) -> pd.DataFrame:
    """Rows whose SCS per (method, source) has the given mean (small noise, same ids for every method)."""
    rng = np.random.default_rng(seed)
    noise = {s: rng.normal(0, 0.01, n) for s in SOURCES + [F]}
    out = []
    for m, by in means.items():
        for s, v in by.items():
            out.append(pd.DataFrame({"method": m, "source": s, "id": [f"{s}-{i}" for i in range(n)],
                                     "scs": v + noise[s] - noise[s].mean()}))
    return pd.concat(out, ignore_index=True)


def test_default_selection_folds_are_the_gemma_sources():
    assert selection_sources(SOURCES) == ["gemma_rewrites_a", "gemma_rewrites_b", "gemma_rewrites_d"]
    assert selection_sources(["mine", "yours"]) == ["mine", "yours"]  # no Gemma source: every fold chooses
    assert selection_sources(SOURCES, ["gpt35_rewrites_c"]) == ["gpt35_rewrites_c"]
    with pytest.raises(ValueError, match="not a source"):
        selection_sources(SOURCES, ["nope"])


def test_the_rule_never_reads_a_non_gemma_fold():
    """X wins every Gemma fold and loses the two others badly: X is chosen, whatever the others say."""
    gemma = {"gemma_rewrites_a": 0.10, "gemma_rewrites_b": 0.09, "gemma_rewrites_d": 0.08}
    for other in (0.01, 0.50):  # the non-Gemma figures swing from terrible to excellent for "x"
        means = {"mean": {**gemma, "gpt35_rewrites_c": 0.20, "llama_rewrites_e": 0.20},
                 "x": {**{k: v + 0.02 for k, v in gemma.items()}, "gpt35_rewrites_c": other, "llama_rewrites_e": other},
                 "y": {**{k: v + 0.01 for k, v in gemma.items()}, "gpt35_rewrites_c": 0.9, "llama_rewrites_e": 0.9}}
        pr = per_row(means)
        sel = selection_sources(pr.source)
        lb = leaderboard(pr, "mean", {}, select=sel)
        assert pick_winner(lb, sel) == "x"
        assert lb.method.iloc[0] == "x"  # the printed order is the rule's
        r = lb.set_index("method")
        assert r.loc["x", "rule"] == pytest.approx(np.mean(list(gemma.values())) + 0.02, abs=1e-9)
        assert r.loc["x", "worst"] == pytest.approx(0.10, abs=1e-9)


def test_a_loss_on_one_gemma_fold_disqualifies_but_a_non_gemma_loss_does_not():
    base = {s: 0.10 for s in SOURCES}
    pr = per_row({"mean": base,
                  "big_but_loses_b": {**base, "gemma_rewrites_a": 0.3, "gemma_rewrites_b": 0.099},
                  "small_everywhere": {**base, "gemma_rewrites_a": 0.11, "gemma_rewrites_b": 0.101,
                                       "gemma_rewrites_d": 0.101, "gpt35_rewrites_c": 0.0}})
    sel = selection_sources(pr.source)
    assert pick_winner(leaderboard(pr, "mean", {}, select=sel), sel) == "small_everywhere"


def test_rule_interval_brackets_the_macro():
    pr = per_row({"m": {s: 0.1 + 0.01 * i for i, s in enumerate(SOURCES)}})
    r = rule_figures(pr, SOURCES[:3]).iloc[0]
    assert r.rule_low < r.rule < r.rule_high
    assert r.rule == pytest.approx(0.11, abs=1e-9) and r.macro == pytest.approx(0.12, abs=1e-9)


def test_a_runtime_variant_is_never_the_winner():
    """embed:bf16 decides the feature precision of embed; even when it scores higher it is not a method."""
    base = {s: 0.10 for s in SOURCES}
    pr = per_row({"mean": base, "embed": {s: 0.12 for s in SOURCES}, "embed:bf16": {s: 0.13 for s in SOURCES}})
    sel = selection_sources(pr.source)
    assert pick_winner(leaderboard(pr, "mean", {}, select=sel), sel) == "embed"


def test_a_method_missing_a_selection_fold_is_never_picked_and_is_ranked_on_the_shared_folds():
    """An LLM whose adapter trained on gemma_rewrites_a has no row there: its macro over b and d alone must
    not be compared with the others' over a, b, d; the shared-fold ranking compares like with like."""
    from recover.eval.select import shared_ranking

    base = {s: 0.10 for s in SOURCES}
    llm = {s: 0.30 for s in SOURCES if s not in ("gemma_rewrites_a", "gpt35_rewrites_c")}
    pr = per_row({"mean": base, "embed": {s: 0.12 for s in SOURCES}, "llm": llm})
    sel = selection_sources(pr.source)
    lb = leaderboard(pr, "mean", {}, select=sel)
    assert pick_winner(lb, sel) == "embed"
    assert pick_winner(lb, sel, among=["mean"]) == "mean"
    # without a baseline to guard against, the missing fold alone must keep the LLM out
    assert pick_winner(leaderboard(pr, "no-such-baseline", {}, select=sel), sel) == "embed"
    r = shared_ranking(pr, sel)
    assert list(r.method) == ["llm", "embed", "mean"] and set(r.folds) == {"gemma_rewrites_b,gemma_rewrites_d"}
    assert shared_ranking(pr[pr.method != "llm"], sel) is None


def test_the_test_like_fold_chooses_first_and_the_other_gemma_folds_guard():
    """With gemma_rewrites_f present it is the first choosing fold, and the best SCS on f wins even where
    another method has the better macro over a, b, d (the miss the old rule made three times)."""
    sel = selection_sources(SOURCES + [F])
    assert sel == [F, "gemma_rewrites_a", "gemma_rewrites_b", "gemma_rewrites_d"]
    base = {s: 0.10 for s in SOURCES + [F]}
    pr = per_row({"mean": base,
                  "macro_winner": {**base, "gemma_rewrites_a": 0.30, "gemma_rewrites_d": 0.30, F: 0.11},
                  "f_winner": {**base, "gemma_rewrites_a": 0.11, "gemma_rewrites_d": 0.11, F: 0.14}})
    lb = leaderboard(pr, "mean", {}, select=sel)
    assert pick_winner(lb, sel) == "f_winner" and lb.method.iloc[0] == "f_winner"
    assert lb.set_index("method").loc["f_winner", "rule"] == pytest.approx(0.14, abs=1e-9)
    # without f the same rows go back to the gemma-macro rule
    no_f = pr[pr.source != F]
    sel2 = selection_sources(no_f.source)
    assert pick_winner(leaderboard(no_f, "mean", {}, select=sel2), sel2) == "macro_winner"


def test_a_loss_to_the_mean_prompt_on_a_guard_fold_disqualifies_the_f_winner():
    base = {s: 0.10 for s in SOURCES + [F]}
    pr = per_row({"mean": base, "big_on_f_loses_b": {**base, F: 0.30, "gemma_rewrites_b": 0.098},
                  "small": {**base, F: 0.12, "gemma_rewrites_b": 0.101, "gpt35_rewrites_c": 0.0}})
    sel = selection_sources(pr.source)
    assert pick_winner(leaderboard(pr, "mean", {}, select=sel), sel) == "small"


def test_a_method_missing_a_guard_fold_is_guarded_on_the_rest_and_the_table_says_so():
    """An LLM whose twin trained on a: guarded on b and d, chosen on f, and the printed table names the gap;
    a method never scored on f is never chosen."""
    from recover.eval.leaderboard import format_leaderboard

    base = {s: 0.10 for s in SOURCES + [F]}
    llm = {s: v + 0.05 for s, v in base.items() if s != "gemma_rewrites_a"}
    no_f = {s: 0.5 for s in SOURCES}
    pr = per_row({"mean": base, "llm": llm, "no_f": no_f})
    sel = selection_sources(pr.source)
    lb = leaderboard(pr, "mean", {}, select=sel)
    assert pick_winner(lb, sel) == "llm"
    text = format_leaderboard(lb, "t", sel)
    assert "llm: not scored on gemma_rewrites_a" in text and "no_f: not scored on gemma_rewrites_f" in text
    assert pick_winner(lb[lb.method != "llm"], sel) == "mean"  # no_f has the best macro but no f figure
