"""The training half, issue 12: on-policy pairs from the real SmolLM2 with llama.cpp sampling, the
resumable pair stage, the shipped LoRA adapter on the packaged base, externally made predictions
scored by `recover eval`, and the chain's config rules."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recover import constants as C
from recover.data.onpolicy import OnPolicyConfig, build_onpolicy_pairs, row_seed, sample_rows
from recover.train.chain import ChainConfig
from recover.train.chain_config import resolve_chain_recipe


class Killed(Exception):
    pass


class DiesAfter:
    """An embedder that dies on its n-th call, as a kill would stop the loop mid-stage."""

    def __init__(self, inner, n):
        self.inner, self.n, self.spec = inner, n, inner.spec

    def encode(self, texts):
        self.n -= 1
        if self.n < 0:
            raise Killed
        return self.inner.encode(texts)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, sample_df):
    p = tmp_path_factory.mktemp("rows") / "rows.csv"
    sample_df.head(4).to_csv(p, index=False)
    return p


@pytest.fixture(scope="module")
def proxy():
    from recover.score.embedder import Embedder

    return Embedder.resolve(None)


def onpolicy_cfg(rows, out, **kw):
    return OnPolicyConfig(rows=str(rows), out=str(out), **{"model": C.PYPI_SMOLLM2, **kw}, k=3, n_ctx=320,
                          max_new_tokens=12, margin=1e-6)


@pytest.mark.e2e
def test_sampled_candidates_ranked_by_scs_make_pairs_with_chosen_above_rejected(tmp_path, labelled, proxy):
    cfg = onpolicy_cfg(labelled, tmp_path / "pairs.jsonl")
    report = build_onpolicy_pairs(cfg, proxy, log=lambda *a: None)
    recs = [json.loads(x) for x in cfg.samples_file.read_text().splitlines()]
    assert len(recs) == 4 and all(len(r["candidates"]) == len(r["raw"]) == 3 for r in recs)
    # temperature > 0: the k samples of a row are not all the same string
    assert any(len(set(r["raw"])) > 1 for r in recs)
    pairs = [json.loads(x) for x in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert report["pairs"] == len(pairs) >= 1
    by_id = {r["id"]: r for r in recs}
    for p in pairs:
        r = by_id[p["id"]]
        chosen, rejected = p["chosen"][0]["content"], p["rejected"][0]["content"]
        best, worst = int(np.argmax(r["scs"])), int(np.argmin(r["scs"]))
        assert p["scs_chosen"] > p["scs_rejected"]
        assert p["scs_chosen"] == pytest.approx(r["scs"][best], abs=1e-5)
        assert p["scs_rejected"] == pytest.approx(r["scs"][worst], abs=1e-5)
        # on-policy: the pair holds the raw generations; the SCS is of the cleaned prompt vs the TRUE one
        assert chosen == r["raw"][best].strip() and rejected == r["raw"][worst].strip()
        e = proxy.encode([r["true"], r["candidates"][best]])
        assert float(e[0] @ e[1]) ** 3 == pytest.approx(p["scs_chosen"], abs=1e-4)
        # the prompt side holds the texts exactly as the predictor served them
        assert r["original"] in p["prompt"][0]["content"] and r["rewritten"] in p["prompt"][0]["content"]
        assert rejected != chosen


@pytest.mark.e2e
def test_killed_pair_stage_resumes_without_duplicates_and_samples_the_same(tmp_path, labelled, proxy):
    full = onpolicy_cfg(labelled, tmp_path / "a" / "pairs.jsonl")
    sample_rows(full, proxy, log=lambda *a: None)
    want = [json.loads(x) for x in full.samples_file.read_text().splitlines()]

    cut = onpolicy_cfg(labelled, tmp_path / "b" / "pairs.jsonl")
    with pytest.raises(Killed):
        sample_rows(cut, DiesAfter(proxy, 2), log=lambda *a: None)
    with cut.samples_file.open("ab") as f:
        f.write(b'{"id": "s00')  # a torn last line, as a kill mid-write leaves it
    build_onpolicy_pairs(cut, proxy, log=lambda *a: None)
    got = [json.loads(x) for x in cut.samples_file.read_text().splitlines()]
    assert [r["id"] for r in got] == [r["id"] for r in want]  # 4 rows, each once, in order
    assert got == want  # per-row seeds: a resumed run samples exactly what an unbroken one does


@pytest.mark.e2e
def test_a_batch_of_rows_cut_mid_write_resumes_with_the_same_neighbours(tmp_path, labelled, proxy):
    """The torch engine samples 3 rows at a time here (groups [0, 1, 2], [3]). A run killed after writing one
    row of a group resamples the whole group on resume, writes only its missing rows, and ends with the file an
    unbroken run writes."""
    full = onpolicy_cfg(labelled, tmp_path / "a" / "pairs.jsonl", engine="torch", sample_batch_rows=3)
    sample_rows(full, proxy, log=lambda *a: None)
    want = full.samples_file.read_text().splitlines()
    assert len(want) == 4

    cut = onpolicy_cfg(labelled, tmp_path / "b" / "pairs.jsonl", engine="torch", sample_batch_rows=3)
    cut.samples_file.parent.mkdir(parents=True)
    cut.samples_file.write_text(want[0] + "\n" + want[1][:25], encoding="utf-8")  # row 0, then a torn row 1
    logs = []
    sample_rows(cut, proxy, log=logs.append)
    assert cut.samples_file.read_text().splitlines() == want
    assert any("1 of 4 rows already sampled" in x for x in logs)


class FakePolicy:
    """The sampler as resolved on some machine; each sample names the engine, precision and batch it was drawn in."""

    def __init__(self, cfg):
        self.cfg, self.engine = cfg, self

    def fit_row(self, original, rewritten):
        return original, rewritten

    def sample_rows(self, served, k, temperature, seeds, top_p):
        c = self.cfg
        return [[f"{c.engine} {c.torch_dtype} {c.n_seq} seed {s} #{i}" for i in range(k)] for s in seeds]

    def close(self):
        pass


def on_machine(monkeypatch, engine, n_seq, dtype):
    """engine auto resolves, on this machine, to `engine` with n_seq rows in flight and torch precision dtype."""
    from dataclasses import replace

    import recover.data.onpolicy as OP

    def served(base, arch):
        if base.engine == "auto":
            return replace(base, engine=engine, n_seq=n_seq, torch_dtype=dtype if engine == "torch" else None)
        return replace(base, n_seq=n_seq if base.engine == "torch" else 1,
                       torch_dtype=(base.torch_dtype or dtype) if base.engine == "torch" else None)

    monkeypatch.setattr(OP, "served_config", served)
    monkeypatch.setattr(OP, "LlamaPredictor", FakePolicy)
    monkeypatch.setattr(OP, "resolve_model_path", lambda m: m)


def test_a_pair_stage_on_a_rows_file_without_rows_says_so(tmp_path, labelled):
    empty = tmp_path / "none.csv"
    pd.read_csv(labelled).head(0).to_csv(empty, index=False)
    with pytest.raises(ValueError, match=r"none.csv: no rows to sample"):
        build_onpolicy_pairs(onpolicy_cfg(empty, tmp_path / "pairs.jsonl"), None, log=lambda *a: None)


def test_a_pair_stage_resumed_on_a_machine_that_serves_otherwise_draws_as_it_began(tmp_path, labelled, proxy,
                                                                                   monkeypatch):
    """Begun where auto means torch (bf16, 2 rows a batch), killed after one batch, resumed where auto means
    llama.cpp and from another folder: the rest is drawn as the first rows were, so the file is the one an unbroken
    run writes there. A resume that names other draws (llama.cpp, another temperature, another adapter) is refused
    with the file and the setting."""
    on_machine(monkeypatch, "torch", 6, "bf16")
    monkeypatch.chdir(tmp_path)
    Path("lora.gguf").write_bytes(b"adapter")
    full = onpolicy_cfg(labelled, tmp_path / "a" / "pairs.jsonl", model="m.gguf", lora="lora.gguf")
    sample_rows(full, proxy, log=lambda *a: None)
    want = full.samples_file.read_text().splitlines()
    assert json.loads(full.draw_file.read_text())["engine"] == "torch"

    cut = onpolicy_cfg(labelled, tmp_path / "b" / "pairs.jsonl", model="m.gguf", lora="lora.gguf")
    with pytest.raises(Killed):
        sample_rows(cut, DiesAfter(proxy, 2), log=lambda *a: None)
    assert len(cut.samples_file.read_text().splitlines()) == 2
    on_machine(monkeypatch, "llama", 1, None)
    cut = OnPolicyConfig(**{**vars(cut), "lora": str(tmp_path / "lora.gguf")})  # resumed from elsewhere: same file
    with pytest.raises(ValueError, match=r"pairs.samples.jsonl: its rows were drawn with engine='torch'.*'llama'"):
        sample_rows(OnPolicyConfig(**{**vars(cut), "engine": "llama"}), proxy, log=lambda *a: None)
    with pytest.raises(ValueError, match=r"temperature=0.8; this run asks temperature=0.5"):
        sample_rows(OnPolicyConfig(**{**vars(cut), "temperature": 0.5}), proxy, log=lambda *a: None)
    Path("other.gguf").write_bytes(b"another adapter")
    with pytest.raises(ValueError, match=r"lora_sha256="):
        sample_rows(OnPolicyConfig(**{**vars(cut), "lora": "other.gguf"}), proxy, log=lambda *a: None)
    logs = []
    sample_rows(cut, proxy, log=logs.append)
    assert cut.samples_file.read_text().splitlines() == want
    assert all("torch bf16 6 seed" in x for x in want)
    assert any("resuming with the draws of the rows already written: torch (bf16, 2 rows a batch)" in x for x in logs)
    report = build_onpolicy_pairs(cut, proxy, log=lambda *a: None)
    assert report["draws"]["engine"] == "torch" and report["draws"]["sample_batch_rows"] == 2


def test_row_seed_is_stable_nonzero_and_per_row():
    assert row_seed(1234, "a1") == row_seed(1234, "a1") != row_seed(1234, "a2")
    assert row_seed(1234, "a1") != row_seed(99, "a1") and all(row_seed(1234, str(i)) for i in range(200))


def test_onpolicy_and_chain_configs_reject_bad_values(tmp_path):
    with pytest.raises(ValueError, match="at least 2"):
        OnPolicyConfig(rows="x", out="o", model="m", k=1)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        OnPolicyConfig(rows="x", out="o", model="m", temperature=0)
    data = [str(tmp_path / "src_a.csv"), str(tmp_path / "src_b.csv")]
    with pytest.raises(ValueError, match="not one of the data files"):
        ChainConfig(data=data, holdout="src_c")
    with pytest.raises(ValueError, match="at least two"):
        ChainConfig(data=data[:1], holdout="src_a")
    with pytest.raises(ValueError, match="dpo_sft_weight"):
        ChainConfig(data=data, holdout="src_a", dpo_sft_weight=-1.0)
    y = tmp_path / "chain.yaml"
    y.write_text("data: [a.csv, b.csv]\nholdout: a\nsft_rowz: 3\n")
    with pytest.raises(ValueError, match="unknown key.*sft_rowz"):
        ChainConfig.load(str(y), {})
    y.write_text("data: [a.csv, b.csv]\nholdout: a\nsft_rows: 3\n")
    assert ChainConfig.load(str(y), {"sft_rows": 7, "k": None}).sft_rows == 7  # CLI flags override the YAML


def test_a_finished_stage_made_with_other_settings_is_an_error_not_a_reuse(tmp_path):
    from recover.train.chain import Chain

    data = [str(tmp_path / "src_a.csv"), str(tmp_path / "src_b.csv")]
    calls = []
    chain = Chain(ChainConfig(data=data, holdout="src_a", out=str(tmp_path / "c"), k=4), log=lambda *_: None)
    chain.stage_base = lambda: calls.append("base") or {}
    chain.run(only=["base"])
    stages = tmp_path / "c" / "stages"
    (stages / "pairs.json").write_text(json.dumps({"settings": chain.settings("pairs")}))
    chain.run(only=["base", "pairs"])  # same settings: both reused
    assert calls == ["base"]
    other = Chain(ChainConfig(data=data, holdout="src_a", out=str(tmp_path / "c"), k=6), log=lambda *_: None)
    other.run(only=["base"])  # k does not touch the base stage
    with pytest.raises(ValueError, match=r"stage pairs .*k: 4 -> 6"):
        other.run(only=["pairs"])
    (stages / "pairs.json").write_text("{}")  # a marker from before settings were recorded: reused
    other.run(only=["pairs"])
    # recorded before pair_engine existed: it drew as `auto` did, so it is reused as auto and refused as llama
    legacy = {k: v for k, v in chain.settings("pairs").items() if k != "pair_engine"}
    (stages / "pairs.json").write_text(json.dumps({"settings": legacy}))
    with pytest.raises(ValueError, match=r"stage pairs .*pair_engine: 'auto' -> 'llama'"):
        chain.run(only=["pairs"])
    Chain(ChainConfig(data=data, holdout="src_a", out=str(tmp_path / "c"), k=4, pair_engine="auto"),
          log=lambda *_: None).run(only=["pairs"])


def test_recover_eval_scores_outside_predictions_on_the_held_out_source(tmp_path):
    from test_eval import write_sources

    from recover.eval.methods import FitSettings
    from recover.eval.run import EvalConfig, run_eval
    from recover.meanprompt.optimize import OptimizeConfig

    data = write_sources(tmp_path, n=10)
    held = pd.read_csv(data[1], dtype=str, keep_default_na=False)
    pred = tmp_path / "pred.csv"
    pd.DataFrame({"id": held["id"], C.COL_PROMPT: held[C.COL_PROMPT]}).to_csv(pred, index=False)  # an oracle
    s = FitSettings(bank_size=20, search=OptimizeConfig(beam=2, steps=3, prerank=16, insert_words=4, max_tokens=24))
    cfg = dict(data=data, methods=["mean"], holdout=["src_b"], settings=s, cache_dir=str(tmp_path / "c"),
               runs_dir=str(tmp_path / "r"), speed_rows=0)
    res = run_eval(EvalConfig(**cfg, preds={"oracle": str(pred)}), log=lambda *a: None)
    lb = res["leaderboard"].set_index("method")
    assert lb.loc["oracle", "scs"] == pytest.approx(1.0, abs=1e-4) and lb.loc["oracle", "rows"] == len(held)
    assert lb.loc["oracle", "gain_vs_mean"] > 0.5
    const = tmp_path / "const.csv"  # one prompt for every row, then the oracle: a paired step up
    pd.DataFrame({"id": held["id"], C.COL_PROMPT: "Rewrite this text."}).to_csv(const, index=False)
    res = run_eval(EvalConfig(**cfg, preds={"const": str(const), "oracle": str(pred)}), log=lambda *a: None)
    (step,) = res["paired_steps"]
    per = res["per_row"].pivot(index="id", columns="method", values="scs")
    assert (step["from"], step["to"], step["rows"]) == ("const", "oracle", len(held))
    assert step["gain"] == pytest.approx((per["oracle"] - per["const"]).mean(), abs=1e-4)
    assert 0 < step["ci_low"] <= step["gain"] <= step["ci_high"]
    pd.DataFrame({"id": held["id"][1:], C.COL_PROMPT: held[C.COL_PROMPT][1:]}).to_csv(pred, index=False)
    with pytest.raises(ValueError, match=f"no prediction for id '{held['id'][0]}'"):
        run_eval(EvalConfig(**cfg, preds={"oracle": str(pred)}), log=lambda *a: None)
    with pytest.raises(ValueError, match="ONE held-out source"):
        EvalConfig(data=data, preds={"x": str(pred)})


def shipped_lora():
    from recover.models.shipped import resolve_lora, shipped_loras

    if C.DEFAULT_LORA not in shipped_loras():
        pytest.fail(f"recover/assets/lora/{C.DEFAULT_LORA} is not shipped (make ship-lora)")
    return resolve_lora(C.DEFAULT_LORA)


def test_shipped_adapter_manifest_matches_the_packaged_base():
    from recover.hashing import file_sha256
    from recover.models.shipped import ASSETS
    from recover.pypi_models import smollm2_gguf

    path, serve = shipped_lora()
    m = json.loads((ASSETS / C.LORA_ASSETS_DIR / C.DEFAULT_LORA / C.MANIFEST_FILE).read_text())
    assert m["format_version"] == C.LORA_FORMAT_VERSION and m["kind"] == "lora_gguf"
    assert m["base_sha256"] == file_sha256(smollm2_gguf()) and m["sha256"] == file_sha256(path)
    assert m["verification"]["passed"] and m["command"].startswith("recover train chain")
    # the default is the final fit on every source, the test-like fold included; its held-out figures are its
    # LOSO twin's (same recipe), and that twin never saw the test-like fold, so it is scored there
    assert m["training"]["holdout"] == "none" and len(m["training"]["data"]) == 6
    assert f"{C.TEST_LIKE_SOURCE}.csv" in m["training"]["data"]
    held = m["heldout_figures"]["from_adapter"]["holdout"]
    assert m["heldout_figures"]["from_adapter"]["name"] == C.LOSO_LORA and m["heldout_figures"]["protocol"] == f"loso:{held}"
    loso = json.loads((ASSETS / C.LORA_ASSETS_DIR / C.LOSO_LORA / C.MANIFEST_FILE).read_text())
    assert f"{held}.csv" in loso["training"]["data"] and loso["training"]["holdout"] == held
    assert f"{C.TEST_LIKE_SOURCE}.csv" not in loso["training"]["data"]
    assert loso["training"]["recipe"]["dpo_lr"] == m["training"]["recipe"]["dpo_lr"] and loso["combine"] == m["combine"]
    assert {"n_ctx", "max_new_tokens"} <= set(serve)
    names = {r["method"] for r in m["heldout_figures"]["leaderboard"]}
    assert {"mean", "zero-shot", "sft", "sft+dpo", "sft+dpo+mean"} <= names
    scs = {r["method"]: r["scs"] for r in m["heldout_figures"]["leaderboard"]}  # the notebook's --combine
    assert m["combine"] == ("llm+mean" if scs["sft+dpo+mean"] > scs["sft+dpo"] else "llm")


def test_a_lora_without_combine_flag_is_served_with_its_manifests_combine(test_csv):
    from recover.meanprompt.prompt import normalize_combine
    from recover.models.shipped import ASSETS
    from recover.predict.config import PredictConfig
    from recover.predict.defaults import predict_config
    from recover.predict.finish import decide_combine
    from recover.predict.load import build_predictor

    m = json.loads((ASSETS / C.LORA_ASSETS_DIR / C.DEFAULT_LORA / C.MANIFEST_FILE).read_text())
    cfg = PredictConfig(str(test_csv), "unused.csv", predictor="llm", model=C.PYPI_SMOLLM2,
                        llm={"lora_path": C.DEFAULT_LORA, "max_new_tokens": 4}, cpu_quant="none")
    p = build_predictor(cfg, None)
    assert decide_combine(None, p).mode == normalize_combine(m["combine"])
    assert decide_combine("llm+mean", p).mode == "llm+mean"  # a flag wins
    p.engine.close()
    plain = build_predictor(predict_config(str(test_csv), "unused.csv", predictor="llm", model=C.PYPI_SMOLLM2,
                                           llm={"max_new_tokens": 4, "lora_path": "none"}, cpu_quant="none"), None)
    assert decide_combine(None, plain).mode == "pred+mean"  # no adapter (--lora none): the model + the mean prompt
    plain.engine.close()


def test_the_adapters_combine_is_the_better_one_on_the_held_out_source():
    from recover.train.ship_lora import choose_combine

    lb = lambda a, b: {"leaderboard": [{"method": "sft+dpo", "scs": a}, {"method": "sft+dpo+mean", "scs": b}]}
    assert choose_combine(lb(0.09, 0.07))[0] == "llm" and choose_combine(lb(0.06, 0.07))[0] == "llm+mean"
    with pytest.raises(ValueError, match="cannot choose"):
        choose_combine({"leaderboard": [{"method": "sft", "scs": 0.1}]})


@pytest.mark.e2e
def test_shipped_adapter_loads_on_the_packaged_base_and_changes_its_output(sample_df, tmp_path, test_csv):
    from recover.models.llm import LlamaConfig, LlamaPredictor
    from recover.predict.config import PredictConfig
    from recover.predict.runner import run_predict
    from recover.pypi_models import smollm2_gguf

    path, serve = shipped_lora()
    rows = sample_df.head(4)
    o, r = list(rows["original_text"]), list(rows["rewritten_text"])
    plain = LlamaPredictor(LlamaConfig(model=str(smollm2_gguf()), **serve)).predict_batch(o, r)
    tuned = LlamaPredictor(LlamaConfig(model=str(smollm2_gguf()), lora_path=path, **serve)).predict_batch(o, r)
    assert plain != tuned and all(t.strip() for t in tuned)
    # the CLI path: --model pypi:smollm2 --lora <name> brings the adapter's serve settings
    out = tmp_path / "sub.csv"
    stats = run_predict(PredictConfig(str(test_csv), str(out), predictor="llm", model=C.PYPI_SMOLLM2, combine="llm",
                                      llm={"lora_path": C.DEFAULT_LORA, "max_new_tokens": 8}))
    assert stats["status"] == {"ok": 30}
    sub = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert len(sub) == 30 and (sub[C.COL_PROMPT].str.strip() != "").all()
    run = json.loads((Path(stats["run_dir"]) / "config.json").read_text())
    assert run["config"]["llm"]["lora_path"] == C.DEFAULT_LORA


def fake_training(monkeypatch) -> list[list[str]]:
    """`recover train` subprocesses recorded, not run: each writes the metrics.json the chain reads."""
    from recover.train import chain as ch

    calls = []

    def fake_run(cmd, check):
        calls.append(cmd)
        out = Path(cmd[cmd.index("--output_dir") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps({"rows": 3, "seconds": 1.0, "log_history": [{"loss": 1.0}]}))

    monkeypatch.setattr(ch.subprocess, "run", fake_run)
    return calls


@pytest.mark.parametrize("recipe", ["chain-smollm2-cpu", "chain-qwen2.5-coder-0.5b-cpu", "chain-gemma-2b-t4"])
def test_cpu_and_t4_recipes_run_the_same_training_code(tmp_path, monkeypatch, recipe):
    """No CPU-only branch: both recipes train through `recover train sft|dpo` behind their launcher
    (python -m recover here, accelerate launch on T4 x2) with the chain's own arguments."""
    import sys

    from recover.train import chain as ch

    data = [str(tmp_path / "src_a.csv"), str(tmp_path / "src_b.csv")]
    cfg = ch.ChainConfig.load(resolve_chain_recipe(recipe), {"data": data, "holdout": "src_b", "out": str(tmp_path)})
    calls = fake_training(monkeypatch)
    chain = ch.Chain(cfg, log=lambda *a: None)
    if not cfg.base:  # the T4 recipe converts its HF base once; pretend that stage ran
        (tmp_path / "stages").mkdir()
        (tmp_path / "stages" / "base.json").write_text(json.dumps({"gguf": "base-Q8_0.gguf"}))
    chain.stage_sft()
    chain.stage_dpo()
    launcher = [sys.executable, "-m", "recover"] if "cpu" in recipe else \
        ["accelerate", "launch", "--config_file", "accelerate_t4x2.yaml", "-m", "recover"]
    for cmd, stage in zip(calls, ("sft", "dpo")):
        assert cmd[: len(launcher)] == launcher and cmd[len(launcher): len(launcher) + 2] == ["train", stage]
        assert cmd[cmd.index("--model_name_or_path") + 1] == (cfg.base_hf or cfg.base)
        assert cmd[cmd.index("--max_length") + 1] == str(cfg.n_ctx + 64)
    dpo = calls[1]
    assert dpo[dpo.index("--adapter_name_or_path") + 1] == str(tmp_path / "sft")  # DPO starts from the SFT adapter
    assert dpo[dpo.index("--recipe") + 1] == cfg.dpo_recipe and dpo[dpo.index("--beta") + 1] == str(cfg.dpo_beta)
    assert cfg.dpo_sft_weight > 0 and dpo[dpo.index("--loss_weights") + 2] == str(cfg.dpo_sft_weight)  # RPO on both


