"""Every `recover ...` command the project names (its messages and docstrings, the notebooks, the Makefile, the
scripts, README.md, docs/*.md) parses in the real command tree: its stage and action exist, and so does each
--flag given, for that command."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from recover.cli import build_parser, leaves, subcommands

ROOT = Path(__file__).resolve().parents[1]
PARSER = build_parser()
# where a command starts: the word itself, `python -m recover`, the Makefile's $(RECOVER), the scripts' $R
START = re.compile(r"(?:(?<![\w/.-])(?<!from )(?<!import )recover|-m recover|\$\(RECOVER\)|\$R)(?=[ \t])")
FLAG = re.compile(r"(?<![\w-])--[a-zA-Z][\w-]*")


def option_names(parser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


def check(words: list[str], strict: bool) -> str | None:
    """words: what follows `recover`. None when they name a command that exists (or, not strict, when they are
    not a command at all: prose such as "recover itself"); else why not."""
    words = [w.strip("[](){}`'\",;") for w in words]
    words = [w for w in words if w]
    if not words or words[0].startswith(("$", "<", "...")):
        return None  # `recover` alone, a shell/make variable, a placeholder (`recover <stage>`, `recover ...`)
    stages = subcommands(PARSER)
    if words[0].startswith("-"):  # `recover --help`
        return None if words[0] in option_names(PARSER) else f"recover: no flag {words[0]}"
    stage = words[0].rstrip(".:")
    if stage not in stages:
        return f"no stage {stage!r}" if strict or any(w.startswith("--") for w in words[1:3]) else None
    parser, rest = stages[stage], words[1:]
    if words[0] != stage:  # "recover eval:" or "recover eval." ends the command
        rest = []
    while (actions := subcommands(parser)) and rest and not rest[0].startswith(("-", "$", ".")):
        names = rest[0].rstrip(".:").split("|")  # `recover probes pick|match|sim`
        missing = [n for n in names if n not in actions]
        if missing:
            return f"{parser.prog}: no action {missing[0]!r} (of {', '.join(actions)})"
        if len(names) > 1:
            return None
        parser, rest = actions[names[0]], rest[1:]
    if subcommands(parser) and any(w.startswith("--") for w in rest) and "--help" not in rest:
        return f"{parser.prog} takes an action before its flags (of {', '.join(subcommands(parser))})"
    if parser.get_default("overrides") is not None:
        return None  # train sft/dpo: any --key value is a recipe override
    known = option_names(parser)
    unknown = [f for w in rest for f in FLAG.findall(w) if f not in known]
    return f"{parser.prog}: no flag {unknown[0]}" if unknown else None


def commands_in(text: str, strict: bool):
    """(command words, strict) for every command that starts in text: a line of code, a `code span`, or (not
    strict) prose, where the command ends at the clause: `)`, `;`, or `:`/`,`/`.` before a space."""
    for m in START.finditer(text):
        rest = text[m.end():] if strict else re.split(r"[);]|[:,.](?:\s|$)", text[m.end():])[0]
        yield rest.split(), strict


def code_spans(text: str):
    """Markdown/docstring `spans`, each read strictly (code font names a command)."""
    return re.findall(r"`([^`\n]+)`", text)


def markdown_commands(path: Path):
    text = path.read_text(encoding="utf-8")
    fenced = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    for block in fenced:
        for line in _joined_lines(block):
            yield from commands_in(line.split(" #")[0], strict=True)
    prose = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S)
    for span in code_spans(prose):
        yield from commands_in(span, strict=True)


def _joined_lines(text: str) -> list[str]:
    return text.replace("\\\n", " ").splitlines()


def python_commands(path: Path):
    """String literals: their `code spans` strictly, the rest loosely; and argv lists [..., "-m", "recover", ...]."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for span in code_spans(node.value):
                yield from commands_in(span, strict=True)
            yield from commands_in(re.sub(r"`[^`\n]*`", "", node.value), strict=False)
        elif isinstance(node, ast.List):
            words = [e.value if isinstance(e, ast.Constant) and isinstance(e.value, str) else "$VALUE"
                     for e in node.elts]
            for i in range(len(words) - 1):
                if words[i:i + 2] == ["-m", "recover"]:
                    yield words[i + 2:], True


def script_commands(path: Path):
    """Makefile recipes and shell scripts: each (continued) line, with its comment's `code spans`."""
    for line in _joined_lines(path.read_text(encoding="utf-8")):
        code, _, comment = line.partition("#")
        yield from commands_in(code, strict=True)
        for span in code_spans(comment):
            yield from commands_in(span, strict=True)


def sources():
    for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        yield p, markdown_commands
    for p in [*sorted((ROOT / "recover").rglob("*.py")), *sorted((ROOT / "kernels").rglob("*.py")),
              *sorted((ROOT / "scripts").glob("*.py"))]:
        yield p, python_commands
    for p in [ROOT / "Makefile", *sorted((ROOT / "scripts").glob("*.sh"))]:
        yield p, script_commands


def test_every_named_command_exists():
    bad, seen = [], 0
    for path, read in sources():
        for words, strict in read(path):
            seen += 1
            why = check(words, strict)
            if why:
                bad.append(f"{path.relative_to(ROOT)}: recover {' '.join(words[:6])}: {why}")
    assert seen > 100  # the readers found the commands
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("words, ok", [
    ("export lora --adapter x --out y", True),
    ("export --base x", False),  # an action first
    ("export-lora --adapter x", False),
    ("probes pick|match|sim", True),
    ("meanprompt probe-sim", False),
    ("suffix fit --into A", False),
    ("train sft --recipe x --train_file y", True),  # a recipe override
    ("predict --input a --output b --no-such-flag", False),
    ("kaggle datasets --lora DIR", True),
])
def test_the_checker_itself(words, ok):
    assert (check(words.split(), strict=True) is None) == ok


def test_every_command_has_a_handler_and_a_name_for_its_errors():
    for leaf in leaves(PARSER):
        assert callable(leaf.get_default("fn")) and leaf.get_default("command") == leaf.prog, leaf.prog


def test_help_lists_what_the_code_accepts(capsys):
    # recipes, kernels, quants and engines come from where the code looks them up, so a new one cannot go unlisted
    from recover.bench.measure import BACKENDS
    from recover.cli import main
    from recover.export.cli import QUANT_TYPES  # the tuple export validates against, wherever it lives
    from recover.kaggle.cli import kernel_names
    from recover.train.recipe import RECIPES

    def help_of(*command):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        return re.sub(r"\s+", " ", capsys.readouterr().out).replace("- ", "-")  # argparse wraps at hyphens

    recipes = {p.stem for p in RECIPES.glob("*.yaml")}
    listed = help_of("train", "sft") + help_of("train", "chain")
    assert recipes and all(r in listed for r in recipes)
    assert {"submit", "train", "wheels"} <= set(kernel_names()) and all(k in help_of("kaggle", "kernel")
                                                                         for k in kernel_names())
    assert all(q in help_of("export", "model") for q in QUANT_TYPES)
    assert all(b in help_of("bench") for b in BACKENDS)


def test_an_action_refuses_another_actions_flags(capsys):
    from recover.cli import main

    with pytest.raises(SystemExit):
        main(["kaggle", "submit", "--version", "3", "--push"])  # --push belongs to `kaggle kernel`
    assert "recover kaggle submit: error: unrecognized arguments: --push" in capsys.readouterr().err
