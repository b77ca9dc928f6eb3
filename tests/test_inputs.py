"""Bad input: one clear error line naming the problem, non-zero exit. Odd but valid input survives."""
import subprocess
import sys

import pandas as pd
import pytest

from recover.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "recover", *args], capture_output=True, text=True, timeout=300)


def write(tmp_path, content: bytes, name="test.csv"):
    p = tmp_path / name
    p.write_bytes(content)
    return p


@pytest.mark.parametrize("content, needle", [
    (b"", "file is empty"),
    (b"id,original_text\n1,hello\n", "missing column(s) rewritten_text"),
    (b"id,original_text,rewritten_text\n1,a,b\n1,c,d\n", "row 2: duplicate id '1'"),
    (b"id,original_text,rewritten_text\n1,a,b\n2,\xff\xfe bad,d\n", "line 3: bytes are not valid UTF-8"),
    (b"id,original_text,rewritten_text\n,a,b\n", "row 1: empty id"),
    (b"id,original_text,rewritten_text\n1,a,b,extra\n", "row 1: has 4 fields"),
])
def test_bad_input_is_one_clear_line(tmp_path, capsys, content, needle):
    p = write(tmp_path, content)
    rc = main(["predict", "--input", str(p), "--output", str(tmp_path / "sub.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and needle in err[0] and str(p) in err[0]
    assert not (tmp_path / "sub.csv").exists()


def test_bad_input_exit_code_from_the_real_command(tmp_path):
    p = write(tmp_path, b"id,text\n1,a\n")
    r = run_cli("predict", "--input", str(p), "--output", str(tmp_path / "s.csv"))
    assert r.returncode != 0
    assert "missing column(s) original_text, rewritten_text" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_file_is_clear(tmp_path, capsys):
    assert main(["predict", "--input", str(tmp_path / "nope.csv"), "--output", str(tmp_path / "s.csv")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_empty_and_nan_texts_get_the_fallback_and_odd_ids_round_trip(tmp_path):
    rows = pd.DataFrame({
        "id": ["a,1", "NA", "b\nc", "d"],
        "original_text": ["text, with \"quotes\"\nand newline", "", "ok", "NaN"],
        "rewritten_text": ["rewrite", "x", "", "y"],
    })
    p = tmp_path / "t.csv"
    rows.to_csv(p, index=False)
    out = tmp_path / "sub.csv"
    assert main(["predict", "--input", str(p), "--output", str(out), "--predictor", "mean",
                 "--mean-prompt", "Make it, \"nicer\"\nplease"]) == 0
    sub = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(sub["id"]) == ["a,1", "NA", "b\nc", "d"]
    assert all(s.strip() for s in sub["rewrite_prompt"])
    assert sub["rewrite_prompt"][0] == "Make it, \"nicer\"\nplease"


def test_no_partial_file_left_behind(tmp_path, test_csv):
    out = tmp_path / "sub.csv"
    assert main(["predict", "--input", str(test_csv), "--output", str(out)]) == 0
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".sub.csv") or p.name.endswith(".partial.jsonl")]
    assert leftovers == []


@pytest.mark.parametrize("flag, value, needle", [
    ("--flash-attn", "maybe", "'maybe': use on or off"),
    ("--offload-kqv", "nah", "'nah': use on or off"),
    ("--cpu-quant", "Q9", "--cpu-quant 'Q9'"),
])
def test_a_bad_switch_is_an_error_not_a_silent_default(tmp_path, flag, value, needle):
    p = write(tmp_path, b"id,original_text,rewritten_text\n1,a,b\n")
    r = run_cli("predict", "--input", str(p), "--output", str(tmp_path / "o.csv"), "--model", "pypi:smollm2", flag, value)
    assert r.returncode != 0 and needle in r.stderr, r.stderr[-500:]
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("predictor, flag, value", [("mean", "--lora", "smollm2-dpo"), ("embed", "--n-seq", "4"),
                                                    ("mean", "--template", "short")])
def test_llama_flags_with_a_predictor_that_ignores_them_are_an_error(tmp_path, capsys, predictor, flag, value):
    p = write(tmp_path, b"id,original_text,rewritten_text\n1,a,b\n")
    args = ["predict", "--input", str(p), "--output", str(tmp_path / "o.csv"), "--predictor", predictor, flag, value]
    if predictor == "embed":
        from recover.predict.defaults import default_choice

        args += ["--model", default_choice()["model"]]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{flag}: a llama.cpp flag, but the predictor is {predictor!r}" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.csv").exists()


def test_help_lists_every_choice_the_code_accepts(capsys):
    # the help text is built from the tuples the code validates against, so a new mode cannot go unlisted
    import re

    from recover.eval.ensemble import ENS_METHODS
    from recover.eval.run import METHODS
    from recover.meanprompt.prompt import COMBINE_ALIASES, COMBINE_MODES
    from recover.predict.config import ON_MODEL_ERROR, PREDICTORS

    def help_of(*verb):
        with pytest.raises(SystemExit):
            main([*verb, "--help"])
        return re.sub(r"\s+", " ", capsys.readouterr().out)

    predict = help_of("predict")
    for mode in COMBINE_MODES + tuple(COMBINE_ALIASES) + PREDICTORS + ON_MODEL_ERROR:
        assert re.search(rf"[{{ |,]{re.escape(mode)}[ ,}}|)]", predict), mode
    ev = help_of("eval")
    for m in METHODS + ENS_METHODS:
        assert f" {m}," in ev or f" {m} " in ev, m


def test_json_artifacts_are_strict_json(tmp_path):
    """A leaderboard's missing RULE (NaN) is written as null: strict JSON readers refuse `NaN`."""
    import json

    import numpy as np

    from recover.csvio import atomic_write_json
    p = tmp_path / "m.json"
    atomic_write_json(p, {"rule": float("nan"), "rows": [np.float32("inf"), np.float64(0.5), 1], "name": "x"})
    text = p.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict constant {c}")) == {
        "rule": None, "rows": [None, 0.5, 1], "name": "x"}