def test_dpo_sft_weight_adds_an_nll_term_on_chosen_that_trl_accepts(tmp_path):
    """RPO: with dpo_sft_weight > 0 the DPO stage asks trl for [sigmoid, sft] losses weighted [1, w];
    0 keeps plain DPO. The flags go through the real recipe parser (TrlParser + DPOConfig)."""
    from recover.train import chain as ch
    from recover.train.recipe import parse_recipe

    data = [str(tmp_path / "src_a.csv"), str(tmp_path / "src_b.csv")]
    assert ch.Chain(ch.ChainConfig(data=data, holdout="src_b", out=str(tmp_path))).dpo_loss() == []
    flags = ch.Chain(ch.ChainConfig(data=data, holdout="src_b", out=str(tmp_path), dpo_sft_weight=0.5)).dpo_loss()
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("{}\n")
    _, _, t = parse_recipe("dpo", "smollm2-cpu", ["--train_file", str(pairs), "--output_dir", str(tmp_path / "o"), *flags])
    assert list(t.loss_type) == ["sigmoid", "sft"] and list(t.loss_weights) == [1.0, 0.5]


def _flags(argv: list[str]) -> dict[str, list[str]]:
    out, key = {}, None
    for a in argv:
        if a.startswith("--"):
            key = a
            out[key] = []
        elif key:
            out[key].append(a)
    return out


