"""`recover meanprompt optimize|bench`: load targets, split off a held-out part, search, report."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import constants as C
from ..csvio import atomic_write_json, read_table
from ..data.prompt_bank import generate_bank
from ..data.splits import is_validation
from ..runs import new_run_dir, record_run
from ..score.embedder import Embedder
from .optimize import (MeanPromptOptimizer, OptimizeConfig, load_state, plot_trajectory, vocab_from_texts,
                       vocab_from_tokenizer)


VOCAB_SOURCES = ("targets", "tokenizer")  # the targets' own words, or every piece of the embedder's tokenizer


@dataclass
class MeanPromptJob:
    targets: list[str] = field(default_factory=list)  # .txt (one per line) or CSVs with rewrite_prompt
    bank: int = 0  # add this many prompts of the project's own bank
    out: str = "build/meanprompt/mean_prompt.json"
    vocab: str = "targets"  # targets | tokenizer
    vocab_size: int = 3000
    max_targets: int = 0  # 0 = all
    embedder: str | None = None
    resume: bool = False
    search: OptimizeConfig = field(default_factory=OptimizeConfig)

    def __post_init__(self):
        if not self.targets and not self.bank:
            raise ValueError("give --targets FILE and/or --bank N")
        if self.vocab not in VOCAB_SOURCES:
            raise ValueError(f"--vocab: one of {', '.join(VOCAB_SOURCES)}")


def load_targets(paths: list[str], bank: int, seed: int) -> list[str]:
    out: list[str] = []
    for p in paths:
        if p.endswith(".csv"):
            out += [x for x in read_table(p, (C.COL_ID, C.COL_PROMPT))[C.COL_PROMPT] if x and x.strip()]
        else:
            out += [x.strip() for x in Path(p).read_text(encoding="utf-8").splitlines() if x.strip()]
    out += [b.prompt for b in generate_bank(bank, seed)] if bank else []
    return list(dict.fromkeys(out))


def split_targets(targets: list[str]) -> tuple[list[str], list[str]]:
    held = [t for t in targets if is_validation(t)]
    return [t for t in targets if not is_validation(t)], held


def run_optimize(job: MeanPromptJob, log=print) -> dict:
    emb = Embedder.resolve(job.embedder)
    log(emb.spec.describe())
    targets = load_targets(job.targets, job.bank, job.search.seed)
    if job.max_targets:
        targets = targets[: job.max_targets]
    train, held = split_targets(targets)
    vocab = vocab_from_texts(train, max_words=job.vocab_size) if job.vocab == "targets" else \
        vocab_from_tokenizer(emb.tokenizer, job.vocab_size)
    log(f"targets: {len(train)} train, {len(held)} held-out; vocabulary: {len(vocab)} words")
    run_dir = new_run_dir(Path(job.out).parent / "runs", "meanprompt")
    record_run(run_dir, job, job.search.seed)
    opt = MeanPromptOptimizer(emb, train, vocab, job.search, held, log)
    state = load_state(job.out) if job.resume and Path(job.out).is_file() else None
    if state:
        log(f"resuming from {job.out} at step {len(state.trajectory)}: {state.beam[0][0]!r}")
    state = opt.run(state, job.out)
    opt.save(state, job.out)
    plot_trajectory(state.trajectory, Path(job.out).with_suffix(".png"))
    best, score = state.beam[0]
    log(f"mean prompt ({opt.n_tokens(best)} tokens): {best!r}")
    log(f"train SCS {score:.4f}, held-out SCS {opt.heldout_score(best):.4f} ({'PROXY' if emb.spec.is_proxy else 'sentence-t5'})")
    return {"prompt": best, "train": score, "heldout": opt.heldout_score(best), "steps": len(state.trajectory)}


def run_speed_bench(job: MeanPromptJob, steps: int = 4, log=print) -> dict:
    """Pre-ranked vs exhaustive greedy-append steps on the same targets and vocabulary."""
    emb = Embedder.resolve(job.embedder)
    targets = load_targets(job.targets, job.bank, job.search.seed)[: job.max_targets or None]
    train, held = split_targets(targets)
    vocab = vocab_from_texts(train, min_count=1, max_words=job.vocab_size) if job.vocab == "targets" else \
        vocab_from_tokenizer(emb.tokenizer, job.vocab_size)
    log(f"{emb.spec.describe()}\nbench: {len(train)} targets, {len(vocab)} words ({job.vocab}), {steps} greedy append steps")
    res = {}
    for name, prerank in (("exhaustive", 0), ("pre-ranked", job.search.prerank)):
        cfg = OptimizeConfig(beam=1, steps=steps, prerank=prerank, moves=("append",), min_gain=-1.0,
                             max_tokens=job.search.max_tokens)
        opt = MeanPromptOptimizer(emb, train, vocab, cfg, held, log=lambda *a: None)
        t0 = time.perf_counter()
        st = opt.run()
        dt = time.perf_counter() - t0
        res[name] = {"s_per_step": round(dt / steps, 3), "candidates_per_s": round(opt.encoded / opt.encode_s, 1),
                     "encoded_per_step": round(opt.encoded / steps, 1), "final_score": round(st.beam[0][1], 5),
                     "heldout": round(opt.heldout_score(st.beam[0][0]), 5), "prompt": st.beam[0][0]}
        log(f"{name:>11}: {res[name]}")
    res["speedup_per_step"] = round(res["exhaustive"]["s_per_step"] / res["pre-ranked"]["s_per_step"], 2)
    log(f"speed-up per step: {res['speedup_per_step']}x; final score pre-ranked {res['pre-ranked']['final_score']} "
        f"vs exhaustive {res['exhaustive']['final_score']}")
    atomic_write_json(job.out, {"job": asdict(job), "steps": steps, **res})
    return res
