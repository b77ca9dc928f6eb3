"""kernels/tune: refit the mean prompt + embed predictor against a sentence-t5 folder found under
/kaggle/input, offline; its output feeds the submission kernel (kernel_sources)."""
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

ROOT = Path(__file__).resolve().parents[1]


def can_unshare():
    return shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"]).returncode == 0


def test_tune_kernel_metadata_and_attachment(tmp_path, monkeypatch):
    cfg = KaggleConfig.load(ROOT / "setup.cfg")
    meta = push.validate_kernel_folder(stage.render_kernel("tune", cfg, tmp_path / "k"))
    assert meta["enable_internet"] is False and meta["enable_gpu"] is True and meta["competition_sources"] == []
    assert cfg.ref(cfg.data_dataset) in meta["dataset_sources"] and cfg.ref(cfg.wheels_dataset) in meta["dataset_sources"]
    plain = json.loads((stage.render_kernel("submit", cfg, tmp_path / "s") / "kernel-metadata.json").read_text())
    assert cfg.ref(cfg.tune_kernel) not in plain["kernel_sources"]
    monkeypatch.setenv("RECOVER_KAGGLE_ATTACH_TUNE", "1")  # what `make kernel TUNE=1` sets
    cfg2 = KaggleConfig.load(ROOT / "setup.cfg")
    meta = json.loads((stage.render_kernel("submit", cfg2, tmp_path / "t") / "kernel-metadata.json").read_text())
    assert cfg.ref(cfg.tune_kernel) in meta["kernel_sources"]


def test_data_dataset_refuses_a_csv_without_the_columns(tmp_path):
    cfg = KaggleConfig.load(ROOT / "setup.cfg")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"id": ["a"], "original_text": ["x"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="rewrite"):
        stage.stage_data_dataset(cfg, [str(bad)], tmp_path / "out")


@pytest.mark.e2e
@pytest.mark.skipif(not can_unshare(), reason="needs unshare -n")
def test_tune_notebook_refits_against_sentence_t5_offline(tmp_path, sample_df, tiny_sentence_t5):
    cfg = KaggleConfig.load(ROOT / "setup.cfg")
    kag = tmp_path / "kaggle"
    owner = kag / "input" / "datasets" / cfg.username
    half = len(sample_df) // 2  # two sources: leave-one-source-out needs them
    files = []
    for name, part in (("source_a.csv", sample_df.iloc[:half]), ("source_b.csv", sample_df.iloc[half:])):
        files.append(tmp_path / name)
        part.to_csv(files[-1], index=False)
    (tmp_path / "rewrite_prompts.txt").write_text("\n".join(sample_df["rewrite_prompt"].head(10)) + "\n")
    stage.stage_data_dataset(cfg, [str(f) for f in files] + [str(tmp_path / "rewrite_prompts.txt")], owner)
    shutil.copytree(tiny_sentence_t5, owner / "sentence-t5-base" / "sentence-t5-base")
    comp = kag / "input" / "competitions" / C.COMPETITION_SLUG
    comp.mkdir(parents=True)
    sample_df.head(1).to_csv(comp / "train.csv", index=False)  # the competition's one-row example: not a source
    env = {**os.environ, "RECOVER_KAGGLE_ROOT": str(kag), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(["unshare", "-n", sys.executable, str(ROOT / "kernels" / "tune" / "notebook.py")],
                       capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    work = kag / "working"
    mean = json.loads((work / "mean_prompt.json").read_text())
    choice = json.loads((work / C.DEFAULT_PREDICTOR_FILE).read_text())
    # fitted against the sentence-t5 folder it found, not the packaged proxy
    assert mean["embedder_path"] and Path(mean["embedder_path"]).name == "sentence-t5-base"
    assert "PROXY" not in mean["embedder"] and mean["prompt"].strip()
    assert choice["predictor"] in ("mean", "embed") and set(choice["data"]) == {"source_a.csv", "source_b.csv"}
    if choice["predictor"] == "embed":
        assert (work / C.EMBED_PREDICTOR_DIR / C.MANIFEST_FILE).is_file()


@pytest.mark.e2e
@pytest.mark.skipif(not can_unshare(), reason="needs unshare -n")
def test_tune_notebook_installs_from_the_wheels_in_the_kaggle_twin(tmp_path, sample_df, tiny_sentence_t5):
    """The tune notebook as Kaggle runs it: Python 3.12 with the image's packages (the twin), recover only from
    the staged wheels dataset, no network. The light twin (CI) has no torch (a multi-GB CUDA build for cp312 on
    PyPI): there the notebook must install recover from the wheels and then stop with one clear line; the full
    twin (`make kaggle-twin TWIN=full`, RECOVER_TWIN=full) runs the whole fit."""
    from recover.kaggle.twin import fresh_kernel_env, offline_cache_ready

    assert offline_cache_ready(), "make setup prepares the twin and the shipped wheels (python -m recover.kaggle.twin)"
    cfg = KaggleConfig.load(ROOT / "setup.cfg")
    kag = tmp_path / "kaggle"
    owner = kag / "input" / "datasets" / cfg.username
    stage.stage_wheels_dataset(cfg, stage.build_wheels(tmp_path / "wheels"), owner)
    half = len(sample_df) // 2
    files = []
    for name, part in (("source_a.csv", sample_df.iloc[:half]), ("source_b.csv", sample_df.iloc[half:])):
        files.append(tmp_path / name)
        part.to_csv(files[-1], index=False)
    stage.stage_data_dataset(cfg, [str(f) for f in files], owner)
    shutil.copytree(tiny_sentence_t5, owner / "sentence-t5-base" / "sentence-t5-base")
    full = os.environ.get("RECOVER_TWIN") == "full"
    vpy = fresh_kernel_env(tmp_path / "venv", full=full)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "RECOVER_", "KAGGLE_"))}
    env.update(RECOVER_KAGGLE_ROOT=str(kag), PIP_NO_INDEX="1", PIP_CONFIG_FILE="/dev/null", HOME=str(tmp_path / "home"))
    r = subprocess.run(["unshare", "-n", str(vpy), str(ROOT / "kernels" / "tune" / "notebook.py")],
                       capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    out = r.stdout + r.stderr
    assert "recover installed from the wheels dataset:" in out, out[-3000:]
    if full:
        assert r.returncode == 0, out[-3000:]
        assert json.loads((kag / "working" / "mean_prompt.json").read_text())["prompt"].strip()
    else:
        assert r.returncode != 0 and "torch not importable: kernels/tune needs Kaggle's Python image" in out, out[-3000:]
