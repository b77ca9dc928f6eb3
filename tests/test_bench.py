"""Bench: the cost model's arithmetic on fixed inputs, and an end-to-end run on the real SmolLM2 GGUF."""
import json

import pytest

from recover.bench import projection as P
from recover.bench.report import BenchConfig, run_bench


def test_calibration_points_are_reproduced():
    # The two published T4 generation figures the model is fitted to come back out exactly.
    assert P.t4_rates(2.61e9, 1.71e9).gen_tok_s == pytest.approx(60.0, rel=1e-6)
    assert P.t4_rates(7.24e9, 4.37e9).gen_tok_s == pytest.approx(35.0, rel=1e-6)
    assert P.t4_rates(7.24e9, 4.37e9).prompt_tok_s == pytest.approx(1100.0, rel=1e-6)


def test_row_and_total_arithmetic():
    r = P.T4Rates(prompt_tok_s=1000.0, gen_tok_s=50.0)
    assert P.row_seconds(500, 25, r) == pytest.approx(0.5 + 0.5 + P.ROW_OVERHEAD_S)
    p = P.project("x", 7.24e9, 4.37e9, 400, 20, rows=1400)
    per_row = 400 / 1100 + 20 / 35 + P.ROW_OVERHEAD_S
    load = P.LOAD_FIXED_S + 4.37e9 / P.DISK_BYTES_S
    assert p["total_s"] == pytest.approx(P.WHEEL_INSTALL_S + load + 1400 * per_row, abs=0.1)
    assert p["margin_h"] == pytest.approx((9 * 3600 - p["total_s"]) / 3600, abs=1e-3)
    assert p["label"] == "projected"


def test_over_the_limit_does_not_fit():
    p = P.project("huge", 7.24e9, 4.37e9, 40000, 2000, rows=1400)
    assert not p["fits"] and p["margin_h"] < 0
    assert P.largest_fitting(40000, 2000) is None or P.largest_fitting(40000, 2000)["total_s"] < 9 * 3600


def test_calibration_replaces_the_defaults(tmp_path):
    f = tmp_path / "bench.json"
    f.write_text(json.dumps({"backends": {"llama": {"prompt_tok_s": 2000.0, "gen_tok_s": 80.0,
                                                    "n_params": 1e9, "file_bytes": 1e9}}}))
    cal = P.load_calibration(f)
    same = P.t4_rates(1e9, 1e9, cal)
    assert same.source == "calibrated" and same.gen_tok_s == pytest.approx(80.0) and same.prompt_tok_s == 2000.0
    assert P.t4_rates(2e9, 1e9, cal).prompt_tok_s == pytest.approx(1000.0)  # compute scales with params


@pytest.mark.e2e
def test_bench_runs_end_to_end_on_smollm2(tmp_path, smollm2_gguf):
    r = run_bench(BenchConfig(model=str(smollm2_gguf), rows=2, backends=["llama", "hf"], out=str(tmp_path),
                              llm={"max_new_tokens": 8, "n_ctx": 512}))
    for b in ("llama", "hf"):
        assert "error" not in r["backends"][b], r["backends"][b]
        assert r["backends"][b]["rows"] == 2 and r["backends"][b]["peak_rss_mb"] > 0
    assert "llama" in r["ratio_rows_per_s_over_hf"]
    assert r["t4_projection"]["label"].startswith("PROJECTED")
    assert (tmp_path / "bench.json").is_file() and (tmp_path / "bench.png").is_file()
