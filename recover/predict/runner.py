"""`recover predict`: rows in, a complete submission.csv out, whatever happens on the way.

Guarantees: every input id exactly once, in input order; no blank prompt; none over the metric's
128-token cap; rows that fail, or that the time budget cannot cover, get the mean prompt; a killed
run resumes from its checkpoint.
"""
from __future__ import annotations

import hashlib
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import constants as C
from ..csvio import clean_text, read_test, write_submission
from ..meanprompt.prompt import MeanPrompt, combine, normalize_combine
from ..models.llm import LlamaConfig, LlamaPredictor
from ..models.quantize import QUANT_TYPES
from ..models.serving import serve_model_path
from ..models.shipped import llm_options, with_default_lora
from ..progress import progress
from ..runs import new_run_dir, record_run
from ..score.embedder import DTYPES, Embedder, make_cap
from .base import MeanPredictor
from .checkpoint import Checkpoint
from .embed import EmbedPredictor, default_artifact
from .ensemble import EnsemblePredictor, EnsembleSpec

PREDICTORS = ("mean", "llm", "embed", "ensemble")
ON_MODEL_ERROR = ("fail", "fallback")
# Rows per chunk: the embedder runs faster on 64-row batches than on 8 (scripts/predict_speed.sh times
# the default); an LLM chunk is a checkpoint unit and a time-budget step, so it stays small.
BATCH_SIZES = {"mean": 256, "llm": 8, "embed": 64}  # an ensemble sets its own chunk_rows (its members' largest)


def parse_duration(text: str | None) -> float | None:
    """'8h30m' / '90s' / '45m' / '3600' -> seconds."""
    if text in (None, ""):
        return None
    s = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    m = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?", s)
    if not m or not any(m.groups()):
        raise ValueError(f"--time-budget {text!r}: use e.g. 8h30m, 45m, 90s")
    h, mi, se = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + se


