"""The evaluation protocols are honest: prompt-disjoint folds, LOSO fits that never see held-out rows."""
import random

import numpy as np
import pandas as pd
import pytest

from recover import constants as C
from recover.data.protocols import check_disjoint, grouped_kfold, loso_folds, normalise_prompt

BASE = ["Rewrite this as a poem.", "Make it a pirate speech", "Turn the text into a formal email",
        "Summarize in one line", "Write it as a fairy tale for children", "Make this sound like Yoda"]


def variants(p: str, rng: random.Random) -> str:
    """The same prompt as a user would vary it: case, punctuation, spacing."""
    q = p.upper() if rng.random() < 0.3 else p.lower() if rng.random() < 0.5 else p
    q = q.rstrip(".!") + rng.choice(["", ".", "!", " .", "?!"])
    return rng.choice(["", " ", "  "]) + q.replace(" ", rng.choice([" ", "  ", " - ", ", "]), 1)


def test_normalise_prompt_collapses_case_punctuation_space():
    assert normalise_prompt("  Rewrite, THIS -- as a poem!! ") == "rewrite this as a poem"
    assert normalise_prompt("Rewrite this as a poem") != normalise_prompt("Rewrite this as a song")


@pytest.mark.parametrize("seed", range(20))
def test_grouped_kfold_never_puts_a_prompt_on_both_sides(seed):
    rng = random.Random(seed)
    prompts = [variants(rng.choice(BASE), rng) for _ in range(rng.randint(30, 120))]
    prompts += [f"unique prompt number {i}" for i in range(rng.randint(0, 20))]
    k = rng.choice([2, 3, 5])
    folds = grouped_kfold(prompts, k, seed)
    seen = np.concatenate([f.val for f in folds])
    assert sorted(seen.tolist()) == list(range(len(prompts)))  # every row validated exactly once
    for f in folds:
        check_disjoint(f, prompts)
        assert not set(f.train) & set(f.val)
        keys_tr = {normalise_prompt(prompts[i]) for i in f.train}
        assert all(normalise_prompt(prompts[i]) not in keys_tr for i in f.val)


def test_check_disjoint_catches_a_leak():
    from recover.data.protocols import Fold

    with pytest.raises(AssertionError, match="in train and validation"):
        check_disjoint(Fold("x", np.array([0]), np.array([1])), ["Make it a poem.", "make it a POEM"])


def test_loso_holds_out_each_source_and_purges_shared_prompts():
    sources = ["a"] * 4 + ["b"] * 3 + ["c"] * 3
    prompts = ["p1", "p2", "shared!", "p3", "q1", "Shared", "q2", "r1", "r2", "r3"]
    folds = {f.name: f for f in loso_folds(sources, prompts)}
    assert list(folds) == ["loso:a", "loso:b", "loso:c"]
    fa = folds["loso:a"]
    assert fa.val.tolist() == [0, 1, 2, 3] and 5 not in fa.train and fa.purged == 1
    for f in folds.values():
        check_disjoint(f, prompts)
    with pytest.raises(ValueError, match="not a source"):
        loso_folds(sources, prompts, holdout=["z"])


STYLES = {
    "Rewrite this text as a rhyming poem.": "Roses bloom and verses rhyme, {t} in rhythm, line by line.",
    "Make this sound like a pirate captain.": "Arr matey, ahoy! {t} Shiver me timbers, says the captain.",
    "Turn this into a formal business email.": "Dear Sir or Madam, I am writing regarding: {t} Kind regards.",
    "Summarize this text as a short news headline.": "BREAKING NEWS HEADLINE: {t}",
    "Make it a bedtime story for a child.": "Once upon a time, little one, {t} and everyone slept soundly.",
    "Make this sound like a sports commentator.": "AND HE SCORES! Folks, {t} What a moment in this game!",
}
TOPICS = ["the bakery opened a new shop", "the river flooded the village", "our team won the final match",
          "the museum shows dinosaur bones", "a storm closed the airport", "the library extends its hours"]


def write_sources(tmp_path, n=24):
    """Three sources; each uses its own wording of the prompts (so LOSO is prompt-disjoint) plus one shared."""
    paths = []
    for s, suffix in zip("abc", ["", " Please.", " Now."]):
        rng = random.Random(s)
        rows = []
        for i in range(n):
            p = rng.choice(list(STYLES))
            t = rng.choice(TOPICS)
            prompt = "Improve this text." if i == 0 else p + suffix  # "Improve this text." recurs in every source
            rows.append({"id": f"{s}{i:03d}", "original_text": f"Yesterday {t}.",
                         "rewritten_text": STYLES[p].format(t=t), "rewrite_prompt": prompt})
        rows.append({"id": f"{s}empty", "original_text": "", "rewritten_text": "x", "rewrite_prompt": "Shorten it."})
        p = tmp_path / f"src_{s}.csv"
        pd.DataFrame(rows).to_csv(p, index=False)
        paths.append(str(p))
    return paths