def _values(xs: list[str]) -> list:
    """"1" and "1.0" are the same number to the argument parser."""
    out = []
    for x in xs:
        try:
            out.append(float(x))
        except ValueError:
            out.append(x)
    return out


def test_the_dpo_seed_rerun_script_uses_the_chains_dpo_arguments(tmp_path, monkeypatch):
    """scripts/dpo_seed_rerun.sh reruns the recipe's DPO stage by hand: its arguments must not drift
    from what the chain passes (or its figure would be about another recipe)."""
    import shlex

    from recover.train import chain as ch

    script = (Path(__file__).resolve().parent.parent / "scripts" / "dpo_seed_rerun.sh").read_text()
    line = next(x for x in script.replace("\\\n", " ").splitlines() if " train dpo " in x)
    got = _flags(shlex.split(line.replace('"', "")))
    data = [str(tmp_path / "src_a.csv"), str(tmp_path / "gemma_rewrites_b.csv")]
    cfg = ch.ChainConfig.load(resolve_chain_recipe("chain-smollm2-cpu"),
                              {"data": data, "holdout": "gemma_rewrites_b", "out": str(tmp_path)})
    calls = fake_training(monkeypatch)
    ch.Chain(cfg, log=lambda *a: None).stage_dpo()
    want = _flags(calls[0])
    for k in ("--recipe", "--model_name_or_path", "--learning_rate", "--beta", "--num_train_epochs",
              "--per_device_train_batch_size", "--gradient_accumulation_steps", "--max_length", "--loss_type",
              "--loss_weights"):
        assert k in got and _values(got[k]) == _values(want[k]), (k, got.get(k), want[k])


