"""`recover bench --train`: the chain's SFT and DPO steps on the same rows, per training setting, each in its own
process: tokens/s, the fraction of this CPU's GEMM limit, peak memory. The fastest ELIGIBLE setting (one whose
adapter held its held-out SCS in a chain A/B) is written to this machine's cache (`train-choice-<cpu key>.json`),
which `recover train` (and so the chain) applies on CPU recipes.

Settings (the chain's recipe, smollm2-cpu, with the chain's batch sizes and max_length):
  trl-defaults  what plain trl/peft do unless told: gradient checkpointing on, bf16 autocast, random batches,
                glibc's allocator as it comes (the chain's training keeps freed memory: recover/cpus.py)
  recipe        the recipe as shipped: fp32, no checkpointing, random batches; on a CPU the LM head scores only
                labelled positions and a DPO pair's prompt runs once (train/cpu_logps.py: the same arithmetic)
  trl-forward   the recipe with trl's own forward on a CPU (the LM head over every position, each DPO prompt twice):
                measured, never a candidate, so that each run shows what the recipe's forward saves
  fast          bf16 autocast where the CPU has bf16 hardware, no checkpointing, length-bucketed batches (shuffled)
Work per token: LoRA trains no base weight, so a step is ~4 x params FLOPs a token (forward + the input
gradients; checkpointing recomputes a forward on top, not counted), DPO adds the frozen reference's forward
(6 x params). tokens/s counts trl's tokens (a DPO prompt twice) for every setting, so the rates compare; the fraction
of the limit counts the tokens the setting ran (a shared prompt once). Limit: the GEMM limit of the precision the
setting computes in (`bench/limits.py`).
"""
from __future__ import annotations

import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

from .. import constants as C
from ..cpus import cpu_has_fast_bf16, usable_cpus
from ..csvio import atomic_write_json, read_table
from ..models.cpu_choice import cache_path, read_cpu_features
from ..models.llm import LlamaConfig, LlamaPredictor
from ..models.prompting import build_messages, load_template
from .limits import measure_limits

SETTINGS = {
    "trl-defaults": ["--target_hardware", "any", "--gradient_checkpointing", "true", "--bf16", "true",
                     "--train_sampling_strategy", "random", "--keep_freed_memory", "false"],
    "recipe": ["--bf16", "false", "--gradient_checkpointing", "false", "--train_sampling_strategy", "random"],
    "fast": ["--bf16", "true", "--gradient_checkpointing", "false", "--train_sampling_strategy", "group_by_length"],
    "trl-forward": ["--bf16", "false", "--gradient_checkpointing", "false", "--train_sampling_strategy", "random",
                    "--labelled_positions_only", "false", "--share_pair_prompts", "false"],
}
# plain trl's defaults are the yardstick, never a candidate: timed on one optimizer step's rows (tokens/s is per token,
# so the rates compare); the other settings run every row
ONE_STEP_SETTINGS = ("trl-defaults",)
# Settings the chain may be switched to: a setting that changes the arithmetic (bf16, batch order) changes the adapter,
# so it is eligible only once a LOSO chain A/B (the same chain with it vs the recipe, paired proxy SCS on the held-out
# fold) held 0. Measured here (2-core AMX Xeon, chain-smollm2-cpu on a, b, c, b held out, 300 rows): "fast" with
# longest-first buckets -0.0105 [-0.0178, -0.0036] on b, -0.0069 [-0.0174, +0.0026] on f; with its buckets shuffled
# (the setting as it is now, rerun the next day, both adapters served by the same engine) -0.0091 [-0.0167, -0.0020]
# on b, -0.0038 [-0.0162, +0.0087] on f (`make experiment NAME=chain_ab`), and its DPO LoRA GGUF failed the export check (residual 3.13 > 3.0 on one
# prompt): not eligible. See docs/benchmarks.md, "Training steps and the chain".
ELIGIBLE = ("recipe",)
# the knobs `recover train` takes from the measured choice (and never over a flag given on its command line)
KNOBS = ("--bf16", "--gradient_checkpointing", "--train_sampling_strategy")
STAGE_ARGS = {"sft": ["--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1"],
              "dpo": ["--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1",
                      "--loss_type", "sigmoid", "sft", "--loss_weights", "1.0", "1.0", "--beta", "0.1"]}