@pytest.fixture(scope="module")
def loso_run(tmp_path_factory):
    from recover.eval.methods import FitSettings
    from recover.eval.run import EvalConfig, run_eval
    from recover.meanprompt.optimize import OptimizeConfig

    tmp = tmp_path_factory.mktemp("eval")
    settings = FitSettings(bank_size=40, search=OptimizeConfig(beam=2, steps=4, prerank=32, insert_words=4, max_tokens=32))
    cfg = EvalConfig(data=write_sources(tmp), methods=["mean", "mean:shipped", "embed"],
                     settings=settings, cache_dir=str(tmp / "cache"), report=str(tmp / "report"),
                     runs_dir=str(tmp / "runs"), speed_rows=4)
    return run_eval(cfg, log=lambda *a: None), tmp


def test_loso_fits_never_see_a_held_out_row(loso_run):
    res, _ = loso_run
    ids = res["per_row"].groupby("fold")["id"].apply(set).to_dict()
    assert set(ids) == {"loso:src_a", "loso:src_b", "loso:src_c"}
    for fit in res["fits"]:
        if fit["method"] == "mean:shipped":  # fitted outside the folds: it was given no rows
            assert fit["train_ids"] == []
            continue
        held = ids[fit["fold"]]
        assert held and not held & set(fit["train_ids"]), f"{fit['method']} in {fit['fold']} saw held-out rows"
        # the prompt shared by all sources is purged from training
        assert not any(i.endswith("000") for i in fit["train_ids"])
        assert fit["train_ids"]
    # the real check that fits depend on training rows only: test_relabelling_the_held_out_rows_changes_no_fit


def test_the_runs_time_includes_encoding_its_rows(tmp_path, monkeypatch):
    """The run's seconds count from before its rows are encoded (a chain's pair stage printed "the rest of the run
    -301 s" and a T4 projection of "~-2 min" when they started after): encoding made to last 0.5 s shows."""
    import time

    import recover.eval.run as R
    from recover.eval.methods import FitSettings

    marks, embed, summarise = {}, R.embed_rows, R.summarise

    def slow_embed(*a, **k):
        marks["embed"] = time.time()
        time.sleep(0.5)
        return embed(*a, **k)

    def timed_summarise(r):
        marks["summarise"] = time.time()
        return summarise(r)

    monkeypatch.setattr(R, "embed_rows", slow_embed)
    monkeypatch.setattr(R, "summarise", timed_summarise)
    res = R.run_eval(R.EvalConfig(data=write_sources(tmp_path, n=4), methods=["mean:shipped"], settings=FitSettings(),
                                  cache_dir=str(tmp_path / "cache"), runs_dir=str(tmp_path / "runs"), speed_rows=0),
                     log=lambda *a: None)
    assert res["meta"]["seconds"] >= round(marks["summarise"] - marks["embed"], 1)
    assert res["meta"]["encoding"]["encode_s"] <= res["meta"]["seconds"]


def test_relabelling_the_held_out_rows_changes_no_fit(tmp_path):
    """The fits of a fold are functions of its training rows only: give the held-out source other prompts
    (the purged shared prompt kept) and every fitted method must predict exactly the same strings."""
    from recover.eval.methods import FitSettings
    from recover.eval.run import EvalConfig, run_eval
    from recover.meanprompt.optimize import OptimizeConfig

    settings = FitSettings(bank_size=30, search=OptimizeConfig(beam=1, steps=3, prerank=16, insert_words=2, max_tokens=24))
    paths = write_sources(tmp_path, n=14)
    preds = []
    for relabel in (False, True):
        if relabel:
            a = pd.read_csv(paths[0], keep_default_na=False)
            keep = a.rewrite_prompt == "Improve this text."
            a.loc[~keep, "rewrite_prompt"] = [f"Zebracorn style number {i}" for i in range(int((~keep).sum()))]
            a.to_csv(paths[0], index=False)
        res = run_eval(EvalConfig(data=paths, methods=["mean", "embed"], holdout=["src_a"], settings=settings,
                                  cache_dir=str(tmp_path / "cache"), runs_dir=str(tmp_path / "runs"), speed_rows=2),
                       log=lambda *a: None)
        pr = res["per_row"]
        preds.append(pr.set_index(["method", "id"]).pred.sort_index())
        if relabel:
            assert pr.true.str.startswith("Zebracorn").any()  # the labels did change
    assert preds[0].equals(preds[1])


