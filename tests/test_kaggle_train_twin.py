"""kernels/train as Kaggle runs it: staged with every input, checked before any network call, run on the
/kaggle/input layout its own metadata gives, resumed by part 2, and its adapter served by the submission."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from recover import constants as C
from recover.kaggle import push, stage
from recover.kaggle.config import KaggleConfig
from recover.kaggle.inputs import mount_inputs
from recover.kaggle.train_kernel import OUTPUT_FILE, TrainSpec, resolve_train_output

ROOT = Path(__file__).resolve().parents[1]
TWIN_RECIPE = "chain-smollm2-twin-cpu"


def can_unshare():
    return shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"]).returncode == 0


@pytest.fixture
def cfg(monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    return KaggleConfig.load(ROOT / "setup.cfg")


@pytest.mark.parametrize("recipe, handle", [("chain-mistral-7b-t4", "mistral-ai/mistral/pytorch/7b-instruct-v0.2-hf/1"),
                                            ("chain-gemma-7b-it-t4", "google/gemma/transformers/7b-it/3")])
def test_7b_train_kernel_attaches_every_input_and_carries_its_settings(tmp_path, cfg, recipe, handle):
    d = stage.render_kernel("train", cfg, tmp_path, train=TrainSpec(recipe, "gemma_rewrites_a"))
    meta = push.validate_kernel_folder(d)  # kaggle's own checks + every input the notebook reads
    assert meta["model_sources"] == [handle] and meta["enable_internet"] is True and meta["enable_gpu"] is True
    assert meta["dataset_sources"][:2] == [cfg.ref(cfg.wheels_dataset), cfg.ref(cfg.data_dataset)]
    assert meta["kernel_sources"] == [cfg.ref(cfg.wheel_builder_kernel)]
    assert sorted(p.name for p in d.iterdir()) == sorted([meta["code_file"], "kernel-metadata.json", "inputs.json"])
    code = "".join("".join(c["source"]) for c in json.loads((d / meta["code_file"]).read_text())["cells"])
    assert "SETTINGS = None" not in code and "RECOVER_CHAIN_RECIPE" not in code and "RECOVER_HOLDOUT" not in code
    line = next(x for x in code.splitlines() if x.startswith("SETTINGS = json.loads("))
    settings = json.loads(json.loads(line[len("SETTINGS = json.loads("):line.rindex(")  # baked in")]))
    assert settings["recipe"]["holdout"] == "gemma_rewrites_a" and settings["recipe"]["kaggle_base"] == f"model:{handle}"
    assert "mixed_precision: fp16" in settings["accelerate_config"] and "trl==1.16.0" in settings["pins"]
    assert set(settings["projected_stage_s"]) >= {"sft", "pairs", "dpo"}


def test_part_2_attaches_part_1s_output(tmp_path, cfg):
    meta = push.validate_kernel_folder(stage.render_kernel("train", cfg, tmp_path, train=TrainSpec(TWIN_RECIPE, part=2)))
    assert meta["id"] == cfg.ref(cfg.train_kernel + "-part2") and cfg.ref(cfg.train_kernel) in meta["kernel_sources"]


def test_an_input_dropped_from_the_staged_metadata_fails_before_any_network_call(tmp_path, cfg):
    d = stage.render_kernel("train", cfg, tmp_path, train=TrainSpec(TWIN_RECIPE))
    meta = json.loads((d / "kernel-metadata.json").read_text())
    meta["dataset_sources"].remove(cfg.ref(cfg.data_dataset))
    (d / "kernel-metadata.json").write_text(json.dumps(meta))
    with pytest.raises(push.KaggleError, match=f"does not attach {cfg.ref(cfg.data_dataset)} .the labelled CSVs"):
        push.validate_kernel_folder(d)


def test_placeholder_username_and_unpinned_images_fail_before_the_push(tmp_path, cfg, monkeypatch):
    meta = push.validate_kernel_folder(stage.render_kernel("train", cfg, tmp_path, train=TrainSpec(TWIN_RECIPE)))
    with pytest.raises(push.KaggleError, match="username 'your-kaggle-username' is the placeholder"):
        push.check_before_push("train", meta, cfg.username, tmp_path)
    with pytest.raises(push.KaggleError, match="docker_image is empty for train"):
        push.check_before_push("train", meta, "someone", tmp_path)
    monkeypatch.setenv("RECOVER_KAGGLE_DOCKER_IMAGE", "gcr.io/kaggle-gpu-images/python@sha256:" + "ab" * 32)
    pinned = KaggleConfig.load(ROOT / "setup.cfg")
    meta = push.validate_kernel_folder(stage.render_kernel("train", pinned, tmp_path, train=TrainSpec(TWIN_RECIPE)))
    push.check_before_push("train", meta, "someone", tmp_path)  # one image: passes
    wheels = json.loads((stage.render_kernel("wheels", pinned, tmp_path) / "kernel-metadata.json").read_text())
    wheels["docker_image"] = "gcr.io/kaggle-gpu-images/python@sha256:" + "cd" * 32  # the wheel built on another
    (tmp_path / "wheels" / "kernel-metadata.json").write_text(json.dumps(wheels))
    with pytest.raises(push.KaggleError, match="kernels pinned to different docker images"):
        push.check_before_push("train", meta, "someone", tmp_path)


def run_notebook(nb_file: Path, python: Path, kag: Path, tmp: Path, name: str, **env_extra):
    """Execute a staged .ipynb with `python` as its kernel, under `unshare -n` (no network at all)."""
    kdir = tmp / "jupyter" / "kernels" / name
    kdir.mkdir(parents=True, exist_ok=True)
    (kdir / "kernel.json").write_text(json.dumps({"argv": [str(python), "-m", "ipykernel_launcher", "-f",
                                                           "{connection_file}"], "display_name": name,
                                                  "language": "python"}))
    runner = tmp / "run_nb.py"
    runner.write_text("import sys, nbformat, nbclient\nnb = nbformat.read(sys.argv[1], as_version=4)\ntry:\n"
                      "    nbclient.NotebookClient(nb, kernel_name=sys.argv[4], timeout=1500, "
                      "resources={'metadata': {'path': sys.argv[3]}}).execute()\nfinally:\n"
                      "    nbformat.write(nb, sys.argv[2])\n")
    work = kag / "working"
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "RECOVER_", "KAGGLE_"))}
    env.update(RECOVER_KAGGLE_ROOT=str(kag), JUPYTER_PATH=str(tmp / "jupyter"), PIP_NO_INDEX="1",
               PIP_CONFIG_FILE="/dev/null", HF_HUB_OFFLINE="1", **env_extra)
    out = tmp / f"{name}.ipynb"
    cmd = f"ip link set lo up && exec {sys.executable} {runner} {nb_file} {out} {work} {name}"
    r = subprocess.run(["unshare", "-n", "sh", "-c", cmd], capture_output=True, text=True, env=env, timeout=1800,
                       cwd=tmp)
    return r, out.read_text() if out.exists() else ""


def code_file(folder: Path) -> Path:
    return folder / json.loads((folder / "kernel-metadata.json").read_text())["code_file"]


@pytest.mark.e2e
@pytest.mark.skipif(not can_unshare(), reason="needs unshare -n")
def test_train_kernel_in_the_twin_then_its_adapter_serves_the_submission(tmp_path, cfg, sample_df, smollm2_gguf):
    from recover.export.llama_src import llama_cpp_src
    from recover.hashing import file_sha256
    from recover.kaggle.twin import fresh_kernel_env, fresh_train_env, offline_cache_ready

    assert offline_cache_ready(), "make setup prepares the twin and the shipped wheels (python -m recover.kaggle.twin)"
    llama_cpp_src()  # the LoRA converter's source: the train kernel fetches it with its internet, fetched here first
    # 1. stage every dataset as `make datasets` does, and the wheel kernel's output (no CUDA wheel on a CPU)
    staged = tmp_path / "datasets"
    stage.stage_wheels_dataset(cfg, stage.build_wheels(tmp_path / "wheels"), staged)
    half = len(sample_df) // 2
    files = []
    for name, part in (("gemma_rewrites_x.csv", sample_df.iloc[:half]), ("llama_rewrites_y.csv", sample_df.iloc[half:])):
        files.append(str(tmp_path / name))
        part.to_csv(files[-1], index=False)
    stage.stage_data_dataset(cfg, files, staged)
    stage.stage_base_dataset(cfg, str(smollm2_gguf), staged)
    wheel_out = tmp_path / "wheel-kernel-output"
    wheel_out.mkdir()
    (wheel_out / "wheel_manifest.json").write_text(json.dumps({"offload_ok": False, "note": "CPU stand-in"}))
    local = {cfg.ref(cfg.wheels_dataset): staged / cfg.wheels_dataset, cfg.ref(cfg.data_dataset): staged / cfg.data_dataset,
             cfg.ref(cfg.base_dataset): staged / cfg.base_dataset, cfg.ref(cfg.wheel_builder_kernel): wheel_out}
    kernel = stage.render_kernel("train", cfg, tmp_path / "kernels", train=TrainSpec(TWIN_RECIPE))
    kag = tmp_path / "kaggle"
    mount_inputs(push.validate_kernel_folder(kernel), local, kag)  # exactly what the metadata attaches

    # 2. in the Python 3.12 Kaggle-image twin: recover installs from the staged wheels; the light twin has no torch
    r, nb = run_notebook(code_file(kernel), fresh_kernel_env(tmp_path / "twin-venv"), kag, tmp_path, "twin312")
    assert "recover 0." in nb and "torch not importable: kernels/train needs Kaggle's Python image" in nb, \
        (r.stdout + r.stderr + nb)[-3000:]
    # 3. the whole chain on the CPU with the training image stand-in (this machine's torch stack)
    r, nb = run_notebook(code_file(kernel), fresh_train_env(tmp_path / "train-venv"), kag, tmp_path, "train")
    assert r.returncode == 0, (r.stdout + r.stderr + nb)[-4000:]
    assert "pinned installs: none" in nb and "train kernel part 1: finished" in nb
    out = kag / "working"
    made = json.loads((out / OUTPUT_FILE).read_text())
    assert made["stage"] == "dpo" and made["base"] is None and made["base_sha256"] == file_sha256(Path(smollm2_gguf))
    lora = out / made["lora"]
    assert lora.is_file() and json.loads(lora.with_name(C.MANIFEST_FILE).read_text())["file"] == lora.name

    # 4. part 2 attaches part 1's output and skips its finished stages
    part1 = tmp_path / "part1-output"
    shutil.copytree(out, part1, ignore=shutil.ignore_patterns("build", "recover_runs"))
    k2 = stage.render_kernel("train", cfg, tmp_path / "kernels2", train=TrainSpec(TWIN_RECIPE, part=2))
    kag2 = tmp_path / "kaggle2"
    mount_inputs(push.validate_kernel_folder(k2), {**local, cfg.ref(cfg.train_kernel): part1}, kag2)
    r, nb = run_notebook(code_file(k2), tmp_path / "train-venv" / "bin" / "python", kag2, tmp_path, "part2")
    assert r.returncode == 0 and "[dpo] finished in an earlier session" in nb and "[sft] start" not in nb, nb[-3000:]

    # 5. its output to the submission (`make datasets LORA=<output> MODEL=<the base it was trained on>`), run in the twin
    model, lora_file = resolve_train_output(part1, str(smollm2_gguf))
    sub_staged = tmp_path / "sub-datasets"
    stage.stage_wheels_dataset(cfg, staged / cfg.wheels_dataset, sub_staged)
    stage.stage_model_dataset(cfg, model, None, None, sub_staged, lora=lora_file)
    comp = tmp_path / "competition"
    comp.mkdir()
    sample_df.head(4)[["id", "original_text", "rewritten_text"]].to_csv(comp / "test.csv", index=False)
    submit = stage.render_kernel("submit", cfg, tmp_path / "kernels-submit")
    kag3 = tmp_path / "kaggle3"
    mount_inputs(push.validate_kernel_folder(submit),
                 {cfg.ref(cfg.wheels_dataset): sub_staged / cfg.wheels_dataset, C.COMPETITION_SLUG: comp,
                  cfg.ref(cfg.model_dataset): sub_staged / cfg.model_dataset, cfg.ref(cfg.wheel_builder_kernel): wheel_out},
                 kag3)
    r, nb = run_notebook(code_file(submit), fresh_kernel_env(tmp_path / "sub-venv"), kag3, tmp_path, "submit")
    assert r.returncode == 0 and "repaired: False" in nb, (r.stdout + r.stderr + nb)[-3000:]
    sub = pd.read_csv(kag3 / "working" / "submission.csv", dtype=str, keep_default_na=False)
    assert list(sub["id"]) == list(sample_df["id"][:4]) and all(s.strip() for s in sub["rewrite_prompt"])
    run = json.loads(next((kag3 / "working" / "recover_runs").glob("predict-*/config.json")).read_text())
    assert run["result"]["predictor"] == "llm" and run["result"]["status"] == {"ok": 4}
    served = Path(run["config"]["llm"]["lora_path"])
    assert served.name == lora.name and file_sha256(served) == file_sha256(lora)  # the freshly trained adapter