def settings_here() -> dict[str, list[str]]:
    if cpu_has_fast_bf16():
        return SETTINGS
    # no bf16 hardware: bf16 autocast is emulated (and a CPU recipe refuses it)
    return {k: [("false" if a == "true" and v[i - 1] == "--bf16" else a) for i, a in enumerate(v)]
            for k, v in SETTINGS.items() if k != "trl-defaults"}


def write_rows(data: str, rows: int, model: str, n_ctx: int, out: Path) -> tuple[Path, Path]:
    """SFT rows as the chain writes them (prompt/completion, texts cut token-exactly to n_ctx), and DPO pairs of
    the same prompts (chosen: the true prompt; rejected: the next row's): same rows for every setting."""
    df = read_table(data, (C.COL_ORIGINAL, C.COL_REWRITTEN, C.COL_PROMPT)).head(rows)
    p = LlamaPredictor(LlamaConfig(model=model, engine="llama", n_ctx=n_ctx))
    tpl, sft, dpo = load_template(None), [], []
    truths = list(df[C.COL_PROMPT])
    for i, (o, r, t) in enumerate(zip(df[C.COL_ORIGINAL], df[C.COL_REWRITTEN], truths)):
        msgs = build_messages(tpl, *p.fit_row(o, r))
        sft.append({"prompt": msgs, "completion": [{"role": "assistant", "content": t}]})
        dpo.append({"prompt": msgs, "chosen": [{"role": "assistant", "content": t}],
                    "rejected": [{"role": "assistant", "content": truths[(i + 1) % len(truths)]}]})
    p.engine.close()
    files = out / "sft.jsonl", out / "dpo.jsonl"
    for f, lines in zip(files, (sft, dpo)):
        f.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    return files


def _run_stage(stage: str, train_file: str, args: list[str], out: str, n_ctx: int) -> dict:
    """One training run in this (child) process -> tokens, seconds, peak RSS."""
    import torch  # torch and train.run (it imports transformers): heavy, optional extras

    from ..train.run import train

    t0 = time.perf_counter()
    adapter = train(stage, "smollm2-cpu", ["--train_file", train_file, "--output_dir", out, "--max_length",
                                           str(n_ctx + 64), "--num_train_epochs", "1", "--logging_steps", "1",
                                           *STAGE_ARGS[stage], *args], log=lambda *_: None, measured=False)
    m = json.loads((Path(adapter) / "metrics.json").read_text())
    return {"seconds": m["seconds"], "wall_s": round(time.perf_counter() - t0, 1), "tokens": m.get("tokens"),
            "tokens_computed": m.get("tokens_computed"),
            "n_params": m.get("n_params"),
            "rows": m["rows"], "threads": torch.get_num_threads(),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _child(q, *args):
    try:
        q.put(_run_stage(*args))
    except Exception as e:  # noqa: BLE001 - reported in the table; the other settings still run
        q.put({"error": f"{type(e).__name__}: {e}"})


def run_setting(stage: str, train_file: Path, name: str, args: list[str], out: Path, n_ctx: int) -> dict:
    if name in ONE_STEP_SETTINGS:
        args = [*args, "--max_train_rows", STAGE_ARGS[stage][1]]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q, stage, str(train_file), args, str(out / f"{stage}-{name}"), n_ctx))
    p.start()
    res = q.get()
    p.join()
    return res


def rates(r: dict, stage: str, n_params: int, limits: dict, bf16: bool) -> dict:
    """tokens/s and the fraction of the GEMM limit of the precision the setting computes in."""
    if "error" in r or not r.get("tokens"):
        return r
    tok_s = r["tokens"] / r["seconds"]
    flops = (6 if stage == "dpo" else 4) * n_params * (r.get("tokens_computed") or r["tokens"]) / r["seconds"]
    lim = limits["gemm_flop_s"]["bfloat16" if bf16 else "float32"]
    return {**r, "tokens_s": round(tok_s, 1), "flop_s": round(flops), "of_limit": round(flops / lim, 3)}


