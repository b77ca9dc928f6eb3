import pytest

from recover.models.postprocess import clean_llm_output


@pytest.mark.parametrize("raw, want", [
    ('Sure, the prompt was: "Rewrite this as a haiku."', "Rewrite this as a haiku."),
    ("**Prompt:** Make it formal.\n\nExplanation: the text became formal.", "Make it formal."),
    ('Here is the instruction: \n\n"Turn it into a poem"', "Turn it into a poem"),
    ("Certainly! Here's the most likely prompt used:\n\nRewrite as a limerick", "Rewrite as a limerick"),
    ("Rewrite the text as a pirate.\nNote: pirates say arr.", "Rewrite the text as a pirate."),
    ("- Convert to a tweet", "Convert to a tweet"),
    ("Sure! Make it shorter.", "Make it shorter."),
    ("  \"\" ", ""),
    ("Rewritten text:", ""),
    ("The original text: Mid-4, the Phillies trail.", ""),
    ("", ""),
])
def test_clean_llm_output(raw, want):
    assert clean_llm_output(raw) == want


def test_bare_forced_prefix_is_unusable():
    assert clean_llm_output("Rewrite the text", prefix="Rewrite the text") == ""
    assert clean_llm_output("Rewrite the text as a sonnet.", prefix="Rewrite the text") == "Rewrite the text as a sonnet."


def test_forced_prefix_keeps_the_first_line_only():
    raw = "Rewrite the text with the instruction only:\nHey! Heads up"
    assert clean_llm_output(raw, prefix="Rewrite the text") == "Rewrite the text with the instruction only"


def test_echo_of_the_input_is_not_a_prompt():
    from recover.models.llm import is_echo

    rew = "Hey! Heads up, the library's closing early Friday for staff training."
    assert is_echo("Hey! Heads up, the library's closing early Friday", "orig", rew)
    assert not is_echo("Rewrite this as a friendly text message to a neighbour.", "orig", rew)
    assert not is_echo("Make it short", "make it short please", rew)  # too short to call an echo