@dataclass
class PredictConfig:
    input: str
    output: str
    predictor: str = "mean"
    model: str | None = None
    ensemble: str | None = None  # a shipped ensemble's name or a manifest (predict/ensemble.py)
    mean_prompt: str | None = None
    combine: str | None = None  # default: "mean" for the mean predictor, "pred+mean" otherwise
    time_budget: str | None = None
    on_model_error: str = "fail"
    batch_size: int | None = None  # rows per checkpointed chunk; None: the predictor's own (BATCH_SIZES)
    seed: int = C.DEFAULT_SEED
    embedder: str | None = None
    restart: bool = False
    run_root: str | None = None
    llm: dict = field(default_factory=dict)  # LlamaConfig fields, see models/llm.py
    embed_dtype: str = "auto"  # the embed predictor's FEATURE encoding: auto = bf16 on a bf16 CPU (LOSO: no loss)
    cpu_quant: str | None = "auto"  # on CPU: "auto" (packaged model in the measured quant), "none", or a quant

    def __post_init__(self):
        if self.predictor not in PREDICTORS:
            raise ValueError(f"--predictor {self.predictor!r}: choose one of {', '.join(PREDICTORS)}")
        if self.predictor in ("llm", "embed") and not self.model:
            raise ValueError(f"--predictor {self.predictor} needs --model")
        if (self.predictor == "ensemble") != bool(self.ensemble):
            raise ValueError("--ensemble NAME and --predictor ensemble go together")
        if self.ensemble and self.model and not self.model.endswith(".gguf"):
            raise ValueError("--ensemble with --model: a base GGUF its LLM members' adapters were made on")
        if self.combine:  # None: the predictor's own choice (embed: chosen on validation), see resolve_combine
            self.combine = normalize_combine(self.combine)
            if self.predictor == "mean" and self.combine != "mean":
                raise ValueError(f"--combine {self.combine} needs a model predictor; the mean predictor only writes the mean prompt")
        if self.on_model_error not in ON_MODEL_ERROR:
            raise ValueError(f"--on-model-error: choose {' or '.join(ON_MODEL_ERROR)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError("--batch-size must be >= 1")
        if self.cpu_quant not in (None, "auto", "none"):
            if self.cpu_quant.upper() not in QUANT_TYPES:
                raise ValueError(f"--cpu-quant {self.cpu_quant!r}: auto, none or one of {', '.join(QUANT_TYPES)}")
        if self.embed_dtype not in DTYPES:
            raise ValueError(f"--embed-dtype {self.embed_dtype!r}: choose one of {', '.join(DTYPES)}")
        if self.seed == 0:
            raise ValueError("--seed 0 means 'random' to llama.cpp; pass a nonzero seed")
        parse_duration(self.time_budget)
        if self.predictor == "llm":  # a PyPI base without --lora: its shipped final fit (recorded in the run folder)
            self.llm = with_default_lora(self.model, self.llm)


def build_predictor(cfg: PredictConfig, mean: MeanPrompt, cap=None, log=print):
    if cfg.predictor == "mean":
        return MeanPredictor(mean)
    if cfg.predictor == "llm":
        return load_llm(cfg.model, cfg.llm, cfg.cpu_quant, cfg.seed, log)
    if cfg.predictor == "ensemble":
        return load_ensemble(cfg, cap, log)
    return load_embed(cfg.model, cfg.embedder, cfg.embed_dtype, log)


def load_llm(model: str, llm: dict, cpu_quant: str | None, seed: int, log=print):
    served = serve_model_path(model, llm, cpu_quant, log)
    options, lora = llm_options(llm)
    # the adapter's chosen combine and its fitted suffix, read by resolve_combine and artifact_suffix
    p = LlamaPredictor(LlamaConfig(model=served, seed=seed, **options),
                       manifest={k: lora[k] for k in ("combine", "suffix") if k in lora})
    c = p.cfg
    log(f"lora: {lora.get('name', c.lora_path)}" if c.lora_path else "lora: none (the bare base model)")
    log(f"llm engine: {c.engine}" + (f" ({c.torch_dtype}, {c.n_seq} rows a batch)" if c.engine == "torch" else
                                     f" ({c.n_seq} sequence(s), {c.n_gpu_layers} GPU layers)"))
    return p


def load_embed(model: str, embedder: str | None, dtype: str, log=print):
    p = EmbedPredictor.load(model, embedder=embedder, dtype=dtype)
    log(f"embed features: {p.embedder.dtype} on {p.embedder.device}")
    return p


def load_ensemble(cfg: PredictConfig, cap, log=print):
    """The members of the ensemble's order, each loaded as `recover predict` loads it alone."""
    spec = EnsembleSpec.load(cfg.ensemble)
    if cfg.model:  # a staged copy of the members' base (the Kaggle dataset's GGUF)
        spec.with_base(cfg.model)
    spec.check_artifacts()
    members, engines = {}, {}  # one loaded engine per (base, adapter): a prefixed member shares it
    for name in spec.order:
        m = spec.member(name)
        if m.kind == "llm":
            key = (m.model, m.lora)
            if key not in engines:
                engines[key] = load_llm(m.model, {**cfg.llm, "lora_path": m.lora}, cfg.cpu_quant, cfg.seed, log)
            base = engines[key]
            members[name] = base.with_prefixes([m.prefix] if m.prefix else list(base.cfg.prefixes))
        else:
            p = load_embed(m.model or str(default_artifact()), cfg.embedder, cfg.embed_dtype, log)
            apply_invert(p, resolve_combine(None, p), cap)  # the embed member is embed-invert when its artifact says so
            members[name] = p
    encode = None
    if spec.join != "concat":
        encode = Embedder.resolve(cfg.embedder).encode
    log(f"ensemble {spec.name}: {' + '.join(spec.order)}, join {spec.join}")
    return EnsemblePredictor(spec, members, cap, encode, log)


def resolve_combine(asked: str | None, predictor) -> str:
    if asked:
        return asked
    if predictor.name == "mean":
        return "mean"
    return normalize_combine(predictor.manifest.get("combine", "pred+mean"))


def apply_invert(predictor, mode: str, cap) -> None:
    """The ONE place that decides per-row inversion: an embed predictor whose combine is pred+invert."""
    if mode != "pred+invert" or predictor.name == "mean":  # mean: the model failed to load, rows get the fallback
        return
    if predictor.name != "embed":
        raise ValueError(f"--combine {mode}: per-row inversion edits the embed predictor's strings; "
                         f"not built for {predictor.name}")
    predictor.enable_invert(cap=cap)


def artifact_suffix(predictor, mode: str) -> str | None:
    """The suffix the artifact carries (fitted to follow its own predictions); pred+suffix needs one."""
    suffix = predictor.manifest.get("suffix")
    if mode == "pred+suffix" and suffix is None:
        raise ValueError(f"--combine pred+suffix: the {predictor.name} artifact carries no suffix "
                         "(recover meanprompt suffix --into ARTIFACT writes one)")
    return suffix


def _fingerprint(cfg: PredictConfig, mean: MeanPrompt, input_path: Path) -> dict:
    digest = hashlib.sha256(input_path.read_bytes()).hexdigest()[:16]
    return {"input_sha": digest, "predictor": cfg.predictor, "model": cfg.model, "ensemble": cfg.ensemble,
            "combine": cfg.combine,
            "mean_prompt": mean.prompt, "seed": cfg.seed, "llm": cfg.llm, "cpu_quant": cfg.cpu_quant}


def run_predict(cfg: PredictConfig, log=print) -> dict:
    """The guarded pipeline: read -> resume -> load (or fall back) -> predict in checkpointed chunks under the
    deadline -> write atomically -> record the run."""
    t0 = time.monotonic()
    budget = parse_duration(cfg.time_budget)
    # Keep a reserve for writing the file: the submission must exist before the deadline.
    deadline = t0 + budget - max(5.0, 0.02 * budget) if budget else None
    df = read_test(cfg.input)
    mean = MeanPrompt.load(cfg.mean_prompt)
    cap = make_cap(cfg.embedder, log)
    fallback = cap(mean.prompt) or mean.prompt[:_NO_TOKENIZER_CHAR_CAP]
    ckpt = Checkpoint(cfg.output, _fingerprint(cfg, mean, Path(cfg.input)))
    if cfg.restart:
        ckpt.path.unlink(missing_ok=True)
    done = ckpt.load()
    if done:
        log(f"resuming: {len(done)} of {len(df)} rows already in {ckpt.path}")
    run_dir = new_run_dir(cfg.run_root or Path(cfg.output).resolve().parent / "recover_runs", "predict")
    record_run(run_dir, cfg, cfg.seed)
    predictor, model_error = load_or_fallback(cfg, mean, cap, log)
    mode, finish = finisher(cfg, predictor, mean, cap, fallback, log)
    # rows per checkpointed chunk: asked for, else the predictor's own (the torch engine sorts a chunk by
    # length into batches, so a bigger chunk pads less), else the predictor kind's
    chunk_rows = cfg.batch_size or predictor.chunk_rows or BATCH_SIZES[predictor.name]
    todo = [i for i in range(len(df)) if df.at[i, C.COL_ID] not in done]
    ckpt.open(fresh=not done)
    timed_rows, timed_s = predict_chunks(predictor, df, todo, chunk_rows, deadline, ckpt, done,
                                         "model_error" if model_error else "ok", finish, fallback)
    ids = list(df[C.COL_ID])
    write_submission(cfg.output, ids, [done[i][C.COL_PROMPT] for i in ids])
    ckpt.close(remove=True)
    counts: dict[str, int] = {}
    for i in ids:
        counts[done[i]["status"]] = counts.get(done[i]["status"], 0) + 1
    stats = {"rows": len(ids), "status": counts, "seconds": round(time.monotonic() - t0, 2),
             "s_per_row_predicted": round(timed_s / timed_rows, 4) if timed_rows else None,
             "predictor": predictor.name, "combine": mode, "model_error": model_error,
             "output": str(cfg.output), "run_dir": str(run_dir), **served_by(predictor)}
    if predictor.name == "ensemble":  # where an ensemble's time went, member by member
        stats["member_s_per_row"] = {n: round(predictor.rate(n), 4) for n in predictor.spec.order}
        log("ensemble s/row by member: " + ", ".join(f"{n} {v}" for n, v in stats["member_s_per_row"].items()))
    record_run(run_dir, cfg, cfg.seed, {"result": stats})
    log(f"wrote {cfg.output}: {len(ids)} rows " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    check_row_failures(counts, cfg.on_model_error, log)
    return stats


def served_by(predictor) -> dict:
    """The GGUF an LLM predictor serves (a cached requant on CPU) and its engine; None for the others."""
    llm = predictor.cfg if isinstance(predictor, LlamaPredictor) else None
    return {"model_served": llm.model if llm else None, "engine": llm.engine if llm else None}


def load_or_fallback(cfg: PredictConfig, mean: MeanPrompt, cap, log=print):
    """-> (predictor, None) or, under --on-model-error fallback, (the mean predictor, the load error)."""
    try:
        return build_predictor(cfg, mean, cap, log), None
    except Exception as e:  # noqa: BLE001 - any load failure is reported in one line
        if cfg.on_model_error != "fallback":
            raise
        model_error = f"{type(e).__name__}: {e}"
        log(f"ERROR loading model ({model_error}); --on-model-error fallback: every row gets the mean prompt")
        return MeanPredictor(mean), model_error


def finisher(cfg: PredictConfig, predictor, mean: MeanPrompt, cap, fallback: str, log=print):
    """-> (the combine mode, raw answer -> submitted prompt): combined, capped, never blank."""
    mode = resolve_combine(cfg.combine, predictor)
    suffix = artifact_suffix(predictor, mode)
    apply_invert(predictor, mode, cap)
    log(f"predictor: {predictor.name}, combine: {mode}" + (f", suffix: {suffix!r}" if mode == "pred+suffix" else ""))

    def finish(raw: str | None) -> str:
        if mode == "pred+suffix" and not (raw or "").strip():
            return fallback
        out = cap(combine(raw or "", suffix if mode == "pred+suffix" else mean.prompt, mode).strip())
        return out if out.strip() else fallback
    return mode, finish


def predict_chunks(predictor, df, todo: list[int], chunk_rows: int, deadline: float | None, ckpt, done: dict,
                   ok: str, finish, fallback: str) -> tuple[int, float]:
    """Chunk by chunk, each checkpointed: a chunk the measured rate cannot finish before the deadline gets the
    fallback; one that runs long is cut inside decoding. -> (rows timed, their seconds)."""
    timed_rows, timed_s = 0, 0.0
    bar = progress(len(df), f"predict[{predictor.name}]", "row", initial=len(df) - len(todo))
    try:
        for start in range(0, len(todo), chunk_rows):
            chunk = todo[start:start + chunk_rows]
            now = time.monotonic()
            rate = timed_s / timed_rows if timed_rows else 0.0
            if deadline is not None and now + rate * len(chunk) > deadline:
                results = [(None, "budget")] * len(chunk)
            else:
                if deadline is not None and hasattr(predictor, "fit_budget"):  # an ensemble sheds its last members
                    predictor.fit_budget(len(todo) - start, deadline - now)
                if hasattr(predictor, "deadline"):  # a chunk that runs long is cut at the deadline, not after it
                    predictor.deadline = deadline
                results = _predict_chunk(predictor, df, chunk, ok)
                timed_s += time.monotonic() - now
                timed_rows += len(chunk)
            records = [{"id": df.at[i, C.COL_ID], C.COL_PROMPT: finish(raw) if status == "ok" else fallback,
                        "status": status} for i, (raw, status) in zip(chunk, results)]
            ckpt.append(records)
            done.update({r["id"]: r for r in records})
            bar.update(len(chunk))
            if deadline is not None:
                bar.set_postfix(budget_left=f"{max(0, deadline - time.monotonic()) / 60:.1f}m")
    finally:
        bar.close()
    return timed_rows, timed_s


# Above this share of attempted rows failing, the model is broken, not a row: say so, and under
# --on-model-error fail exit non-zero (the valid all-fallback file is already written).
MAX_FAILED_SHARE = 0.10


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


def _predict_chunk(predictor, df, chunk: list[int], ok: str) -> list[tuple[str | None, str]]:
    """(raw prediction, status) per row. If the batch raises, retry row by row; failures -> 'error'."""
    originals = [clean_text(df.at[i, C.COL_ORIGINAL]) for i in chunk]
    rewrites = [clean_text(df.at[i, C.COL_REWRITTEN]) for i in chunk]
    # Rows with an empty text have nothing to recover from: they get the fallback directly.
    out: list[tuple[str | None, str]] = [(None, "empty")] * len(chunk)
    live = [k for k in range(len(chunk)) if originals[k].strip() and rewrites[k].strip()]
    if not live:
        return out
    try:
        preds = predictor.predict_batch([originals[k] for k in live], [rewrites[k] for k in live])
        for k, p in zip(live, preds):
            out[k] = (p, ok) if p is not None else (None, "budget")  # None: cut off by the deadline
    except Exception as e:  # noqa: BLE001
        print(f"WARNING: batch failed ({type(e).__name__}: {e}); retrying row by row", file=sys.stderr)
        for k in live:
            try:
                p = predictor.predict_batch([originals[k]], [rewrites[k]])[0]
                out[k] = (p, ok) if p is not None else (None, "budget")
            except Exception as e2:  # noqa: BLE001
                print(f"WARNING: row {df.at[chunk[k], C.COL_ID]!r} failed ({type(e2).__name__}: {e2}); "
                      "using the mean prompt", file=sys.stderr)
                out[k] = (None, "error")
    return out