def test_leaderboard_report_and_every_row_scored_once(loso_run):
    res, tmp = loso_run
    pr = res["per_row"]
    for m, g in pr.groupby("method"):
        assert len(g) == 75 and g.id.is_unique
    # the empty-text row gets the fold's mean prompt, like `recover predict`
    e = pr[(pr.id == "aempty") & (pr.method == "embed")].pred.iloc[0]
    assert e == pr[(pr.id == "aempty") & (pr.method == "mean")].pred.iloc[0]
    lb = res["leaderboard"]
    assert {"ci_low", "ci_high", "gain_vs_mean", "scs[src_a]", "rows_per_s"} <= set(lb.columns)
    # gains recomputed here from the per-row scores, row by row (not read back from the leaderboard code)
    pr_ = pr.pivot_table(index="id", columns="method", values="scs")
    for m in ("embed", "mean:shipped"):
        assert lb.set_index("method").loc[m, "gain_vs_mean"] == pytest.approx((pr_[m] - pr_["mean"]).mean(), abs=1e-9)
        assert lb.set_index("method").loc[m, "scs"] == pytest.approx(pr_[m].mean(), abs=1e-9)
    for f in ("leaderboard.csv", "leaderboard.json", "per_row.csv", "leaderboard.png"):
        assert (tmp / "report" / f).stat().st_size > 0
    # the learnable map is learnt: the embed predictors beat the constant across sources
    s = lb.set_index("method").scs
    assert s["embed"] > s["mean"] + 0.05


def test_bootstrap_ci_matches_the_normal_approximation():
    """Against an independent expectation: for n=5000 draws the 95% percentile interval of the mean is
    mean +- 1.96 sd / sqrt(n) within 10% of its half-width."""
    from recover.score.stats import bootstrap_ci

    rng = np.random.default_rng(0)
    for n in (400, 5000):
        x = rng.normal(0.3, 0.1, n)
        lo, hi = bootstrap_ci(x, n=2000)
        half = 1.96 * x.std(ddof=1) / np.sqrt(n)
        assert abs((hi - lo) / 2 - half) < 0.1 * half
        assert abs((hi + lo) / 2 - x.mean()) < 0.2 * half


def test_blank_prediction_fails_recover_score(tmp_path, capsys):
    from recover.cli import main

    (tmp_path / "truth.csv").write_text("id,rewrite_prompt\na,hello\nb,rewrite it\n")
    for bad in ('""', "   ", "nan"):
        (tmp_path / "pred.csv").write_text(f"id,rewrite_prompt\na,Make it a poem\nb,{bad}\n")
        assert main(["score", "--pred", str(tmp_path / "pred.csv"), "--truth", str(tmp_path / "truth.csv")]) == 2
        err = capsys.readouterr().err
        assert "blank rewrite_prompt for id 'b'" in err and len(err.strip().splitlines()) == 1


def test_shipped_manifests_have_the_schema_ship_writes(tmp_path, monkeypatch):
    """Ship on crafted data into a temporary package: the committed files must have the same keys."""
    import json

    from recover.eval import ship as ship_mod
    from recover.eval.methods import FitSettings
    from recover.eval.run import EvalConfig, run_eval
    from recover.meanprompt.optimize import OptimizeConfig
    from recover.meanprompt.prompt import DEFAULT_MEAN_PROMPT_PATH
    from recover.models.shipped import ASSETS

    from recover.predict.defaults import DEFAULT_FILE
    assets = tmp_path / "assets"
    assets.mkdir()
    monkeypatch.setattr(ship_mod, "ASSETS", assets)
    monkeypatch.setattr(ship_mod, "DEFAULT_FILE", assets / DEFAULT_FILE.name)
    monkeypatch.setattr(ship_mod, "DEFAULT_MEAN_PROMPT_PATH", tmp_path / "default.json")
    settings = FitSettings(bank_size=30, search=OptimizeConfig(beam=1, steps=3, prerank=16, insert_words=2, max_tokens=24))
    run_eval(EvalConfig(data=write_sources(tmp_path, n=14), methods=["mean", "embed", "embed-invert"], settings=settings,
                        cache_dir=str(tmp_path / "cache"), runs_dir=str(tmp_path / "runs"), speed_rows=2,
                        ship=True, command="recover eval --ship (test)"), log=lambda *a: None)
    pairs = [(tmp_path / "default.json", DEFAULT_MEAN_PROMPT_PATH),
             (assets / DEFAULT_FILE.name, DEFAULT_FILE)]
    made = json.loads((assets / DEFAULT_FILE.name).read_text())
    if made["predictor"] == "embed" and (ASSETS / C.EMBED_PREDICTOR_DIR).is_dir():
        pairs.append((assets / C.EMBED_PREDICTOR_DIR / C.MANIFEST_FILE, ASSETS / C.EMBED_PREDICTOR_DIR / C.MANIFEST_FILE))
    # an embed predictor carries "invert" exactly when embed-invert was the winner
    same_method = made.get("method") == json.loads(DEFAULT_FILE.read_text()).get("method")
    for new, shipped in pairs:
        a, b = json.loads(new.read_text()), json.loads(shipped.read_text())
        if not same_method:
            a.pop("invert", None), b.pop("invert", None)
        assert set(a) == set(b), f"{shipped.name}: {sorted(set(a) ^ set(b))}"
        if a.get("combine") == "pred+invert":
            assert (new.parent / C.INVERT_VOCAB_FILE).is_file()
        if "scs" in a.get("loso", {}):
            assert set(a["loso"]) == set(b["loso"])


