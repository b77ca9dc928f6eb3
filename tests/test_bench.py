"""Bench: the cost model's arithmetic on fixed inputs, and an end-to-end run on the real SmolLM2 GGUF."""
import json

import pytest

from recover import projection as P
from recover.bench.measure import run_backend
from recover.bench.report import BenchConfig, format_report, run_bench


def test_calibration_points_are_reproduced():
    # The two published T4 generation figures the model is fitted to come back out exactly.
    assert P.t4_rates(2.61e9, 1.71e9).gen_tok_s == pytest.approx(60.0, rel=1e-6)
    assert P.t4_rates(7.24e9, 4.37e9).gen_tok_s == pytest.approx(35.0, rel=1e-6)
    assert P.t4_rates(7.24e9, 4.37e9).prompt_tok_s == pytest.approx(1100.0, rel=1e-6)


def test_cost_model_on_a_point_it_was_not_fitted_on():
    # llcuda's verified Colab T4 figure: Gemma-3-1B-it Q4_K_M (~0.806 GB, 1.0B params), 134.3 tok/s
    # generation (https://llcuda.github.io/performance/benchmarks). Not one of the two fitted anchors.
    measured = 134.3
    projected = P.t4_rates(1.0e9, 0.806e9).gen_tok_s
    # conservative (a projection that is too fast would let a too-big model "fit"), and within 2x
    assert 0.5 * measured <= projected <= measured, projected


def test_row_and_total_arithmetic():
    # the model's stated constants, written out here (README "Benchmarks"): 0.05 s per row of overhead,
    # 90 s of wheel installs, 15 s + file size / 150 MB/s to load
    r = P.T4Rates(prompt_tok_s=1000.0, gen_tok_s=50.0)
    assert P.row_seconds(500, 25, r) == pytest.approx(0.5 + 0.5 + 0.05)
    p = P.project("x", 7.24e9, 4.37e9, 400, 20, rows=1400)
    per_row = 400 / 1100 + 20 / 35 + 0.05
    load = 15.0 + 4.37e9 / 150e6
    assert p["total_s"] == pytest.approx(90.0 + load + 1400 * per_row, abs=0.1)
    assert p["margin_h"] == pytest.approx((9 * 3600 - p["total_s"]) / 3600, abs=1e-3)
    assert p["label"] == "projected"


def test_over_the_limit_does_not_fit():
    p = P.project("huge", 7.24e9, 4.37e9, 40000, 2000, rows=1400)
    assert not p["fits"] and p["margin_h"] < 0
    # at these token counts even the smallest model in the table is over 9 h, so nothing fits
    assert P.largest_fitting(40000, 4000) is None
    best = P.largest_fitting(300, 20)  # a normal row
    assert best is not None and best["fits"] and best["fits_vram"]
    size = {n: b for n, _, b in P.MODEL_TABLE}
    for n, prm, b in P.MODEL_TABLE:  # every bigger file is over the time limit or the VRAM of two T4s
        if b > size[best["model"]]:
            q = P.project(n, prm, b, 300, 20)
            assert not (q["fits"] and q["fits_vram"]), n


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
    r = run_bench(BenchConfig(model=str(smollm2_gguf), rows=3, backends=["hf-raw", "hf", "llama"], out=str(tmp_path),
                              llm={"max_new_tokens": 24, "n_ctx": 512}))
    for b in ("llama", "hf", "hf-raw"):
        assert "error" not in r["backends"][b], r["backends"][b]
        assert r["backends"][b]["rows"] == 3 and r["backends"][b]["peak_rss_mb"] > 0
    lm, hf, raw = (r["backends"][b] for b in ("llama", "hf", "hf-raw"))
    # equal work: hf ran on the engine's token ids (same count on every row) and under its stop rules
    assert r["prompt_tokens_match"] and hf["prompt_token_counts"] == lm["prompt_token_counts"]
    assert all(0 < n <= 24 for n in [hf["gen_tokens_per_row"], lm["gen_tokens_per_row"]])
    assert hf["gen_tokens_per_row"] <= raw["gen_tokens_per_row"]
    assert r["ratios"]["llama"]["equal_work"] > 0 and r["ratios"]["llama"]["raw"] > 0
    sc = r["proxy_scs"]  # the built-in sample carries the true prompt: each backend's answers are scored
    assert sc["rows"] == 3 and set(sc["mean"]) == {"llama", "hf", "hf-raw"} and set(sc["diff_vs_llama"]) == {"hf", "hf-raw"}
    assert "PROXY" in sc["embedder"]
    assert r["t4_projection"]["label"].startswith("PROJECTED")
    assert (tmp_path / "bench.json").is_file() and (tmp_path / "bench.png").is_file()
    assert "equal work" in format_report(r)


