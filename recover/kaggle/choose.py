"""What the submission notebook runs when no GGUF is attached: kernels/tune's choice, if it can be served.

kernels/tune writes default_predictor.json, mean_prompt.json and embed_predictor/ fitted against
sentence-t5. An embed predictor fitted on sentence-t5 needs sentence-t5 at predict time as well (its
input embeddings): without a sentence-t5 dataset attached to the SUBMISSION, the dimension check would
send every row to the mean prompt, so it is skipped loudly and the package's own default runs instead.
"""
from __future__ import annotations

import json
from pathlib import Path


def _load(p) -> dict:
    try:
        return json.loads(Path(p).read_text())
    except (OSError, ValueError):
        return {}


def tuned_flags(choices: list[str], embeds: list[str], sentence_t5: str | None) -> tuple[list[str], str]:
    """(extra `recover predict` flags, one line saying why). choices: default_predictor.json files found
    (kernels/tune's output); embeds: embed-predictor folders, sentence-t5 fits first."""
    choice = next((c for c in map(_load, choices) if c.get("predictor")), {})
    if choice.get("predictor") == "mean":
        return ["--predictor", "mean"], "kernels/tune chose the mean prompt (its default_predictor.json)"
    if not embeds:
        return [], "no embed predictor attached: the package's default predictor"
    fitted_st5 = not _load(Path(embeds[0]) / "manifest.json").get("embedder_is_proxy", True)
    if fitted_st5 and not sentence_t5:
        return [], (f"WARNING: {embeds[0]} was fitted on sentence-t5 but no sentence-t5 dataset is attached to this "
                    "notebook (every row would get the mean prompt): the package's default predictor runs instead; "
                    "attach sentence-t5-base (RECOVER_KAGGLE_EXTRA_DATASETS=owner/slug)")
    why = "kernels/tune chose it" if choice.get("predictor") == "embed" else "attached"
    return ["--predictor", "embed", "--model", embeds[0]], f"embed predictor {embeds[0]} ({why})"
