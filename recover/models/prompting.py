"""The ONE function that turns (original, rewritten) into the LLM's prompt.

Inference (ChatFormat.prompt_text, which models/llm.py serves with) and training data (DPO pairs, SFT rows)
both call `build_messages`, so a model is trained on exactly the prompt format it is served with.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from .. import constants as C

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
DEFAULT_TEMPLATE = "recover"
_SENTINEL = "\u2063RECOVER_SLOT\u2063"  # stands in for the texts where the head ends


# Gemma's turn format, for Gemma GGUFs shipped without tokenizer.chat_template (e.g. base models).
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def template_source(metadata: dict) -> str | None:
    """Where the chat template a GGUF is served with comes from: "gguf" (its own), "gemma-default" (a Gemma
    GGUF without one gets Gemma's turn format), or None (it cannot be served)."""
    if metadata.get(C.GGUF_CHAT_TEMPLATE):
        return "gguf"
    return "gemma-default" if metadata.get(C.GGUF_ARCH, "").startswith("gemma") else None


def chat_template(metadata: dict, model_name: str = "model") -> str:
    """The GGUF's own chat template; for a Gemma GGUF without one, Gemma's turn format."""
    tmpl = metadata.get(C.GGUF_CHAT_TEMPLATE)
    if tmpl:
        return tmpl
    if metadata.get(C.GGUF_ARCH, "").startswith("gemma"):
        return GEMMA_CHAT_TEMPLATE
    raise ValueError(f"{model_name}: GGUF has no {C.GGUF_CHAT_TEMPLATE} and no known default; export it with one")


class ChatFormat:
    """The GGUF's chat template bound to its tokenizer: messages -> prompt text -> token ids; a row's prompt
    (prompt_text) and the head every row's prompt shares (head_text)."""

    def __init__(self, engine, model_name: str = "model"):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter  # llama_cpp: optional extra, loads a native library

        self.engine = engine
        m = engine.model
        self.bos = engine.token_text(m.token_bos()) if m.token_bos() >= 0 else ""
        eos = engine.token_text(m.token_eos()) if m.token_eos() >= 0 else ""
        self.template = chat_template(engine.metadata, model_name)
        self._fmt = Jinja2ChatFormatter(self.template, eos_token=eos, bos_token=self.bos, add_generation_prompt=True)

    def render(self, messages: list[dict]) -> str:
        return self._fmt(messages=messages).prompt

    def prompt_text(self, template: str, original: str, rewritten: str, prefix: str = "") -> str:
        """A row's whole prompt: the template's message (build_messages) in the chat template, the generation
        prompt, then the forced prefix."""
        return self.render(build_messages(template, original, rewritten)) + prefix

    def head_text(self, template: str) -> str:
        """What every row's prompt starts with: the prompt up to the original text (the engines evaluate it once)."""
        return self.prompt_text(template, _SENTINEL, _SENTINEL).split(_SENTINEL)[0]

    def tokenize(self, text: str) -> list[int]:
        # Templates that write the BOS text themselves must not get a second BOS token.
        add_bos = self.engine.model.add_bos_token() and not (self.bos and text.startswith(self.bos))
        return self.engine.tokenize(text, add_bos=add_bos, special=True)


def builtin_templates() -> list[str]:
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.txt"))


def load_template(name_or_path: str | None = None) -> str:
    """A built-in name ('recover', 'short') or a text file with {original} and {rewritten}."""
    name = name_or_path or DEFAULT_TEMPLATE
    p = Path(name)
    if not p.is_file():
        p = TEMPLATE_DIR / f"{name}.txt"
        if not p.is_file():
            raise ValueError(f"--template {name!r}: not a file and not a built-in ({', '.join(builtin_templates())})")
    text = p.read_text(encoding="utf-8").strip()
    for slot in ("{original}", "{rewritten}"):
        if slot not in text:
            raise ValueError(f"template {p}: missing the {slot} slot")
    if text.index("{original}") > text.index("{rewritten}"):
        raise ValueError(f"template {p}: {{original}} must come before {{rewritten}}")
    return text


def build_messages(template: str, original: str, rewritten: str) -> list[dict]:
    # str.replace, not str.format: the texts may hold braces.
    content = template.replace("{original}", original.strip()).replace("{rewritten}", rewritten.strip())
    return [{"role": "user", "content": content}]


def fit_texts(original: str, rewritten: str, budget: int, tokenize: Callable[[str], Sequence[int]],
              detokenize: Callable[[Sequence[int]], str]) -> tuple[str, str]:
    """Cut both texts so together they take at most `budget` tokens of the model's tokenizer.

    Each gets half; a text shorter than its half hands the rest to the other. Cuts keep the start
    of each text (where the style and topic show).
    """
    a, b = list(tokenize(original)), list(tokenize(rewritten))
    if len(a) + len(b) <= budget:
        return original, rewritten
    half = max(budget // 2, 0)
    ka = min(len(a), max(half, budget - len(b)))
    kb = min(len(b), budget - ka)
    return (detokenize(a[:ka]) if ka < len(a) else original), (detokenize(b[:kb]) if kb < len(b) else rewritten)
