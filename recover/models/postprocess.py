"""Turn a chatty LLM answer into the bare rewrite instruction.

Small models (and Gemma) wrap the answer: "Sure, the prompt was: "Rewrite ..."", markdown bold,
bullets, a trailing "Explanation: ...". We keep the instruction only; '' means unusable, and the
runner then uses the mean prompt.
"""
from __future__ import annotations

import re

# "Sure! Here's the most likely prompt used:" -- a lead-in of up to ~100 chars ending in a colon
# that talks about the prompt/instruction; everything through the colon goes.
_PREAMBLE = re.compile(
    r"^\s*(?:(?:sure|certainly|okay|ok|of course|absolutely)\b[,!.]?\s*)?"
    r"[^:\n]{0,80}\b(?:prompt|instruction|answer)\b[^:\n]{0,40}:\s*",
    re.IGNORECASE,
)
_CHATTY = re.compile(r"^\s*(?:sure|certainly|okay|ok|of course|absolutely)\b[,!.]?\s*", re.IGNORECASE)
_LABEL = re.compile(r"^\s*(?:rewrite[_ ])?(?:prompt|instruction)\s*:\s*", re.IGNORECASE)
_TRAILER = re.compile(
    r"\n\s*(?:explanation|note|this (?:prompt|instruction)|the (?:original|rewritten) text)\b.*$", re.IGNORECASE | re.DOTALL
)
_QUOTES = "\"'“”‘’`"
_JUNK_ONLY = re.compile(r"^[\W_]*$")


def clean_llm_output(text: str, prefix: str = "") -> str:
    """Extract the instruction. `prefix` is the forced opening, already part of `text`."""
    t = (text or "").replace("\r", "")
    t = t.replace("**", "").replace("__", "")
    t = _TRAILER.sub("", t)
    if prefix:
        # A forced opening is the answer's start by construction: no preamble to strip, and the
        # instruction ends at the first line break ("Rewrite the text as a poem:\n<echo>").
        t = t.strip().split("\n")[0].rstrip(" :")
    else:
        t = _PREAMBLE.sub("", t, count=1)
        t = _CHATTY.sub("", t, count=1)
        t = _LABEL.sub("", t, count=1)
    # The instruction is the first non-empty paragraph; later ones are explanations or echoes.
    paras = [p.strip() for p in re.split(r"\n\s*\n", t) if p.strip()]
    t = paras[0] if paras else ""
    lines = [re.sub(r"^\s*(?:[-*•]|\d+[.)])\s+", "", ln).strip() for ln in t.split("\n")]
    t = " ".join(ln for ln in lines if ln)
    t = t.strip().strip(_QUOTES).strip()
    t = re.sub(r"\s+", " ", t)
    # Echoes of the prompt's own labels ("Rewritten text:", "The original text: ...") are not answers.
    if re.match(r"^(?:the\s+)?(?:original|rewritten)\s+text\b", t, re.IGNORECASE) or t.endswith(":"):
        return ""
    if _JUNK_ONLY.match(t) or len(t) < 4 or t.strip().lower() == prefix.strip().lower():
        return ""
    return t
