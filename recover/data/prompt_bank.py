"""The project's own composable prompt bank: transformation x form x style x tone x audience x persona.

Every prompt carries its category labels. The grid is written for this project; `generate_bank`
samples it deterministically (seeded) into natural instructions, and user prompt files can be added.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..csvio import atomic_write_csv

FORMS = ["poem", "haiku", "limerick", "sonnet", "song", "rap verse", "short story", "fairy tale", "fable",
         "news report", "press release", "tweet", "text message", "email", "formal letter", "love letter",
         "diary entry", "blog post", "product description", "advertisement", "movie trailer script", "screenplay scene",
         "dialogue", "speech", "sermon", "recipe", "instruction manual", "legal notice", "job posting", "review",
         "riddle", "joke", "horoscope", "weather forecast", "sports commentary", "podcast intro", "travel guide entry",
         "museum placard", "encyclopedia entry", "scientific abstract", "bedtime story", "obituary", "wedding toast",
         "motivational quote", "slogan", "menu description", "FAQ", "bullet-point summary", "comic strip script",
         "text adventure game", "eulogy", "apology letter", "complaint letter", "thank-you note", "postcard"]
STYLES = ["Shakespeare", "a pirate", "Yoda", "Dr. Seuss", "Edgar Allan Poe", "a noir detective", "a cowboy",
          "a medieval knight", "a Victorian novelist", "Ernest Hemingway", "a sports commentator", "a news anchor",
          "a robot", "an alien visiting Earth", "a valley girl", "a surfer", "a drill sergeant", "a kindergarten teacher",
          "a conspiracy theorist", "a tech startup founder", "a fantasy wizard", "a superhero", "a film critic",
          "a nature documentary narrator", "a grumpy old man", "a game show host", "a lawyer", "a chef",
          "a philosopher", "a stand-up comedian", "a fortune teller", "a poet laureate", "a gossip columnist"]
TONES = ["formal", "casual", "humorous", "sarcastic", "dramatic", "optimistic", "pessimistic", "mysterious",
         "romantic", "suspenseful", "enthusiastic", "melancholic", "angry", "calm", "urgent", "whimsical",
         "professional", "friendly", "persuasive", "nostalgic", "spooky", "inspiring", "poetic", "academic"]
AUDIENCES = ["a five-year-old", "teenagers", "senior citizens", "a CEO", "scientists", "tourists", "a best friend",
             "a customer", "investors", "high school students", "a job interviewer", "a grandmother",
             "non-native English speakers", "a medieval king", "the general public", "social media followers"]
OPS = {
    "convert": ["Convert this text into a {form}.", "Turn this into a {form}.", "Rewrite the text as a {form}.",
                "Transform the text into a {form}.", "Rewrite this as a {tone} {form}.",
                "Turn this text into a {form} for {audience}."],
    "style": ["Rewrite this text in the style of {style}.", "Rewrite the text as if it were written by {style}.",
              "Make this sound like {style} wrote it.", "Rewrite this as {style} would say it.",
              "Rewrite this {form} in the voice of {style}."],
    "tone": ["Make this text more {tone}.", "Rewrite this in a {tone} tone.", "Rewrite the text to sound {tone}.",
             "Give this text a {tone} twist.", "Make the text {tone} and {tone2}."],
    "audience": ["Rewrite this text for {audience}.", "Explain this to {audience}.",
                 "Simplify this text so {audience} can understand it.", "Adapt this text for {audience} in a {tone} way."],
    "length": ["Shorten this text.", "Summarize this text in one sentence.", "Make the text more concise.",
               "Expand this text with more detail.", "Summarize this in three bullet points.",
               "Condense this into a {form}."],
    "edit": ["Improve the grammar and clarity of this text.", "Make this text more persuasive.",
             "Add more vivid imagery to this text.", "Make this text more formal.", "Paraphrase this text.",
             "Add emojis to this text.", "Rewrite this text using simpler words.", "Make it rhyme.",
             "Add a plot twist to this text.", "Rewrite this from the point of view of {persona}."],
}
PERSONAS = ["the main character", "a dog", "a cat", "a villain", "a tree", "a time traveler", "a ghost",
            "the narrator's future self", "a detective", "a child", "a journalist", "a historian"]


@dataclass(frozen=True)
class BankPrompt:
    prompt: str
    category: str
    form: str = ""
    style: str = ""
    tone: str = ""
    audience: str = ""


def generate_bank(n: int = 4000, seed: int = 1234) -> list[BankPrompt]:
    """n distinct prompts sampled from the grid, each with its category labels."""
    rng = random.Random(seed)
    out: dict[str, BankPrompt] = {}
    cats = list(OPS)
    tries = 0
    while len(out) < n and tries < n * 50:
        tries += 1
        cat = rng.choice(cats)
        tpl = rng.choice(OPS[cat])
        f, s, t, a = rng.choice(FORMS), rng.choice(STYLES), rng.choice(TONES), rng.choice(AUDIENCES)
        t2 = rng.choice([x for x in TONES if x != t])
        text = tpl.format(form=f, style=s, tone=t, tone2=t2, audience=a, persona=rng.choice(PERSONAS))
        text = _article(text)
        if text not in out:
            used = lambda slot: slot in tpl  # noqa: E731
            out[text] = BankPrompt(text, cat, f if used("{form}") else "", s if used("{style}") else "",
                                   t if used("{tone}") else "", a if used("{audience}") else "")
    return list(out.values())


def _article(text: str) -> str:
    # "a email" -> "an email", "a haiku" stays.
    return re.sub(r"\ba (?!(?:eu|uni|use|one))([aeiouAEIOU])", r"an \1", text)


def load_prompt_file(path: str | Path) -> list[BankPrompt]:
    """One prompt per line (blank lines skipped), labelled 'user'."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [BankPrompt(x.strip(), "user") for x in lines if x.strip()]


def dedupe_by_embedding(prompts: list[BankPrompt], embedder, threshold: float = 0.95) -> list[BankPrompt]:
    """Drop near-duplicates: a prompt whose cosine to an earlier kept one is >= threshold."""
    if not prompts:
        return []
    emb = embedder.encode([p.prompt for p in prompts])
    keep: list[int] = []
    for i in range(len(prompts)):
        if keep and float(np.max(emb[keep] @ emb[i])) >= threshold:
            continue
        keep.append(i)
    return [prompts[i] for i in keep]


def build_bank(out: str | Path, n: int, seed: int, files: list[str] = (), embedder=None, dedupe: float = 0.0) -> int:
    """`recover data bank`: grid prompts + user files, optionally deduped by embedding, to a CSV."""
    bank = generate_bank(n, seed) + [b for f in files for b in load_prompt_file(f)]
    if dedupe:
        bank = dedupe_by_embedding(bank, embedder, dedupe)
    atomic_write_csv(out, pd.DataFrame([b.__dict__ for b in bank]))
    return len(bank)
