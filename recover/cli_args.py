"""Argument groups and their translation into config objects, shared by several subcommands."""
from __future__ import annotations

import argparse


def _named_files(items) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ValueError(f"{item!r}: use NAME=path (e.g. --pred llm=submission.csv, --reference old=mean_prompt.json)")
        out[name.strip()] = path.strip()
    return out


def _fit_settings(a):
    from .eval.methods import FitSettings

    weights = {}
    for item in a.source_weight or []:
        name, _, w = item.partition("=")
        try:
            weights[name] = float(w)
        except ValueError:
            raise ValueError(f"--source-weight {item!r}: use SOURCE=WEIGHT, e.g. gpt35_rewrites_c=0.25") from None
    from .data.prompt_bank import load_prompt_file

    def prompts(files):
        return [b.prompt for f in files or [] for b in load_prompt_file(f)]

    from .meanprompt.probes import load_probes

    extra, bank = prompts(a.targets_file), prompts(a.bank_file)
    return FitSettings(source_weights=weights, extra_targets=extra, extra_weight=a.targets_weight if extra else 0.0,
                       bank_size=a.bank_size, extra_bank=bank, vocab=a.vocab,
                       probes=load_probes(a.probes) if a.probes else [], probe_groups=a.probe_groups)


def _llm_options(a) -> dict:
    return {k: v for k, v in {
        "template": a.template, "prefixes": a.prefix, "n_ctx": a.n_ctx, "max_new_tokens": a.max_new_tokens,
        "n_gpu_layers": a.n_gpu_layers, "split_mode": a.split_mode, "tensor_split": a.tensor_split,
        "flash_attn": a.flash_attn, "offload_kqv": a.offload_kqv, "n_batch": a.n_batch, "n_threads": a.n_threads,
        "n_seq": a.n_seq, "lora_path": a.lora}.items() if v is not None}


def on_off(text: str) -> bool:
    """A switch: on/off, true/false, yes/no, 1/0; anything else is an error, not a silent 'off'."""
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r}: use on or off")


def _add_fit_args(s):
    g = s.add_argument_group("what a fit may use besides its training rows")
    g.add_argument("--source-weight", action="append", help="SOURCE=W: weight of a source's rows (default 1)")
    g.add_argument("--targets-file", action="append", help="extra mean-prompt targets, one prompt a line (no texts)")
    g.add_argument("--targets-weight", type=float, default=0.5, help="their total weight relative to the training rows")
    g.add_argument("--bank-size", type=int, default=2000, help="project bank prompts the embed predictor decodes to")
    g.add_argument("--bank-file", action="append", help="more decoding prompts, one a line (they ship in the artifact)")
    g.add_argument("--vocab", default="words", choices=["words", "words+pieces"],
                   help="mean-prompt search vocabulary: the targets' words, or also every piece of the embedder's tokenizer")
    g.add_argument("--probes", help="CSV prompt,score: leaderboard probes; target weights are matched to them")
    g.add_argument("--probe-groups", type=int, default=24, help="target clusters whose weights the probes fit")


def _add_llm_args(s):
    g = s.add_argument_group("llama.cpp (see README: Kaggle T4 x2)")
    g.add_argument("--template", help="instruction template: a built-in name (recover, short) or a .txt file with {original} and {rewritten}")
    g.add_argument("--prefix", action="append", help="force the answer to open with this; repeat to concatenate runs")
    g.add_argument("--n-ctx", type=int)
    g.add_argument("--max-new-tokens", type=int)
    g.add_argument("--n-seq", type=int, help="rows decoded together in one llama.cpp batch")
    g.add_argument("--n-gpu-layers", type=int)
    g.add_argument("--split-mode", type=int, help="0 none, 1 layer, 2 row (llama.cpp LLAMA_SPLIT_MODE_*)")
    g.add_argument("--tensor-split", type=lambda s: [float(x) for x in s.split(",")], help="e.g. 0.5,0.5")
    g.add_argument("--flash-attn", type=on_off, metavar="on|off")
    g.add_argument("--offload-kqv", type=on_off, metavar="on|off")
    g.add_argument("--n-batch", type=int)
    g.add_argument("--n-threads", type=int)
    g.add_argument("--lora", help="unmerged LoRA adapter GGUF (recover export --lora-gguf) applied at load")
