import numpy as np
import pytest

from recover.score.metric import cosine_rows, scs, scs_against_many, scs_rows


def test_scs_matches_hand_computed_value():
    pred = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    true = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, -1.0]])
    # cosines: 1, 1/sqrt(2), -1  -> cubes: 1, 0.353553..., -1
    assert scs_rows(pred, true) == pytest.approx([1.0, 0.5 ** 1.5, -1.0], abs=1e-6)
    assert scs(pred, true) == pytest.approx((1.0 + 0.35355339 - 1.0) / 3, abs=1e-6)


def test_cosine_is_scale_invariant():
    a, b = np.array([[3.0, 4.0]]), np.array([[6.0, 8.0]])
    assert cosine_rows(a, b)[0] == pytest.approx(1.0)


def test_scs_against_many_is_mean_over_targets():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(5, 4)); t /= np.linalg.norm(t, axis=1, keepdims=True)
    c = rng.normal(size=(3, 4)); c /= np.linalg.norm(c, axis=1, keepdims=True)
    got = scs_against_many(c, t)
    want = [scs(np.repeat(c[i:i + 1], 5, 0), t) for i in range(3)]
    assert got == pytest.approx(want, abs=1e-6)


def test_the_cube_is_computed_in_one_place():
    """Every SCS figure (score, eval, probes, pairs, labels, the mean-prompt search) goes through
    score/metric.sharpen: no other module may raise a cosine to the metric's exponent itself."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "recover"
    users = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py") if "SCS_EXPONENT" in p.read_text())
    assert users == ["constants.py", "score/metric.py"]