def test_staging_a_lora_checks_its_base_and_keeps_its_serve_settings(tmp_path):
    from recover.hashing import file_sha256
    from recover.kaggle.stage import stage_lora
    from recover.models.shipped import resolve_lora

    base, other = tmp_path / "base.gguf", tmp_path / "other.gguf"
    base.write_bytes(b"GGUF base weights")
    other.write_bytes(b"GGUF other weights")
    src = tmp_path / "made" / "a.gguf"
    src.parent.mkdir()
    src.write_bytes(b"GGUF lora")
    (src.parent / C.MANIFEST_FILE).write_text(json.dumps({"file": "a.gguf", "base_sha256": file_sha256(base),
                                                          "serve": {"n_ctx": 320, "max_new_tokens": 32}}))
    with pytest.raises(ValueError, match="made on a base"):
        stage_lora(str(src), str(other), tmp_path / "ds" / "lora")
    rel = stage_lora(str(src), str(base), tmp_path / "ds" / "lora")
    staged = tmp_path / "ds" / rel
    assert staged.read_bytes() == b"GGUF lora"
    assert resolve_lora(str(staged)) == (str(staged), {"n_ctx": 320, "max_new_tokens": 32})  # the notebook's --lora
    with pytest.raises(FileNotFoundError, match="not a file and not a shipped adapter"):
        resolve_lora("no-such-adapter")


