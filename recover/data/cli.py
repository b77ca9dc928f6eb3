"""`recover data`: the parser and the handler, beside the code they wire (recover/cli.py lists the verbs)."""
from __future__ import annotations

from ..score.embedder import Embedder
from .label import run_label
from .originals import import_originals, write_originals
from .pairs import PairsConfig, build_pairs, sft_rows
from .prompt_bank import build_bank
from .rewrite import RewriteConfig, merge_shards, run_rewrite
from .splits import write_holdout_split


def _data_split(a):
    print(write_holdout_split(a.data, a.out, a.holdout))


def _data(a):
    if a.stage == "originals":
        print(write_originals(a.model, a.out, a.n) if a.model else import_originals(a.files, a.out, a.min_chars, a.max_chars))
    elif a.stage == "bank":
        n = build_bank(a.out, a.n, a.seed, a.files or [], Embedder.resolve(a.embedder) if a.dedupe else None, a.dedupe)
        print(f"wrote {a.out}: {n} prompts")
    elif a.stage == "rewrite":
        run_rewrite(RewriteConfig(originals=a.originals, out_dir=a.out, model=a.model, bank_size=a.bank_size,
                                  bank_file=a.bank_file, per_original=a.per_original, max_new_tokens=a.max_new_tokens,
                                  temperature=a.temperature, n_gpu_layers=a.n_gpu_layers, shard=a.shard, limit=a.limit))
    elif a.stage == "merge":
        print(merge_shards(a.out))
    elif a.stage == "label":
        run_label(a.rewrites, a.out, Embedder.resolve(a.embedder), a.copy_threshold)
    elif a.stage == "pairs":
        build_pairs(PairsConfig(labelled=a.labelled, out=a.out, model=a.model, band_low=a.band_low,
                                band_high=a.band_high, margin=a.margin, max_text_chars=a.max_text_chars,
                                template=a.template), Embedder.resolve(a.embedder))
        sft = sft_rows(a.labelled, a.out.replace('.jsonl', '') + '.sft.jsonl', template=a.template,
                       max_text_chars=a.max_text_chars)
        print(f"SFT rows: {sft}")
    else:
        _data_split(a)


def add_cli(sub) -> None:
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