def test_equal_work_needs_the_engine_ids_first(tmp_path, smollm2_gguf):
    with pytest.raises(ValueError, match="needs a llama backend first"):
        run_backend("hf", str(smollm2_gguf), "x.csv", 1, {})


def test_headline_is_the_cpu_default_against_the_fastest_peer():
    from recover.bench.report import headline

    report = {"cpu_quant": {"backend": "torch"}, "backends": {
        "torch": {"s_per_row": 0.5, "prompt_tok_s": 2000, "gen_tok_s": 70}, "llama": {"s_per_row": 1.3},
        "hf": {"s_per_row": 1.0}, "hf-bf16-batch": {"s_per_row": 0.4}, "hf-bf16": {"error": "x"}}}
    h = headline(report, ["hf", "hf-bf16", "hf-bf16-batch"])
    assert (h["default"], h["best_peer"], h["speedup"]) == ("torch", "hf-bf16-batch", 0.8)
    # the bench that chose it ran the choice as "<precision>:<rows in flight>"
    report["cpu_quant"] = {"backend": "torch-fp32", "n_seq": 32}
    report["backends"]["torch-fp32:32"] = {"s_per_row": 1.6}
    h = headline(report, ["hf", "hf-bf16", "hf-bf16-batch"])
    assert (h["default"], h["source"], h["speedup"]) == ("torch-fp32:32", "chosen by this run", 0.25)


def test_phase_fractions_hold_an_int8_backend_to_the_int8_gemm():
    from recover.bench.limits import phase_fractions

    limits = {"prompt_flop_s": 1e11, "prompt_int8_op_s": 4e11, "gen_bytes_s": 2e10}
    b = {"body_params": 1e8, "prompt_tokens_evaluated_per_row": 300, "rows": 10, "prompt_s_per_row": 0.6,
         "gen_s_per_row": 0.1, "gen_steps": 50, "weight_bytes": 4e8}
    f = phase_fractions({**b, "torch_dtype": "fp32"}, limits)
    assert f["prompt_flop_s"] == 1e11 and f["prompt_of_limit"] == 1.0  # 2 x 1e8 x 3,000 tokens / 6 s
    assert f["gen_of_limit"] == 1.0  # 4e8 bytes x 50 steps / 1 s against 2e10
    assert phase_fractions({**b, "torch_dtype": "int8"}, limits)["prompt_of_limit"] == 0.25
    # decoding's arithmetic bound: 2 x 1.25e8 parameters x 20 tokens x 10 rows in 1 s against 1e11
    f = phase_fractions({**b, "torch_dtype": "fp32", "n_params": 1.25e8, "gen_tokens_per_row": 20}, limits)
    assert f["gen_flop_s"] == 5e10 and f["gen_flop_of_limit"] == 0.5 and f["gen_of_limit"] == 1.0
    assert "gen_kv_of_limit" not in f  # a backend that does not count its cache reads (llama.cpp, transformers)


def test_the_decode_bound_counts_the_kv_cache_the_steps_had_to_read():
    """The torch engine counts the keys and values its decode steps needed: the bound is weights + those bytes."""
    from recover.bench.limits import phase_fractions

    b = {"rows": 10, "gen_s_per_row": 0.1, "gen_steps": 50, "weight_bytes": 2e8, "gen_kv_bytes": 1e10,
         "gen_kv_read_bytes": 1.5e10}
    f = phase_fractions(b, {"prompt_flop_s": 1e11, "gen_bytes_s": 4e10})
    assert f["gen_of_limit"] == 0.25  # 2e8 bytes x 50 steps in 1 s against 4e10
    assert f["gen_kv_bytes_s"] == 2e10 and f["gen_kv_of_limit"] == 0.5  # + 1e10 bytes of the rows' caches
    assert f["kv_read_over_needed"] == 1.5  # padding and finished slots read beside them


