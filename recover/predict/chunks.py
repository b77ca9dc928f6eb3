"""Rows through a loaded predictor, chunk by chunk under the deadline, each chunk checkpointed; a row that
fails, or that the budget cannot cover, gets the fallback."""
from __future__ import annotations

import sys
import time

from .. import constants as C
from ..progress import progress

# Rows per chunk: the embedder runs faster on 64-row batches than on 8 (scripts/predict_speed.sh times
# the default); an LLM chunk is a checkpoint unit and a time-budget step, so it stays small.
BATCH_SIZES = {"mean": 256, "llm": 8, "embed": 64}  # an ensemble sets its own chunk_rows (its members' largest)
# Above this share of attempted rows failing, the model is broken, not a row: say so, and under
# --on-model-error fail exit non-zero (the valid all-fallback file is already written).
MAX_FAILED_SHARE = 0.10


def chunk_rows(asked: int | None, predictor) -> int:
    """Rows per checkpointed chunk: asked for (--batch-size), else the predictor's own (the torch engine sorts a chunk by
    length into batches, so a bigger chunk pads less), else the predictor kind's."""
    return asked or predictor.chunk_rows or BATCH_SIZES[predictor.name]


def predict_chunks(predictor, df, todo: list[int], batch_size: int | None, deadline: float | None, out,
                   ok: str, finish, fallback: str) -> tuple[int, float]:
    """Chunk by chunk (chunk_rows), each handed to `out` (output.RunOutput: checkpointed) as it finishes: a chunk the
    measured rate cannot finish before the deadline gets the fallback; one that runs long is cut inside decoding.
    -> (rows timed, their seconds)."""
    rows = chunk_rows(batch_size, predictor)
    timed_rows, timed_s = 0, 0.0
    bar = progress(len(df), f"predict[{predictor.name}]", "row", initial=len(df) - len(todo))
    try:
        for start in range(0, len(todo), rows):
            chunk = todo[start:start + rows]
            now = time.monotonic()
            rate = timed_s / timed_rows if timed_rows else 0.0
            if deadline is not None and now + rate * len(chunk) > deadline:
                results = [(None, "budget")] * len(chunk)
            else:
                if deadline is not None:  # an ensemble sheds its last members; one model has nothing to shed
                    predictor.fit_budget(len(todo) - start, deadline - now)
                results = _predict_chunk(predictor, df, chunk, ok, deadline)
                timed_s += time.monotonic() - now
                timed_rows += len(chunk)
            records = [{"id": df.at[i, C.COL_ID], C.COL_PROMPT: finish(raw) if status == "ok" else fallback,
                        "status": status} for i, (raw, status) in zip(chunk, results)]
            out.append(records)
            bar.update(len(chunk))
            if deadline is not None:
                bar.set_postfix(budget_left=f"{max(0, deadline - time.monotonic()) / 60:.1f}m")
    finally:
        bar.close()
    return timed_rows, timed_s


def _predict_chunk(predictor, df, chunk: list[int], ok: str,
                   deadline: float | None) -> list[tuple[str | None, str]]:
    """(raw prediction, status) per row. If the batch raises, retry row by row; failures -> 'error'.
    A chunk that runs long is cut at the deadline, not after it: its unstarted rows come back None."""
    originals = [df.at[i, C.COL_ORIGINAL] for i in chunk]  # cleaned by read_test
    rewrites = [df.at[i, C.COL_REWRITTEN] for i in chunk]
    # Rows with an empty text have nothing to recover from: they get the fallback directly.
    out: list[tuple[str | None, str]] = [(None, "empty")] * len(chunk)
    live = [k for k in range(len(chunk)) if originals[k].strip() and rewrites[k].strip()]
    if not live:
        return out
    try:
        preds = predictor.predict_batch([originals[k] for k in live], [rewrites[k] for k in live], deadline=deadline)
        for k, p in zip(live, preds):
            out[k] = (p, ok) if p is not None else (None, "budget")  # None: cut off by the deadline
    except Exception as e:  # noqa: BLE001
        print(f"WARNING: batch failed ({type(e).__name__}: {e}); retrying row by row", file=sys.stderr)
        for k in live:
            try:
                p = predictor.predict_batch([originals[k]], [rewrites[k]], deadline=deadline)[0]
                out[k] = (p, ok) if p is not None else (None, "budget")
            except Exception as e2:  # noqa: BLE001
                print(f"WARNING: row {df.at[chunk[k], C.COL_ID]!r} failed ({type(e2).__name__}: {e2}); "
                      "using the mean prompt", file=sys.stderr)
                out[k] = (None, "error")
    return out


def check_row_failures(counts: dict[str, int], on_model_error: str, log=print) -> None:
    failed = counts.get("error", 0)
    attempted = failed + counts.get("ok", 0)
    if not attempted or failed / attempted <= MAX_FAILED_SHARE:
        return
    msg = (f"{failed} of {attempted} rows failed in the model ({100 * failed / attempted:.0f}% > "
           f"{100 * MAX_FAILED_SHARE:.0f}%); they got the mean prompt")
    if on_model_error == "fail":
        raise RuntimeError(msg + "; the file is written and valid, exiting non-zero (--on-model-error fallback accepts it)")
    log(f"ERROR: {msg} (--on-model-error fallback: accepted)")