def test_pick_winner_needs_every_selection_fold_at_or_above_the_mean():
    from recover.eval.select import pick_winner

    lb = pd.DataFrame({"method": ["embed", "mean:shipped", "mean"],
                       "scs[a]": [0.30, 0.90, 0.10], "scs[b]": [0.09, 0.90, 0.10],
                       "gain[a]": [0.20, 0.80, 0.0], "gain[b]": [-0.01, 0.80, 0.0]})
    assert pick_winner(lb, ["a", "b"]) == "mean"  # embed's higher macro does not excuse a loss on source b
    lb.loc[0, ["scs[b]", "gain[b]"]] = [0.11, 0.01]
    assert pick_winner(lb, ["a", "b"]) == "embed"  # and mean:shipped, which has seen every row, is never picked


def test_flags_that_would_be_ignored_are_errors_or_real(tmp_path):
    from recover.eval.methods import FitSettings, project_bank
    from recover.eval.run import EvalConfig

    with pytest.raises(ValueError, match="needs --protocol loso"):
        EvalConfig(data=["x.csv"], protocol="kfold", holdout=["gemma_rewrites_a"])
    with pytest.raises(ValueError, match="--vocab"):
        FitSettings(vocab="letters")
    s = FitSettings(bank_size=5, extra_bank=["Make it a POEM!", "Turn it into a haiku"])
    bank = project_bank(s, exclude={normalise_prompt("make it a poem")})
    assert "Turn it into a haiku" in bank and "Make it a POEM!" not in bank  # a held-out line is purged


def test_unknown_source_weight_is_an_error(tmp_path):
    from recover.eval.methods import FitSettings
    from recover.eval.run import EvalConfig, run_eval

    with pytest.raises(ValueError, match="--source-weight src_z"):
        run_eval(EvalConfig(data=write_sources(tmp_path, n=4), settings=FitSettings(source_weights={"src_z": 0.5}),
                            cache_dir=str(tmp_path / "c"), runs_dir=str(tmp_path / "r")), log=lambda *a: None)


def test_llm_rows_held_out_by_the_adapters_manifest_and_resumed(tmp_path):
    """The LLM is scored only on sources its adapter never trained on; its answers are stored chunk by chunk
    and a rerun (or a killed run) predicts only the ids it does not have."""
    from recover.eval.llm_rows import FoldLLM, trained_sources

    assert trained_sources({"training": {"data": ["x/a.csv", "b.csv", "c.csv"], "holdout": "b"}}) == {"a", "c"}
    with pytest.raises(ValueError, match="no training.data"):
        trained_sources({})
    f = FoldLLM(C.LOSO_LORA, tmp_path)  # the shipped LOSO adapter: trained on a and c, b held out
    assert f.held_out("gemma_rewrites_b") and f.held_out("gemma_rewrites_d") and not f.held_out("gemma_rewrites_a")

    class Stub:
        chunk_rows, calls = 2, []

        def predict_batch(self, originals, rewrites):
            self.calls.append(len(originals))
            self.confidence = [-0.5] * len(originals)
            return [f"answer {o}" for o in originals]

    f._pred = Stub()
    df = pd.DataFrame({C.COL_ID: [f"r{i}" for i in range(5)], C.COL_ORIGINAL: [f"o{i}" for i in range(5)],
                       C.COL_REWRITTEN: ["w"] * 5})
    with pytest.raises(ValueError, match="trained on gemma_rewrites_a"):
        f.rows("gemma_rewrites_a", df)
    got = f.rows("gemma_rewrites_b", df.iloc[:3])
    assert list(got.raw) == ["answer o0", "answer o1", "answer o2"] and Stub.calls == [2, 1]
    got = f.rows("gemma_rewrites_b", df.iloc[::-1])  # two new ids, the rest stored; the caller's order kept
    assert Stub.calls == [2, 1, 2] and list(got[C.COL_ID]) == ["r4", "r3", "r2", "r1", "r0"]
    assert list(got.raw) == [f"answer o{i}" for i in (4, 3, 2, 1, 0)] and (got.confidence == -0.5).all()