def run_train_bench(cfg, log=print) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="train-bench-", dir=out))
    sft_file, dpo_file = write_rows(cfg.data, cfg.rows, cfg.model, C.TRAIN_BENCH_N_CTX, work)
    limits = measure_limits(usable_cpus())
    table = {}
    for stage, f in (("sft", sft_file), ("dpo", dpo_file)):
        for name, args in settings_here().items():
            log(f"bench --train: {stage} {name} on {cfg.rows} rows ...")
            r = run_setting(stage, f, name, args, work, C.TRAIN_BENCH_N_CTX)
            table.setdefault(stage, {})[name] = rates(r, stage, r.get("n_params", 0), limits,
                                                      args[args.index("--bf16") + 1] == "true")
    choice = choose_training(table, settings_here())
    report = {"rows": cfg.rows, "data": Path(cfg.data).name, "limits": limits, "stages": table, "choice": choice,
              "features": read_cpu_features().describe(), "threads": usable_cpus()}
    atomic_write_json(out / "train_bench.json", report)
    write_train_choice(choice, log)
    log(format_train(report))
    return report


def choose_training(table: dict, settings: dict, eligible: tuple[str, ...] = ELIGIBLE) -> dict:
    """The fastest ELIGIBLE setting over SFT and DPO together (time for one row of each), its knobs; the others are
    measured and reported, never applied."""
    def cost(name):
        rs = [table[s][name] for s in table]
        return sum(r["seconds"] / max(r["rows"], 1) for r in rs) if all("error" not in r for r in rs) else float("inf")
    ok = [n for n in settings if n in eligible and cost(n) < float("inf")]
    if not ok:
        raise RuntimeError("bench --train: no setting ran: " + json.dumps({s: t for s, t in table.items()}))
    best = min(ok, key=cost)
    args = settings[best]
    return {"setting": best, "args": [a for i, a in enumerate(args) if a in KNOBS or (i and args[i - 1] in KNOBS)]}


def write_train_choice(choice: dict, log=print) -> Path:
    feat = read_cpu_features()
    f = cache_path(feat).with_name(f"{C.TRAIN_CHOICE_PREFIX}{feat.key}.json")
    atomic_write_json(f, {"format_version": C.CPU_CHOICE_FORMAT_VERSION, **choice, "features": feat.describe()})
    log(f"training settings for this machine: {choice['setting']} {' '.join(choice['args'])} -> {f}")
    return f


def format_train(r: dict) -> str:
    lines = [f"MEASURED on this machine: training steps on {r['rows']} rows of {r['data']} ({r['threads']} threads; "
             f"GEMM limits bf16 {r['limits']['gemm_flop_s']['bfloat16'] / 1e12:.2f}, fp32 "
             f"{r['limits']['gemm_flop_s']['float32'] / 1e12:.2f} TFLOP/s)"]
    lines.append(f"{'stage/setting':22}{'rows':>6}{'s':>8}{'tokens/s':>10}{'of limit':>10}{'peak MB':>10}")
    for stage, t in r["stages"].items():
        for name, x in t.items():
            if "error" in x:
                lines.append(f"{stage + ' ' + name:22}  {x['error'][:80]}")
                continue
            lines.append(f"{stage + ' ' + name:22}{x['rows']:>6}{x['seconds']:>8}{x.get('tokens_s', '-'):>10}"
                         f"{100 * x.get('of_limit', 0):>9.1f}%{x['peak_rss_mb']:>10}")
    lines.append(f"chosen: {r['choice']['setting']} ({' '.join(r['choice']['args'])}); eligible: {', '.join(ELIGIBLE)} "
                 "(a setting is eligible once a chain A/B held 0 on the held-out fold: bench/train.py ELIGIBLE)")
    return "\n".join(lines)
