"""Kaggle packaging: staged folders pass kaggle's own validation; the notebook runs with NO network."""
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
from recover.kaggle.config import KaggleConfig, find_credentials

ROOT = Path(__file__).resolve().parents[1]


def can_unshare():
    return shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"]).returncode == 0


@pytest.fixture(scope="module")
def cfg():
    return KaggleConfig.load(ROOT / "setup.cfg")


def test_config_comes_from_setup_cfg_and_env(monkeypatch, cfg):
    assert cfg.submit_kernel and cfg.wheels_dataset
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    assert KaggleConfig.load(ROOT / "setup.cfg").ref("x") == "someone/x"


def test_rendered_submit_kernel_metadata(tmp_path, cfg):
    d = stage.render_kernel("submit", cfg, tmp_path)
    meta = push.validate_kernel_folder(d)
    assert meta["enable_internet"] is False and meta["enable_gpu"] is True
    assert meta["machine_shape"] == "NvidiaTeslaT4"
    assert meta["competition_sources"] == ["llm-prompt-recovery"]
    assert meta["dataset_sources"] == [cfg.ref(cfg.wheels_dataset), cfg.ref(cfg.model_dataset)]
    assert meta["kernel_sources"] == [cfg.ref(cfg.wheel_builder_kernel)]
    nb = json.loads((d / meta["code_file"]).read_text())
    assert nb["cells"] and "/kaggle/input" in "".join("".join(c["source"]) for c in nb["cells"])


def test_broken_kernel_folder_fails_kaggles_validation(tmp_path, cfg):
    d = stage.render_kernel("submit", cfg, tmp_path)
    (d / json.loads((d / "kernel-metadata.json").read_text())["code_file"]).unlink()
    with pytest.raises(push.KaggleError, match="Source file not found"):
        push.validate_kernel_folder(d)


def test_push_without_credentials_is_one_clear_line(tmp_path, cfg, monkeypatch):
    for k in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "nokaggle"))
    assert find_credentials() is None
    d = stage.render_kernel("submit", cfg, tmp_path)
    with pytest.raises(push.KaggleError, match="no Kaggle credentials: put kaggle.json"):
        push.push_kernel(d)


@pytest.mark.skipif(not can_unshare(), reason="needs unshare -n")
def test_real_kaggle_cli_gets_past_local_validation(tmp_path, cfg):
    """Placeholder credentials, no network: a valid folder fails only at the network call."""
    good = stage.render_kernel("submit", cfg, tmp_path / "good")
    bad = stage.render_kernel("submit", cfg, tmp_path / "bad")
    meta = json.loads((bad / "kernel-metadata.json").read_text())
    meta["language"] = "cobol"
    (bad / "kernel-metadata.json").write_text(json.dumps(meta))
    env = dict(os.environ, KAGGLE_USERNAME="placeholder", KAGGLE_KEY="0" * 32, KAGGLE_CONFIG_DIR=str(tmp_path / "cfg"))
    kaggle = str(Path(sys.executable).with_name("kaggle"))

    def run(folder):
        r = subprocess.run(["unshare", "-n", kaggle, "kernels", "push", "-p", str(folder)], capture_output=True,
                           text=True, env=env, timeout=120)
        return r.returncode, r.stdout + r.stderr

    rc, out = run(bad)
    assert rc != 0 and "A valid language must be specified" in out
    rc, out = run(good)
    assert rc != 0 and "must be specified" not in out and "not found" not in out  # no validation error
    assert any(w in out for w in ("Connection", "connection", "resolve", "Max retries", "Network", "NameResolution"))


@pytest.mark.e2e
@pytest.mark.skipif(not can_unshare(), reason="needs unshare -n")
def test_notebook_runs_offline_in_a_fresh_venv_from_staged_wheels(tmp_path, cfg, smollm2_gguf, sample_df):
    from helpers import image_site

    # 1. stage exactly what `make datasets` stages
    wheels = stage.build_wheels(tmp_path / "wheels")
    kag = tmp_path / "kaggle"
    inp = kag / "input"
    stage.stage_wheels_dataset(cfg, wheels, inp / "datasets" / cfg.username)
    stage.stage_model_dataset(cfg, str(smollm2_gguf), None, None, inp / "datasets" / cfg.username)
    comp = inp / "competitions" / C.COMPETITION_SLUG
    comp.mkdir(parents=True)
    sample_df[["id", "original_text", "rewritten_text"]].to_csv(comp / "test.csv", index=False)
    kernel = stage.render_kernel("submit", cfg, tmp_path / "kernels")
    nb_file = kernel / json.loads((kernel / "kernel-metadata.json").read_text())["code_file"]

    # 2. a fresh venv: the toolkit only from the staged wheels; the image's packages from outside
    venv = tmp_path / "venv"
    subprocess.run([f"{sys.base_prefix}/bin/python3", "-m", "venv", str(venv)], check=True)
    vpy = venv / "bin" / "python"
    # The image has one setuptools (torch needs a recent one): the venv's bundled old copy must not shadow it.
    subprocess.run([str(vpy), "-m", "pip", "uninstall", "-q", "-y", "setuptools"], check=True)
    site_dir = subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True).stdout.strip()
    img = image_site([x.strip() for x in (ROOT / "offline_wheels" / "kaggle-image.txt").read_text().splitlines()
                      if x.strip() and not x.startswith("#")], tmp_path / "image")
    Path(site_dir, "kaggle_image.pth").write_text(str(img) + "\n")
    r = subprocess.run([str(vpy), "-c", "import recover"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode != 0, "recover must not be importable before the notebook installs it"

    # 3. run the staged notebook under `unshare -n` with that venv as the kernel
    kdir = tmp_path / "jupyter" / "kernels" / "kaggle-sim"
    kdir.mkdir(parents=True)
    (kdir / "kernel.json").write_text(json.dumps({"argv": [str(vpy), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                                                  "display_name": "kaggle-sim", "language": "python"}))
    runner = tmp_path / "run_nb.py"
    runner.write_text(
        "import sys, nbformat, nbclient\n"
        "nb = nbformat.read(sys.argv[1], as_version=4)\n"
        "nbclient.NotebookClient(nb, kernel_name='kaggle-sim', timeout=1500, resources={'metadata': {'path': sys.argv[3]}}).execute()\n"
        "nbformat.write(nb, sys.argv[2])\n")
    work = kag / "working"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "RECOVER_"))}
    env.update(RECOVER_KAGGLE_ROOT=str(kag), JUPYTER_PATH=str(tmp_path / "jupyter"), PIP_NO_INDEX="1",
               PIP_CONFIG_FILE="/dev/null", HOME=str(tmp_path / "home"))
    cmd = f"ip link set lo up && exec {sys.executable} {runner} {nb_file} {tmp_path / 'executed.ipynb'} {work}"
    r = subprocess.run(["unshare", "-n", "sh", "-c", cmd], capture_output=True, text=True, env=env,
                       timeout=1800, cwd=tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    executed = (tmp_path / "executed.ipynb").read_text()
    assert "installed: True" in executed and "recover predict exit code: 0" in executed

    # 4. a valid submission
    sub = pd.read_csv(work / "submission.csv", dtype=str, keep_default_na=False)
    assert list(sub["id"]) == list(sample_df["id"])
    assert all(s.strip() for s in sub["rewrite_prompt"])
    from recover.score.embedder import TokenCap, resolve_embedder

    cap = TokenCap.from_spec(resolve_embedder(None))
    assert max(cap.count(s) for s in sub["rewrite_prompt"]) <= C.MAX_PROMPT_TOKENS
    assert "llm" in executed  # the LLM path ran, not just the fallback