@pytest.mark.e2e
def test_eval_scores_the_llm_only_where_its_adapter_never_trained(tmp_path):
    """The shipped LOSO adapter trained on gemma_rewrites_a (and c): its llm* rows exist for b and d only; what
    llm+gate and llm+suffix fit comes from the LLM's answers to the OTHER held-out source's rows; the
    inversion keeps its per-row budget; a method missing a selection fold is never the winner."""
    from recover.eval.methods import FitSettings
    from recover.eval.run import EvalConfig, run_eval
    from recover.eval.select import pick_winner
    from recover.meanprompt.optimize import OptimizeConfig
    from recover.predict.invert import InvertConfig

    paths = []
    for src, path in zip(("gemma_rewrites_a", "gemma_rewrites_b", "gemma_rewrites_d"), write_sources(tmp_path, n=8)):
        df = pd.read_csv(path)
        df["id"] = src + "-" + df["id"]
        paths.append(str(tmp_path / f"{src}.csv"))
        df.to_csv(paths[-1], index=False)
    settings = FitSettings(bank_size=20, search=OptimizeConfig(beam=1, steps=2, prerank=8, insert_words=2, max_tokens=24),
                           invert=InvertConfig(max_edits=2, top_words=8, replace_words=2),
                           suffix=OptimizeConfig(beam=1, steps=2, prerank=8, insert_words=2, max_tokens=24))
    methods = ["mean", "embed", "embed-invert", "llm", "llm+mean", "llm+gate", "llm+suffix", "llm+invert"]
    res = run_eval(EvalConfig(data=paths, methods=methods, settings=settings, cache_dir=str(tmp_path / "cache"),
                              runs_dir=str(tmp_path / "runs"), speed_rows=0), log=lambda *a: None)
    pr = res["per_row"]
    llm = pr[pr.method.str.startswith("llm")]
    assert set(llm.source) == {"gemma_rewrites_b", "gemma_rewrites_d"} and len(llm.method.unique()) == 5
    assert set(pr[pr.method == "embed-invert"].source) == {"gemma_rewrites_a", "gemma_rewrites_b", "gemma_rewrites_d"}
    for f in res["fits"]:
        held = f["fold"].split(":")[1]
        if f["method"] in ("llm+gate", "llm+suffix"):
            assert set(f["params"]["pool_by_source"]) == {"gemma_rewrites_b", "gemma_rewrites_d"} - {held}
        if "invert" in f["method"]:
            assert f["params"]["mean_edits"] <= 2 and sum(f["params"]["stops"].values()) == f["val_rows"]
    assert (pr.pred.str.len() > 0).all()
    assert not pick_winner(res["leaderboard"], res["meta"]["select"]).startswith("llm")
    assert res["meta"]["shared_folds_ranking"]  # llm* lack fold a: ranked again on b and d


def test_llm_rows_cache_is_keyed_by_the_torch_precision(monkeypatch, tmp_path):
    """Answers cached under bf16 are not served once the CPU default becomes int8 (they differ on most rows);
    for llama.cpp the torch precision plays no part."""
    import recover.models.serving as D
    from recover.eval import llm_rows
    from recover.eval.llm_rows import FoldLLM

    def folder(engine, dtype):
        monkeypatch.setattr(llm_rows, "cpu_engine", lambda e="auto": engine)
        monkeypatch.setattr(D, "default_cpu_quant", lambda: {"engine": engine, "torch_dtype": dtype})
        return FoldLLM(C.LOSO_LORA, tmp_path).dir

    assert folder("torch", "bf16") != folder("torch", "int8")
    assert folder("torch", "bf16") == folder("torch", "bf16")
    assert folder("llama", "bf16") == folder("llama", "int8")