def test_backends_in_a_precision_this_cpu_only_emulates_are_not_run_and_say_why():
    """Skipped from the measured GEMM rates, not from CPU flags: the 2-core EPYC without AVX-512 (bf16 0.15x and
    int8 0.05x of its fp32 GEMM, `make bench-cpu`: a 24-row torch-int8 run took 10 min) runs neither; an AMX Xeon
    runs both."""
    from recover.bench.limits import slow_precisions
    from recover.bench.report import format_report

    names = ["llama", "torch", "torch-amp:8", "torch-fp32", "torch-int8:32", "hf-bf16-batch:24", "hf-batch"]
    epyc = {"gemm_flop_s": {"bfloat16": 1.04e10, "float32": 6.45e10}, "prompt_int8_op_s": 3.9e9}
    amx = {"gemm_flop_s": {"bfloat16": 2.52e12, "float32": 7.0e11}, "prompt_int8_op_s": 3.1e12}
    skip = slow_precisions(names, epyc)
    assert set(skip) == {"torch", "torch-amp:8", "torch-int8:32", "hf-bf16-batch:24"}
    assert "0.16x its fp32" in skip["torch"] and "0.06x" in skip["torch-int8:32"] and "int8" in skip["torch-int8:32"]
    assert slow_precisions(names, amx) == {}
    r = {"rows": 2, "data": "d.csv", "model": "m.gguf", "backends": {
        "llama": {"s_per_row": 1.0}, "torch": {"error": skip["torch"], "skipped": True}}}
    text = format_report(r)
    assert f"torch: {skip['torch']}" in text and "torch" not in text.splitlines()[3]  # a line, not a column


def test_hf_backends_refuse_what_they_cannot_apply(smollm2_gguf):
    """The hf backends load the base model alone: with --lora or --prefix, 'equal work' would not be equal."""
    with pytest.raises(ValueError, match="--lora: the hf backend cannot apply it"):
        BenchConfig(model=str(smollm2_gguf), backends=["llama", "hf"], llm={"lora_path": "x.gguf"})
    with pytest.raises(ValueError, match="--prefix: the hf-raw backend"):
        BenchConfig(model=str(smollm2_gguf), backends=["hf-raw"], llm={"prefixes": ["Rewrite"]})
    BenchConfig(model=str(smollm2_gguf), backends=["llama"], llm={"lora_path": "x.gguf"})  # llama applies both


def test_tune_projection_arithmetic():
    # 1e6 tokens x 2 x 85e6 FLOPs at half of the T4's 8.1 TFLOP/s fp32 = 41.98 s; + install 90 + load 30 + rest
    p = P.tune_projection(1_000_000, other_s=100.0)
    assert p["encode_s"] == pytest.approx(1e6 * 2 * 85e6 / (8.1e12 * 0.5), abs=0.1)
    assert p["total_s"] == pytest.approx(p["encode_s"] + 90 + 30 + 100, abs=0.2) and p["label"] == "projected"
    assert P.tune_projection(2_000_000, 100.0)["encode_s"] == pytest.approx(2 * p["encode_s"], abs=0.1)


def test_train_bench_chooses_the_fastest_setting_and_train_applies_it_on_cpu_only(tmp_path, monkeypatch):
    """`recover bench --train` -> this machine's training settings; `recover train` applies them to CPU recipes
    and never over a flag given on its command line."""
    from recover.bench import train as TB
    from recover.models import cpu_choice as CC
    from recover.train.run import machine_train_args

    r = lambda s, rows=8: {"seconds": s, "rows": rows}  # noqa: E731
    table = {"sft": {"trl-defaults": r(1.0), "recipe": r(40.0), "fast": r(12.0)},
             "dpo": {"trl-defaults": r(2.0), "recipe": r(60.0), "fast": r(30.0)}}
    assert TB.choose_training(table, TB.SETTINGS)["setting"] == "recipe"  # faster, not eligible: no held-out A/B held
    c = TB.choose_training(table, TB.SETTINGS, eligible=("recipe", "fast"))
    assert c["setting"] == "fast"  # trl's defaults are the yardstick, not a candidate
    assert c["args"] == ["--bf16", "true", "--gradient_checkpointing", "false", "--train_sampling_strategy", "group_by_length"]
    table["dpo"]["fast"] = {"error": "x"}
    assert TB.choose_training(table, TB.SETTINGS, ("recipe", "fast"))["setting"] == "recipe"  # failed a stage: out

    monkeypatch.setenv("RECOVER_CACHE", str(tmp_path))
    amx = CC.CpuFeatures("GenuineIntel", "6", "143", frozenset({"amx_bf16"}))
    monkeypatch.setattr(CC, "read_cpu_features", lambda: amx)  # read by train's machine_train_args
    monkeypatch.setattr(TB, "read_cpu_features", lambda: amx)  # and by the bench that writes the choice
    monkeypatch.setattr("recover.train.recipe.cpu_has_fast_bf16", lambda: True)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("{}\n")
    base = ["--train_file", str(rows)]
    assert machine_train_args("sft", "smollm2-cpu", base) == []  # nothing measured here
    TB.write_train_choice({"setting": "fast", "args": c["args"]}, log=lambda *_: None)
    assert machine_train_args("sft", "smollm2-cpu", base) == c["args"]
    assert machine_train_args("sft", "smollm2-cpu", base + ["--bf16", "false"]) == c["args"][2:]  # the user's flag wins
    assert machine_train_args("sft", "smollm2-cpu", base + ["--target_hardware", "t4", "--bf16", "false",
                                                            "--fp16", "false"]) == []


