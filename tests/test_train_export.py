"""QLoRA/LoRA DPO with trl + peft on the REAL SmolLM2-135M, then export to a verified Q8_0 GGUF
that `recover predict --model` serves. Few steps, CPU."""
import json

import pandas as pd
import pytest

from recover import constants as C
from recover.train.recipe import ModelArgs, check_combination, parse_recipe


def write_pairs(path, n=4):
    from recover.models.prompting import build_messages, load_template

    tpl = load_template(None)
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"prompt": build_messages(tpl, f"The shop opens at {i} am.", f"Arr, the shop be open at {i}!"),
                                "chosen": [{"role": "assistant", "content": "Rewrite this as a pirate."}],
                                "rejected": [{"role": "assistant", "content": "Make it formal."}]}) + "\n")
    return path


def test_recipe_rejects_unknown_keys_and_bad_combinations(tmp_path):
    data = write_pairs(tmp_path / "p.jsonl")
    with pytest.raises(ValueError, match="not used"):
        parse_recipe("dpo", "smollm2-cpu", ["--train_file", str(data), "--bogus", "1"])
    with pytest.raises(ValueError, match="load_in_4bit without LoRA"):
        ModelArgs(load_in_4bit=True, use_peft=False)
    with pytest.raises(ValueError, match="no bf16"):
        ModelArgs(target_hardware="t4", torch_dtype="bfloat16")

    class T:
        bf16, fp16, gradient_checkpointing = False, False, True

    with pytest.raises(ValueError, match="17x slower"):
        check_combination(ModelArgs(), type("D", (), {"train_file": str(data)})(), T())
    T.gradient_checkpointing, T.bf16 = False, True
    with pytest.raises(ValueError, match="T4 has no bf16"):
        check_combination(ModelArgs(target_hardware="t4", torch_dtype="float16"), type("D", (), {"train_file": str(data)})(), T())


def test_every_built_in_chain_names_training_recipes_that_parse(tmp_path):
    """A chain recipe's sft_recipe / dpo_recipe go through the real parser (TrlParser + SFTConfig / DPOConfig) for
    the stage that uses them, so a misspelt key or a missing recipe fails here, not hours into a chain."""
    import yaml

    from recover.train.recipe import RECIPES

    data = write_pairs(tmp_path / "p.jsonl")
    chains = sorted(RECIPES.glob("chain-*.yaml"))
    assert any("qwen" in c.stem for c in chains)  # the larger-base member (issue 40)
    for chain in chains:
        cfg = yaml.safe_load(chain.read_text())
        for stage in ("sft", "dpo"):
            m, _, t = parse_recipe(stage, cfg[f"{stage}_recipe"], ["--train_file", str(data)])
            assert m.use_peft, (chain.stem, stage)
            assert m.target_hardware != "cpu" or not t.gradient_checkpointing, (chain.stem, stage)


def test_a_cpu_recipes_bf16_trains_in_float32_where_the_cpu_has_no_bf16(tmp_path, monkeypatch):
    """gemma3-270m-cpu asks for bf16 autocast: kept where the CPU has bf16 hardware; elsewhere the recipe trains in
    float32 instead of being refused, while an explicit --bf16 true there is still refused."""
    from recover.train import recipe as R

    data = write_pairs(tmp_path / "p.jsonl")
    flags = ["--train_file", str(data)]
    monkeypatch.setattr(R, "cpu_has_fast_bf16", lambda: True)
    assert parse_recipe("sft", "gemma3-270m-cpu", flags)[2].bf16
    monkeypatch.setattr(R, "cpu_has_fast_bf16", lambda: False)
    assert not parse_recipe("sft", "gemma3-270m-cpu", flags)[2].bf16
    assert R.recipe_bf16_off_here("smollm2-cpu", flags) == []  # float32 already: nothing to say
    with pytest.raises(ValueError, match="no bf16 hardware"):
        parse_recipe("sft", "gemma3-270m-cpu", [*flags, "--bf16", "true"])