@pytest.mark.parametrize("recipe, layers", [("chain-gemma-2b-t4", -1), ("chain-smollm2-cpu", 0)])
def test_a_recipes_gpu_offload_reaches_the_on_policy_sampler(tmp_path, monkeypatch, recipe, layers):
    from recover.data import onpolicy
    from recover.train import chain as ch

    data = [str(tmp_path / "src_a.csv"), str(tmp_path / "src_b.csv")]
    cfg = ch.ChainConfig.load(resolve_chain_recipe(recipe), {"data": data, "holdout": "src_b", "out": str(tmp_path)})
    chain = ch.Chain(cfg, log=lambda *a: None)
    monkeypatch.setattr(chain, "base_gguf", lambda: "base.gguf")
    monkeypatch.setattr(onpolicy, "resolve_model_path", lambda m: m)
    seen = []
    monkeypatch.setattr(onpolicy, "LlamaPredictor", lambda c: seen.append(c) or c)
    onpolicy.policy(chain.onpolicy_config(rows="r.csv", out="p.jsonl", k=4))
    chain.policy_tokenizer()
    assert [c.n_gpu_layers for c in seen] == [layers, layers]
    assert seen[0].n_ctx == cfg.n_ctx and seen[0].template == cfg.template


def test_the_final_fit_trains_on_every_source_and_carries_the_loso_adapters_figures(tmp_path):
    """holdout none: every row trains, predict/eval are skipped, and the shipped manifest's held-out figures
    are the LOSO adapter's, accepted only when it was made with the same recipe."""
    from recover.train import chain as ch
    from recover.train.ship_lora import loso_evidence

    data = []
    for name in ("gemma_rewrites_a", "gemma_rewrites_b"):
        f = tmp_path / f"{name}.csv"
        pd.DataFrame({C.COL_ID: [f"{name}-{i}" for i in range(4)], C.COL_ORIGINAL: ["o"] * 4, C.COL_REWRITTEN: ["r"] * 4,
                      C.COL_PROMPT: [f"p{i} {name}" for i in range(4)]}).to_csv(f, index=False)
        data.append(str(f))
    cfg = ch.ChainConfig.load(resolve_chain_recipe("chain-smollm2-cpu"), {"data": data, "holdout": "none",
                                                                             "out": str(tmp_path / "c")})
    chain = ch.Chain(cfg, log=lambda *a: None)
    assert cfg.final and chain.stage_split()["train"] == 8  # nothing held out, nothing purged
    assert len(pd.read_csv(chain.p["train"])) == 8
    assert "skipped" in chain.stage_predict() and "skipped" in chain.stage_eval()
    held, combine, ev = loso_evidence(cfg, C.LOSO_LORA)  # the shipped LOSO adapter: same recipe
    assert held["from_adapter"]["holdout"] and combine in ("llm", "llm+mean") and ev["from_adapter"]
    other = ch.ChainConfig.load(resolve_chain_recipe("chain-smollm2-cpu"),
                                {"data": data, "holdout": "none", "out": str(tmp_path / "c"), "dpo_lr": 1e-5})
    with pytest.raises(ValueError, match="another recipe.*dpo_lr"):
        loso_evidence(other, C.LOSO_LORA)
    # a LOSO adapter whose manifest records where it was to be served (kaggle_base) is still the same recipe
    qwen = ch.ChainConfig.load(resolve_chain_recipe("chain-qwen2.5-coder-0.5b-cpu"),
                               {"data": data, "holdout": "none", "out": str(tmp_path / "q")})
    assert loso_evidence(qwen, "qwen-coder-dpo")[0]["from_adapter"]["name"] == "qwen-coder-dpo"


