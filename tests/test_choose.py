"""The submission notebook's choice without a GGUF: kernels/tune's default, served only when it can be."""
import json

from recover.kaggle.choose import tuned_flags


def embed_dir(tmp_path, name, proxy):
    d = tmp_path / name / "embed_predictor"
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"kind": "embed_predictor", "embedder_is_proxy": proxy}))
    return str(d)


def choice(tmp_path, predictor):
    f = tmp_path / "tune" / "default_predictor.json"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps({"predictor": predictor}))
    return [str(f)]


def test_tunes_mean_choice_is_used(tmp_path):
    flags, why = tuned_flags(choice(tmp_path, "mean"), [embed_dir(tmp_path, "a", False)], "/st5")
    assert flags == ["--predictor", "mean"] and "kernels/tune chose the mean prompt" in why


def test_a_sentence_t5_embed_predictor_needs_sentence_t5_attached(tmp_path):
    e = embed_dir(tmp_path, "a", False)
    flags, why = tuned_flags(choice(tmp_path, "embed"), [e], None)
    assert flags == [] and why.startswith("WARNING:") and "no sentence-t5 dataset is attached" in why
    flags, why = tuned_flags(choice(tmp_path, "embed"), [e], "/kaggle/input/x/sentence-t5-base")
    assert flags == ["--predictor", "embed", "--model", e] and "kernels/tune chose it" in why


def test_a_proxy_embed_predictor_runs_without_sentence_t5(tmp_path):
    e = embed_dir(tmp_path, "a", True)
    assert tuned_flags([], [e], None)[0] == ["--predictor", "embed", "--model", e]
    assert tuned_flags([], [], None)[0] == []  # nothing attached: the package's default predictor