@pytest.mark.e2e
def test_dpo_lora_and_qlora_then_export_q8_and_predict(tmp_path, test_csv):
    from recover.export.run import export
    from recover.predict.config import PredictConfig
    from recover.predict.runner import run_predict
    from recover.train.run import train

    data = write_pairs(tmp_path / "pairs.jsonl")
    common = ["--train_file", str(data), "--max_steps", "2", "--max_length", "256", "--per_device_train_batch_size", "2",
              "--gradient_accumulation_steps", "1"]
    qlora = train("dpo", "smollm2-cpu", common + ["--output_dir", str(tmp_path / "qlora"), "--load_in_4bit", "true",
                                                 "--max_steps", "1"])
    assert (qlora / "adapter_model.safetensors").is_file()
    # QLoRA really trained on a 4-bit base: every linear layer of the 30 decoder blocks is bnb nf4
    metrics = json.loads((qlora / "metrics.json").read_text())
    assert metrics["base_4bit_linear_layers"] >= 30 * 7
    assert metrics["settings"]["freed_memory_kept"] is True  # a training step's big blocks are reused (cpus.py)
    adapter = train("dpo", "smollm2-cpu", common + ["--output_dir", str(tmp_path / "lora")])
    metrics = json.loads((adapter / "metrics.json").read_text())
    assert metrics["base_4bit_linear_layers"] == 0
    # a CPU recipe: the LM head scores answers only, and each pair's prompt ran once (train/cpu_logps.py)
    assert metrics["settings"]["labelled_positions_only"] and metrics["settings"]["share_pair_prompts"]
    assert metrics["tokens_computed"] < 0.7 * metrics["tokens"]
    calls = metrics["settings"]["fused_calls"]  # trl's real batches took the shared path: none fell back to trl's
    assert calls["shared"] >= 2 * 2 and calls["trl"] == 0  # 2 steps, policy and reference each
    run = json.loads((adapter / "config.json").read_text())
    assert run["seed"] == 1234 and run["versions"]["trl"] and run["versions"]["peft"]
    assert (adapter / "loss.png").is_file() and json.loads((adapter / "metrics.json").read_text())["log_history"]

    out = tmp_path / "model"
    manifest = export("pypi:smollm2", str(adapter), ["Q8_0"], str(out), name="smollm2-dpo", lora_gguf=True)
    v = manifest["verification"]
    assert v["F16"]["passed"] and v["Q8_0"]["passed"] and v["Q8_0"]["chat_template"]
    assert v["F16"]["max_abs_logit_diff"] <= v["Q8_0"]["threshold"]
    assert manifest["adapter_sha256"] and manifest["format_version"] == C.MANIFEST_FORMAT_VERSION
    gguf = out / manifest["files"]["Q8_0"]["file"]
    stats = run_predict(PredictConfig(str(test_csv), str(tmp_path / "sub.csv"), predictor="llm", model=str(gguf),
                                      llm={"max_new_tokens": 12, "n_ctx": 512}))
    sub = pd.read_csv(tmp_path / "sub.csv", dtype=str, keep_default_na=False)
    assert len(sub) == 30 and all(sub[C.COL_PROMPT].str.strip() != "") and stats["status"].get("ok") == 30

    # DPO continued FROM that adapter (as the chain does from SFT): it moves, and no reference copy is saved
    from safetensors.numpy import load_file

    cont = train("dpo", "smollm2-cpu", common + ["--output_dir", str(tmp_path / "cont"), "--max_steps", "1",
                                                 "--learning_rate", "1e-3", "--adapter_name_or_path", str(adapter)])
    before, after = load_file(adapter / "adapter_model.safetensors"), load_file(cont / "adapter_model.safetensors")
    assert before.keys() == after.keys() and any(abs(before[k] - after[k]).max() > 0 for k in before)
    assert not (cont / "ref").exists()

    # the unmerged path: a verified LoRA GGUF applied by llama.cpp on top of the packaged base GGUF
    from recover.export.lora import export_lora
    from recover.export.verify import PROMPTS
    from recover.models.llm import LlamaConfig, LlamaPredictor
    from recover.pypi_models import smollm2_gguf

    m = export_lora(C.PYPI_SMOLLM2, str(cont), str(tmp_path / "lora.gguf"), serve={"template": "short", "n_ctx": 512})
    v = m["verification"]
    assert m["serve"] == {"template": "short", "n_ctx": 512}  # `--lora <this file>` serves it as it was trained
    n = len(PROMPTS)
    assert v["passed"] and v["max_abs_logit_diff"] <= v["threshold"]
    # top-1 agrees on every prompt but near-ties: which side of a tie a prompt falls on moves with the training's
    # rounding (the CPU forward's sums in another order flipped one at a 0.19 margin, tie band 1.44)
    flips = v["top1_flip_margins"]
    assert v["top1_agree"] == f"{n - len(flips)}/{n}" and len(flips) <= 1 and all(m < v["tie_band"] for m in flips)
    assert m["base_sha256"] and m["bytes"] == (tmp_path / "lora.gguf").stat().st_size
    rows = (["The shop opens at 9."], ["Arr, the shop be open at 9!"])
    cfg = dict(model=str(smollm2_gguf()), max_new_tokens=8, n_ctx=512)
    tuned = LlamaPredictor(LlamaConfig(lora_path=str(tmp_path / "lora.gguf"), **cfg))
    assert tuned.predict_batch(*rows)[0].strip()