def test_the_chains_predict_stage_runs_recover_predict_and_serves_zero_shot_bare(tmp_path, monkeypatch):
    """The held-out predictions come from `recover predict` behind the launcher, with flags the real parser takes;
    zero-shot passes `--lora none` (a PyPI base named without --lora would serve the shipped final fit, which trained
    on the held-out source), the others their own adapter; the stage reads the stats each run recorded."""
    from recover.cli import build_parser
    from recover.train import chain as ch

    data = [str(tmp_path / "src_a.csv"), str(tmp_path / "src_b.csv")]
    cfg = ch.ChainConfig.load(resolve_chain_recipe("chain-smollm2-cpu"), {"data": data, "holdout": "src_b",
                                                                             "out": str(tmp_path / "c"), "eval_rows": 0})
    chain = ch.Chain(cfg, log=lambda *a: None)
    chain.p["val_test"].parent.mkdir(parents=True)
    pd.DataFrame({C.COL_ID: ["r1", "r2"], C.COL_ORIGINAL: ["o", "o"], C.COL_REWRITTEN: ["r", "r"]}).to_csv(
        chain.p["val_test"], index=False)
    for f in (chain.p["sft_gguf"], chain.p["dpo_gguf"]):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"GGUF " + f.name.encode())
    monkeypatch.setattr(chain, "_fold_mean", lambda: "the fold's mean")
    monkeypatch.setattr(ch, "resolve_model_path", lambda m: str(chain.p["val_test"]))
    monkeypatch.setattr(ch, "make_cap", lambda *a: lambda s: s)
    calls = []

    def fake_predict(cmd, check):
        args = build_parser().parse_args(cmd[3:])  # launcher = python -m recover
        calls.append(args)
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({C.COL_ID: ["r1", "r2"], C.COL_PROMPT: ["a", "b"]}).to_csv(args.output, index=False)
        run = Path(args.run_root) / "predict-1"
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"result": {"seconds": 2.0, "s_per_row_predicted": 1.0,
                                                                "status": {"ok": 2}}}))

    monkeypatch.setattr(ch.subprocess, "run", fake_predict)
    out = chain.stage_predict()
    assert [a.lora_path for a in calls] == [C.NO_LORA, str(chain.p["sft_gguf"]), str(chain.p["dpo_gguf"])]
    assert all(a.predictor == "llm" and a.combine == "llm" and a.cpu_quant == "none" and a.n_ctx == cfg.n_ctx
               for a in calls)
    assert out["sft"] == {"seconds": 2.0, "s_per_row": 1.0, "status": {"ok": 2}}
    calls.clear()
    assert chain.stage_predict()["sft+dpo"]["reused"] and not calls  # same inputs: resumed, not rerun