def test_tokens_per_epoch_counts_a_dpo_prompt_twice():
    from datasets import Dataset

    from recover.train.run import tokens_per_epoch

    assert tokens_per_epoch(Dataset.from_dict({"input_ids": [[1, 2, 3], [4]]})) == 4
    dpo = Dataset.from_dict({"prompt_ids": [[1, 2, 3]], "chosen_ids": [[4, 5]], "rejected_ids": [[6]]})
    assert tokens_per_epoch(dpo) == 2 * 3 + 2 + 1


def test_length_buckets_order_sft_and_dpo_rows_by_length_seeded_and_lose_none():
    """group_by_length: the chain's own order (trl's DPO drops a length column before transformers' sampler, which
    then failed on pairs): every row once, batches of like length in a seeded random order (not longest to shortest:
    one epoch would be a curriculum), the longest first, the same order for the same seed."""
    from types import SimpleNamespace

    from datasets import Dataset

    from recover.train.run import bucket_by_length

    lens = [(7 * i) % 50 + 1 for i in range(40)]
    sft = Dataset.from_dict({"input_ids": [[1] * n for n in lens]})
    dpo = Dataset.from_dict({"prompt_ids": [[1] * n for n in lens], "chosen_ids": [[2]] * 40, "rejected_ids": [[3, 3]] * 40})
    for ds, extra in ((sft, 0), (dpo, 2)):
        orders = []
        for seed in (3, 3, 4):
            t = SimpleNamespace(train_dataset=ds, args=SimpleNamespace(train_sampling_strategy="group_by_length",
                                                                       train_batch_size=4, gradient_accumulation_steps=1,
                                                                       seed=seed))
            bucket_by_length(t)
            assert t.args.train_sampling_strategy == "sequential"
            col = t.train_dataset["input_ids" if extra == 0 else "prompt_ids"]
            orders.append([len(x) + extra for x in col])
        o = orders[0]
        assert o == orders[1] and o != orders[2] and sorted(o) == sorted(n + extra for n in lens)
        batches = [o[i:i + 4] for i in range(0, 40, 4)]
        ranked = sorted(o, reverse=True)  # like lengths share a batch: each batch is a slice of the ranked rows
        assert sorted(sorted(b) for b in batches) == sorted(sorted(ranked[i:i + 4]) for i in range(0, 40, 4))
        assert max(batches[0]) == max(o)  # the longest batch first
        assert [max(b) for b in batches] != sorted((max(b) for b in batches), reverse=True)  # not a curriculum
    t = SimpleNamespace(train_dataset=sft, args=SimpleNamespace(train_sampling_strategy="random"))
    bucket_by_length(t)
    assert t.train_dataset is sft  # other strategies untouched


def test_train_rates_compare_trls_tokens_and_the_limit_counts_the_tokens_run():
    """A DPO run whose pairs' prompts ran once did the same rows' work in fewer tokens: its tokens/s counts trl's
    tokens (comparable with trl's forward), its fraction of the GEMM limit the tokens it ran."""
    from recover.bench.train import SETTINGS, rates

    limits = {"gemm_flop_s": {"float32": 1e11, "bfloat16": 4e11}}
    shared = rates({"seconds": 10.0, "tokens": 2000, "tokens_computed": 1100}, "dpo", 1e8, limits, False)
    stock = rates({"seconds": 20.0, "tokens": 2000}, "dpo", 1e8, limits, False)
    assert shared["tokens_s"] == 200.0 and stock["tokens_s"] == 100.0
    assert shared["of_limit"] == pytest.approx(6 * 1e8 * 110 / 1e11, abs=1e-3) and stock["of_limit"] == pytest.approx(0.6)
    assert "--share_pair_prompts" in SETTINGS["trl-forward"] and "--share_pair_prompts" not in SETTINGS["recipe"]
