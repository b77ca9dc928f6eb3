"""Leaderboard-probe matching moves the target weights toward what the probe scores say."""
import numpy as np
import pandas as pd
import pytest

from recover.meanprompt.probes import load_probes, match_group_weights, pick_probes, probe_weights, project_simplex


def two_clusters(n=60, d=16, seed=0):
    rng = np.random.default_rng(seed)
    a, b = np.zeros(d), np.zeros(d)
    a[0], b[1] = 1, 1
    X = np.concatenate([a + 0.15 * rng.normal(size=(n, d)), b + 0.15 * rng.normal(size=(n, d))])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    P = np.stack([a, b])  # probe 0 sits on cluster A, probe 1 on cluster B
    return X, P


def scores_under(X, P, w):
    return ((P @ X.T) ** 3) @ (w / w.sum())


@pytest.mark.parametrize("truth_share_a", [0.85, 0.15])
def test_matched_weights_follow_the_probe_scores(truth_share_a):
    X, P = two_clusters()
    n = len(X) // 2
    truth = np.r_[np.full(n, truth_share_a / n), np.full(n, (1 - truth_share_a) / n)]
    y = scores_under(X, P, truth)  # what a leaderboard with that mix would show
    w, rep = probe_weights(X, np.ones(len(X)), P, y, groups=2, ridge=1e-6)
    assert w[:n].sum() == pytest.approx(truth_share_a, abs=0.03)
    assert rep["rmse_after"] < rep["rmse_before"]
    assert np.allclose(scores_under(X, P, w), y, atol=2e-3)


def test_equal_scores_keep_the_unmatched_mix():
    X, P = two_clusters()
    w, _ = probe_weights(X, np.ones(len(X)), P, scores_under(X, P, np.ones(len(X))), groups=2)
    assert w[: len(X) // 2].sum() == pytest.approx(0.5, abs=0.02)


def test_simplex_projection_and_solver():
    w = project_simplex(np.array([0.5, 2.0, -1.0]))
    assert w.sum() == pytest.approx(1) and (w >= 0).all() and w[1] == pytest.approx(1)
    S = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert match_group_weights(S, np.array([0.7, 0.3]), np.array([0.5, 0.5]), ridge=0).round(3).tolist() == [0.7, 0.3]


def test_pick_probes_cover_the_clusters():
    X, _ = two_clusters()
    names = [f"t{i}" for i in range(len(X))]
    picked = pick_probes(X, names, 2)
    halves = {int(p[1:]) < len(X) // 2 for p in picked}
    assert halves == {True, False}


def test_probe_file_errors_name_the_line(tmp_path):
    from recover.csvio import InputError

    f = tmp_path / "probes.csv"
    pd.DataFrame({"prompt": ["a", "b"], "score": [0.6, "x"]}).to_csv(f, index=False)
    with pytest.raises(InputError, match="line 3: score 'x'"):
        load_probes(str(f))
    pd.DataFrame({"prompt": ["a", "b"], "score": [0.6, 0.62]}).to_csv(f, index=False)
    assert load_probes(str(f)) == [("a", 0.6), ("b", 0.62)]


def test_probe_sim_reads_only_public_probe_scores_and_scores_the_private_half(tmp_path):
    """End to end on three tiny sources: the simulation runs, splits by prompt, and writes its table."""
    import json

    from test_eval import write_sources

    from recover.eval.methods import FitSettings
    from recover.eval.probe_sim import ProbeSimConfig, public_mask, run_probe_sim
    from recover.meanprompt.optimize import OptimizeConfig

    prompts = ["Make it a poem.", "make it a POEM", "Make it a letter", "Shorten it"] * 5
    m = public_mask(prompts, 0.5, 1234)
    from recover.data.protocols import normalise_prompt

    by = {}
    for p, pub in zip(prompts, m):
        by.setdefault(normalise_prompt(p), set()).add(bool(pub))
    assert all(len(v) == 1 for v in by.values())  # a prompt is public or private, never both

    settings = FitSettings(bank_size=20, search=OptimizeConfig(beam=1, steps=2, prerank=8, insert_words=2, max_tokens=24))
    out = run_probe_sim(ProbeSimConfig(data=write_sources(tmp_path, n=16), ks=[3], holdout=["src_a"], settings=settings,
                                       cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "sim.json")),
                        log=lambda *a: None)
    (r,) = out["results"]
    assert r["holdout"] == "src_a" and r["k"] >= 2 and 0 < r["private_rows"] < 17
    assert r["matched"] == pytest.approx(r["unmatched"] + r["gain"], abs=2e-4)
    assert json.loads((tmp_path / "sim.json").read_text())["results"][0]["k"] == r["k"]
