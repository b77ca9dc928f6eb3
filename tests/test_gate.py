"""The per-row gate follows its confidence signal, and is never fitted worse than either option alone."""
import numpy as np

from recover.eval.gate import agreement, apply_gate, fit_gate


def rows(n=400, seed=0):
    """Where the signal is high the LLM answer is the better one, where it is low the hedge is."""
    rng = np.random.default_rng(seed)
    signal = rng.uniform(0, 1, n)
    keep = np.where(signal > 0.6, 0.30, 0.05) + rng.normal(0, 0.01, n)
    hedge = np.full(n, 0.12) + rng.normal(0, 0.01, n)
    return signal, keep, hedge


def test_the_gate_uses_its_signal():
    signal, keep, hedge = rows()
    g = fit_gate(signal, keep, hedge)
    assert 0.5 < g["tau"] < 0.7 and g["score"] > max(keep.mean(), hedge.mean()) + 0.03
    # the same rows with the signal shuffled: nothing to follow, the gate falls back to one option
    shuffled = fit_gate(np.random.default_rng(1).permutation(signal), keep, hedge)
    assert shuffled["score"] < g["score"] - 0.03
    # applied to new rows of the same kind, the fitted tau keeps the right ones
    s2, k2, h2 = rows(seed=2)
    kept = s2 >= g["tau"]
    assert np.where(kept, k2, h2).mean() > max(k2.mean(), h2.mean()) + 0.03


def test_never_fitted_worse_than_either_option():
    rng = np.random.default_rng(3)
    for _ in range(5):
        s, k, h = rng.uniform(size=50), rng.uniform(size=50), rng.uniform(size=50)
        g = fit_gate(s, k, h)
        assert g["score"] >= max(k.mean(), h.mean()) - 1e-12


def test_apply_and_agreement():
    assert apply_gate(np.array([0.9, 0.1]), 0.5, ["llm a", "llm b"], ["emb a", "emb b"]) == ["llm a", "emb b"]
    e = np.eye(3)
    assert list(agreement(e, e)) == [1.0, 1.0, 1.0]