def test_the_pair_stage_fills_the_rows_in_flight_this_machine_measured(monkeypatch):
    """sample_batch_rows 0: as many rows' k samples as fit the torch engine's measured rows in flight (32 -> 5 rows
    of 6); a given number wins; llama.cpp samples one row (k sequences) at a time."""
    from dataclasses import replace

    import recover.data.onpolicy as OP

    monkeypatch.setattr(OP, "LlamaPredictor", lambda cfg: cfg)
    monkeypatch.setattr(OP, "gguf_architecture", lambda m: "llama")
    monkeypatch.setattr(OP, "resolve_model_path", lambda m: m)
    monkeypatch.setattr(OP, "served_config", lambda base, arch: replace(base, engine="torch", n_seq=32))
    cfg = OnPolicyConfig(rows="r.csv", out="o.jsonl", model="m.gguf", k=6)
    assert (OP.policy(cfg).engine, OP.policy(cfg).n_seq) == ("torch", 30)
    assert OP.policy(replace(cfg, sample_batch_rows=2)).n_seq == 12
    monkeypatch.setattr(OP, "served_config", lambda base, arch: replace(base, engine="llama", n_seq=1))
    assert (OP.policy(cfg).engine, OP.policy(cfg).n_seq) == ("llama", 6)


def test_the_chains_lora_exports_record_the_settings_it_trained_with(tmp_path, monkeypatch):
    """Both LoRA GGUFs' export manifests carry the chain's serve settings (template, n_ctx, max_new_tokens), so
    `recover predict --lora <chain>/gguf/sft-dpo-lora.gguf` serves the adapter as the chain trained it."""
    from recover.train import chain as ch

    cfg = ch.ChainConfig.load(resolve_chain_recipe("chain-smollm2-short-cpu"),
                              {"data": [str(tmp_path / "a.csv")], "holdout": "none", "out": str(tmp_path / "c")})
    chain = ch.Chain(cfg, log=lambda *a: None)
    seen = []
    monkeypatch.setattr(chain, "base_gguf", lambda: "base.gguf")
    monkeypatch.setattr(ch, "export_lora", lambda *a, **kw: seen.append(kw) or {"bytes": 1, "verification": {}})
    chain.stage_sft_gguf()
    chain.stage_dpo_gguf()
    assert [kw["serve"] for kw in seen] == [{"template": "short", "n_ctx": 320, "max_new_tokens": 32}] * 2


