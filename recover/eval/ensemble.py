"""Ensembles under `recover eval`'s folds (`--ensemble CANDIDATES`): every member alone, and joins of them.

    m:NAME       one member's answers (blank: the fold's mean prompt, as `recover predict` falls back)
    ens          concat in the order a greedy search chose on the pool (predict/join.py)
    ens:concat   concat in the candidates' own order, fitted on nothing: the pool that fits `ens` is other
                 sources' rows, unlike the test-like fold (an order fitted on b, d, e dropped the embed member
                 that helps on f-like rows), so the listed order is scored as it is
    ens:mbr      per row the member answer closest to the others
    ens:invert   ens, edited toward the mean of the members' embeddings (the fold's prompt words)

Members: an LLM member is its LOSO twin (the manifest's `loso`), scored only on folds whose source that twin
never trained on (eval/llm_rows.py: its manifest's training data); its answers are cached per row, so a refit of
a join costs seconds. The embed member is the fold's own embed-invert fit.

The join of fold F is fitted on the POOL: the scored rows (the same seeded sample `--val-rows` scores) of the
other sources every LLM member held out (for F = gemma_rewrites_b with twins trained on a + c: d and e). On a
pool source P the embed member is refitted without F and without P, so neither the join nor any answer it
was fitted on saw a label of F or of the row it answers.
"""
from __future__ import annotations

import numpy as np

from .. import constants as C
from ..meanprompt.optimize import vocab_from_texts
from ..predict.ensemble import EnsembleSpec
from ..predict.invert import Inverter
from ..predict.join import join_strings, mbr_pick, mean_target
from ..score.metric import scs_rows
from .llm_rows import FoldLLM

ENS_METHODS = ("ens", "ens:concat", "ens:mbr", "ens:invert")
MIN_GAIN = 1e-4  # a member joins the order only if the pool's mean SCS rises by at least this


def member_methods(spec: EnsembleSpec) -> list[str]:
    return [f"m:{m.name}" for m in spec.members]


def fit_order(answers: dict[str, list[str]], truth: np.ndarray, encode, cap, separator=" ", suffix="",
              fallback: str = "") -> tuple[list[str], dict]:
    """Greedy: the best single member, then the member and position that raise the pool's mean SCS most,
    until nothing gains MIN_GAIN. -> (order, the pool score of each accepted step)."""
    n = len(truth)

    def score(order):
        joined = [join_strings([answers[m][i] for m in order], separator, suffix, cap) or fallback for i in range(n)]
        return float(scs_rows(encode(joined), truth).mean())

    singles = {m: score([m]) for m in answers}
    order = [max(singles, key=singles.get)]
    steps = [{"order": list(order), "pool_scs": round(singles[order[0]], 5)}]
    while len(order) < len(answers):
        tries = {(m, k): score(order[:k] + [m] + order[k:]) for m in answers if m not in order
                 for k in range(len(order) + 1)}
        (m, k), best = max(tries.items(), key=lambda kv: kv[1])
        if best - steps[-1]["pool_scs"] < MIN_GAIN:
            break
        order.insert(k, m)
        steps.append({"order": list(order), "pool_scs": round(best, 5)})
    return order, {"singles": {m: round(v, 5) for m, v in singles.items()}, "steps": steps}