def test_a_lora_gguf_given_by_path_is_served_with_the_settings_its_export_recorded(tmp_path):
    """A chain's gguf/sft-dpo-lora.gguf (or `recover export lora --out X.gguf`) has X.manifest.json beside it: served
    by path it brings the template and n_ctx it was trained with (flags win), as a shipped adapter does."""
    from recover.models.shipped import llm_options

    gguf = tmp_path / "sft-dpo-lora.gguf"
    gguf.write_bytes(b"GGUF")
    serve = {"template": "short", "n_ctx": 320, "max_new_tokens": 32}
    (tmp_path / "sft-dpo-lora.manifest.json").write_text(json.dumps({"file": gguf.name, "serve": serve}))
    options, manifest = llm_options({"lora_path": str(gguf)})
    assert {k: options[k] for k in serve} == serve and manifest["serve"] == serve
    assert llm_options({"lora_path": str(gguf), "template": "recover"})[0]["template"] == "recover"
    # a failed export's manifest names its .tmp, not this file: nothing is read from it
    (tmp_path / "sft-dpo-lora.manifest.json").write_text(json.dumps({"file": gguf.name + ".tmp", "serve": serve}))
    assert "template" not in llm_options({"lora_path": str(gguf)})[0]


def test_a_top1_flip_is_measured_by_how_much_hf_preferred_its_own_pick():
    import numpy as np

    from recover.export.lora import flip_margins

    ref = [np.array([5.0, 4.8, 0.0]), np.array([9.0, 1.0, 0.0]), np.array([0.0, 2.0, 1.0])]
    got = [np.array([4.9, 5.0, 0.0]), np.array([1.0, 9.0, 0.0]), np.array([0.0, 3.0, 1.0])]
    assert flip_margins(got, ref, 3) == [0.2, 8.0]  # a near-tie (0.2) and a real flip (8.0); row 3 agrees


def test_lora_residual_is_measured_against_the_bases_own_error():
    """The applied-adapter rule: per prompt, |llama(base+LoRA) - HF(merged)| over |llama(base) - HF(base)|.
    An adapter applied as HF applies it stays near 1; one left out (or a wrong one) lands far off."""
    import numpy as np

    from recover.export.lora import RESID_RATIO, residual_ratios

    rng = np.random.default_rng(1)
    q = [rng.normal(size=50) for _ in range(3)]  # HF base
    effect = [rng.normal(scale=10, size=50) for _ in range(3)]  # what the adapter does in HF
    noise = [rng.normal(scale=0.5, size=50) for _ in range(3)]  # the 4-bit base's error in llama.cpp
    p = [a + b for a, b in zip(q, noise)]
    r = [a + b for a, b in zip(q, effect)]
    applied = [a + b for a, b in zip(p, effect)]
    assert max(residual_ratios(applied, p, r, q, 50)) <= 1.001  # the same error as the plain base
    assert min(residual_ratios(p, p, r, q, 50)) > RESID_RATIO  # left out: off by the whole effect
    wrong = [a + b for a, b in zip(p, effect[1:] + effect[:1])]
    assert min(residual_ratios(wrong, p, r, q, 50)) > RESID_RATIO