def test_the_chain_draws_its_pairs_on_llama_cpp_unless_told_otherwise(tmp_path, monkeypatch):
    """The pair stage's engine is the chain's setting, llama.cpp by default (its draws trained adapters that scored
    higher on f than the torch engine's, five draws each); a recipe or --pair-engine picks torch or auto; a bad one
    is refused when the chain is configured."""
    from recover.train import chain as ch

    over = {"data": [str(tmp_path / "a.csv")], "holdout": "none", "out": str(tmp_path / "c")}
    seen = []
    monkeypatch.setattr(ch, "build_onpolicy_pairs", lambda cfg, emb, log: seen.append(cfg) or {})
    monkeypatch.setattr(ch.Embedder, "resolve", staticmethod(lambda name: None))
    for pick, engine in ((None, "llama"), ("torch", "torch"), ("auto", "auto")):
        cfg = ch.ChainConfig.load(resolve_chain_recipe("chain-smollm2-short-cpu"), {**over, "pair_engine": pick})
        chain = ch.Chain(cfg, log=lambda *a: None)
        monkeypatch.setattr(chain, "base_gguf", lambda: "base.gguf")
        monkeypatch.setattr(chain, "_fold_mean", lambda: "the mean prompt")
        chain.stage_pairs()
        assert seen[-1].engine == engine
    with pytest.raises(ValueError, match="pair_engine 'gpu': one of auto, llama, torch"):
        ch.ChainConfig.load(resolve_chain_recipe("chain-smollm2-short-cpu"), {**over, "pair_engine": "gpu"})