class FoldEnsemble:
    """Owned by eval's FoldMethods: members' answers per fold, the join fitted on the pool, predictions."""

    def __init__(self, spec: EnsembleSpec, fm, all_rows, fit_embed, val_ids: dict[str, set], log=print):
        self.spec, self.fm, self.rows, self.fit_embed, self.val_ids, self.log = spec, fm, all_rows, fit_embed, val_ids, log
        cfg = fm.cfg
        self.llms = {m.name: FoldLLM(m.loso, cfg.cache_dir, cfg.settings.seed, log=log, prefix=m.prefix,
                                       torch_dtype=cfg.torch_dtype, model=m.model)
                     for m in spec.members if m.kind == "llm"}
        self.embeds = [m.name for m in spec.members if m.kind == "embed"]
        self.oof: dict = {}  # source -> (its scored rows, the members' out-of-fold answers, the fold's mean prompt)

    # --- which folds ---------------------------------------------------------------------------------
    def skip_reason(self, name: str, source: str) -> str | None:
        names = [name[2:]] if name.startswith("m:") else list(self.llms)
        for n in names:
            if n in self.llms and not self.llms[n].held_out(source):
                return f"member {n} ({self.llms[n].name}) trained on {source}"
        return None

    def held_out_by_all(self, source: str) -> bool:
        return all(llm.held_out(source) for llm in self.llms.values())

    # --- answers -------------------------------------------------------------------------------------
    def answers(self, rows, tr, fitted, exclude: set[str], names=None) -> dict[str, list[str]]:
        """Each member's (of `names`; default all) raw answers ("" = none) for `rows`; the embed member from
        `fitted` = (embed predictor, its training rows), inverted with those rows' prompt words."""
        names = list(names) if names is not None else [m.name for m in self.spec.members]
        out = {}
        for name, llm in self.llms.items():
            if name not in names:
                continue
            got = ["" for _ in range(len(rows.df))]
            for src, idx in rows.df.groupby(C.COL_SOURCE).indices.items():
                for j, raw in zip(idx, llm.rows(src, rows.df.iloc[idx])["raw"]):
                    got[j] = raw.strip() if isinstance(raw, str) else ""
            out[name] = got
        if any(n in names for n in self.embeds):
            pred, fit_rows = fitted
            pe = pred.predict_from_embeddings(rows.eo, rows.er)
            words = vocab_from_texts([p for p in fit_rows.df[C.COL_PROMPT] if p not in exclude],
                                     max_words=self.fm.cfg.settings.vocab_size)
            inv = Inverter(self.fm.fast.encode, words, self.fm.cache.encode(words), self.fm.cfg.settings.invert,
                           cap=self.fm.cap)
            edited, _ = inv.rows(pred.decode(pe), pe, None)
            for name in self.embeds:
                if name in names:
                    out[name] = edited
        return out

    def pool(self, tr, fold_source: str):
        """The fold's training rows that are the scored sample of another source every LLM member held out."""
        df = tr.df
        keep = [i for i, (s, rid) in enumerate(zip(df[C.COL_SOURCE], df[C.COL_ID].astype(str)))
                if s != fold_source and self.held_out_by_all(s) and rid in self.val_ids.get(s, set()) and tr.live[i]]
        return tr.take(keep) if keep else None

    def pool_answers(self, tr, pool, exclude: set[str]) -> dict[str, list[str]]:
        """Per pool source P, the members' answers with the embed member refitted without P (nor the fold)."""
        out: dict[str, list[str]] = {}
        for src, idx in pool.df.groupby(C.COL_SOURCE).indices.items():
            inner = tr.take(np.flatnonzero(tr.df[C.COL_SOURCE].to_numpy() != src))
            fitted = (self.fit_embed(inner), inner) if self.embeds else None
            for m, got in self.answers(pool.take(idx), inner, fitted, exclude).items():
                col = out.setdefault(m, [""] * len(pool.df))
                for j, x in zip(idx, got):
                    col[j] = x
        return out

    # --- the methods ---------------------------------------------------------------------------------
    def predict(self, name: str, tr, va, mean: str, embed_fit, exclude: set[str], state: dict):
        """-> (predictions for va's rows, params). `state` is the fold's cache (members' answers, the fit)."""
        # only the members this method uses: a member trained on the fold is never asked (skip_reason)
        need = [name[2:]] if name.startswith("m:") else [m.name for m in self.spec.members]
        got = state.setdefault("va", {})
        missing = [n for n in need if n not in got]
        if missing:
            got.update(self.answers(va, tr, (embed_fit, tr), exclude, missing))
        if not name.startswith("m:"):
            self.oof[va.df[C.COL_SOURCE].iloc[0]] = (va, got, mean)  # what --ship-ensemble refits on
        ans = {n: got[n] for n in need}
        if name.startswith("m:"):
            return [a or mean for a in ans[name[2:]]], {"member": name[2:]}
        if name == "ens:concat":
            return self._concat(ans, list(self.spec.order), mean), {"order": list(self.spec.order)}
        if name == "ens:mbr":  # per row, among every member: no order, so no pool (other sources' rows) to fit one on
            names = list(ans)
            E = np.stack([self.fm.cache.encode([a or mean for a in ans[n]]) for n in names])
            pick = mbr_pick(E)
            return [self.fm.cap(ans[names[k]][i] or mean) for i, k in enumerate(pick)], {"members": names}
        if "order" not in state:
            state.update(self.fit(tr, va, mean, exclude))
        s = self.spec
        if name == "ens":
            return self._concat(ans, state["order"], mean), {"order": state["order"], **state["fit"]}
        if name == "ens:invert":
            # the target: the mean embedding of the joined members, as `recover predict`'s join invert computes it
            E = np.stack([self.fm.cache.encode([a or mean for a in ans[n]]) for n in state["order"]])
            words = vocab_from_texts([p for p in tr.df[C.COL_PROMPT] if p not in exclude],
                                     max_words=self.fm.cfg.settings.vocab_size)
            inv = Inverter(self.fm.fast.encode, words, self.fm.cache.encode(words), self.fm.cfg.settings.invert,
                           cap=self.fm.cap)
            out, _ = inv.rows(self._concat(ans, state["order"], mean), mean_target(E), None)
            return [self.fm.cap(x) for x in out], {"order": state["order"], "separator": s.separator}
        raise ValueError(f"unknown ensemble method {name}")

    def _concat(self, ans, order, mean: str) -> list[str]:
        s = self.spec
        n = len(next(iter(ans.values())))
        return [join_strings([ans[m][i] for m in order], s.separator, s.suffix, self.fm.cap) or mean for i in range(n)]

    def fit(self, tr, va, mean: str, exclude: set[str]) -> dict:
        source = va.df[C.COL_SOURCE].iloc[0]
        pool = self.pool(tr, source)
        if pool is None:
            raise ValueError(f"{source}: no pool to fit the join on (no other source that every member held out "
                             "has scored rows); pass more --data or members trained on fewer sources")
        ans = self.pool_answers(tr, pool, exclude)
        order, info = fit_order(ans, pool.ep, self.fm.cache.encode, self.fm.cap, self.spec.separator,
                                self.spec.suffix, fallback=mean)
        by = {str(k): int(v) for k, v in pool.df[C.COL_SOURCE].value_counts().items()}
        self.log(f"    join fitted on {len(pool.df)} pool rows {by}: order {' + '.join(order)} ({info['steps'][-1]})")
        return {"order": order, "fit": {"pool_rows": len(pool.df), "pool_by_source": by, **info}}
