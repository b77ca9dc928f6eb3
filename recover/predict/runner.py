"""`recover predict`: rows in, a complete submission.csv out, whatever happens on the way.

Guarantees: every input id exactly once, in input order; no blank prompt; none over the metric's
128-token cap; rows that fail, or that the time budget cannot cover, get the mean prompt; a killed
run resumes from its checkpoint.

resolve -> load -> run. Resolved before this runs: defaults.predict_config turns flags, a preset and the shipped
defaults into the PredictConfig (config.py), read here and never written. load.py loads the predictor it names
and its finisher (finish.py); what this machine serves is looked up there, inside the time budget and under
--on-model-error fallback. This file reads the test and runs the chunks (chunks.py); what the run writes (its
checkpoint, the submission, the run record) is output.py's.
"""
from __future__ import annotations

import time

from .. import constants as C
from ..csvio import read_test
from ..meanprompt.prompt import MeanPrompt
from ..score.embedder import _NO_TOKENIZER_CHAR_CAP, make_cap
from .chunks import check_row_failures, predict_chunks
from .config import PredictConfig
from .load import load
from .output import RunOutput


def run_predict(cfg: PredictConfig, log=print) -> dict:
    """The guarded pipeline: read -> resume -> load (or fall back) -> predict in checkpointed chunks under the
    deadline -> write atomically and record the run."""
    t0 = time.monotonic()
    df = read_test(cfg.input)
    mean = MeanPrompt.load(cfg.mean_prompt)
    deadline = cfg.deadline(t0)
    fingerprint = cfg.fingerprint(mean.prompt)
    cap = make_cap(cfg.embedder, log)
    fallback = cap(mean.prompt) or mean.prompt[:_NO_TOKENIZER_CHAR_CAP]
    out = RunOutput(cfg, fingerprint)
    if out.done:
        log(f"resuming: {len(out.done)} of {len(df)} rows already in {out.checkpoint.path}")
    loaded = load(cfg, mean, cap, fallback, log)
    predictor = loaded.predictor
    todo = [i for i in range(len(df)) if df.at[i, C.COL_ID] not in out.done]
    timed_rows, timed_s = predict_chunks(predictor, df, todo, cfg.batch_size, deadline, out,
                                         "model_error" if loaded.model_error else "ok", loaded.finish, fallback)
    ids = list(df[C.COL_ID])
    counts: dict[str, int] = {}
    for i in ids:
        counts[out.done[i]["status"]] = counts.get(out.done[i]["status"], 0) + 1
    stats = {"rows": len(ids), "status": counts, "seconds": round(time.monotonic() - t0, 2),
             "s_per_row_predicted": round(timed_s / timed_rows, 4) if timed_rows else None,
             "predictor": predictor.name, "combine": loaded.combine, "model_error": loaded.model_error,
             "output": str(cfg.output), "run_dir": str(out.run_dir), **loaded.served}
    if predictor.name == "ensemble":  # where an ensemble's time went, member by member
        stats["member_s_per_row"] = {n: round(predictor.rate(n), 4) for n in predictor.spec.order}
        log("ensemble s/row by member: " + ", ".join(f"{n} {v}" for n, v in stats["member_s_per_row"].items()))
    out.finish(ids, stats)
    log(f"wrote {cfg.output}: {len(ids)} rows " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    check_row_failures(counts, cfg.on_model_error, log)
    return stats
