"""The self-identification screen and the display normalisation (pure functions)."""
import pytest

from annotation import screening
from annotation.screening import Kind, normalise_for_display, screen_text


def kinds(text, terms=()):
    return {(h.kind, h.matched) for h in screen_text(text, terms=list(terms))}


@pytest.mark.parametrize("text,expected", [
    ("As an AI developed by OpenAI, I cannot feel.", {(Kind.SELF_DESCRIPTION, "As an AI"), (Kind.VENDOR, "OpenAI")}),
    ("I'm Claude, an assistant.", {(Kind.SELF_DESCRIPTION, "I'm Claude"), (Kind.MODEL_FAMILY, "Claude")}),
    ("As a language model I can only suggest this.", {(Kind.SELF_DESCRIPTION, "As a language model")}),
    ("I am an AI developed by a team.", {(Kind.SELF_DESCRIPTION, "I am an AI"),
                                          (Kind.SELF_DESCRIPTION, "I am an AI developed by")}),
    ("My name is Qwen2.5 and I help.", {(Kind.SELF_DESCRIPTION, "My name is Qwen2.5"), (Kind.MODEL_FAMILY, "Qwen2.5")}),
    ("Models like Llama 3 and GPT-4o differ.", {(Kind.MODEL_FAMILY, "Llama 3"), (Kind.MODEL_FAMILY, "GPT-4o")}),
    ("SmolLM2 here, made by Hugging Face.", {(Kind.MODEL_FAMILY, "SmolLM2"), (Kind.VENDOR, "Hugging Face")}),
    ("Gemini, Gemma, Mistral, Phi-3 and DeepSeek.", {(Kind.MODEL_FAMILY, n) for n in ("Gemini", "Gemma", "Mistral", "Phi-3", "DeepSeek")}),
    ("Built at Anthropic, Microsoft, Alibaba or Google.", {(Kind.VENDOR, n) for n in ("Anthropic", "Microsoft", "Alibaba", "Google")}),
    ("I don't have feelings, but that sounds hard.", {(Kind.SELF_DESCRIPTION, "I don't have feelings")}),
    ("That sounds hard.<|im_end|>", {(Kind.SPECIAL_TOKEN, "<|im_end|>")}),
    ("<|im_start|>assistant\nHello", {(Kind.SPECIAL_TOKEN, "<|im_start|>")}),
    ("Take care.<|eot_id|>", {(Kind.SPECIAL_TOKEN, "<|eot_id|>")}),
    ("[INST] be kind [/INST] I hear you.</s>", {(Kind.SPECIAL_TOKEN, t) for t in ("[INST]", "[/INST]", "</s>")}),
    ("Fine <|some_new_token|> then", {(Kind.SPECIAL_TOKEN, "<|some_new_token|>")}),
    ("assistant: I hear you.", {(Kind.ROLE_TAG, "assistant:")}),
    ("I hear you.\nUser: thanks", {(Kind.ROLE_TAG, "User:")}),
    ("### Response: I hear you.", {(Kind.ROLE_TAG, "### Response:")}),
])
def test_each_kind_of_hit_is_caught(text, expected):
    assert expected <= kinds(text)


@pytest.mark.parametrize("text", [
    "I'm feeling really low and I'm not sure what to do.",
    "Claudette from work says hello, and Claudia sends her love.",
    "That sounds exhausting. Have you been able to talk to anyone, maybe your GP?",
    "I googled it and the llamas at the farm were lovely.",
    "I'm so sorry. It sounds as if you are carrying a lot; what would help most right now?",
    "Assistance is available: the helpline is open all night.",
    "You said the user manual was confusing, and the system at work is unfair.",
    "I'm here with you. Sometimes a meta-analysis of your week helps.",
    "a <b>bold</b> word and x < y > z",
])
def test_ordinary_replies_do_not_match(text):
    assert kinds(text) == set()


def test_the_sources_own_names_and_references_are_caught_and_generic_pieces_are_not():
    from core.models import ModelVersion

    base = ModelVersion(name="exp7/base", kind=ModelVersion.Kind.BASE, model_ref="SmolLM2-135M-Instruct")
    trained = ModelVersion(name="exp7/dpo_empathy", kind=ModelVersion.Kind.CHECKPOINT, model_ref="/srv/ckpt/run-5521",
                           parent=base)
    terms = screening.source_terms(trained)
    assert {"exp7/dpo_empathy", "dpo_empathy", "/srv/ckpt/run-5521", "run-5521", "SmolLM2-135M-Instruct"} <= set(terms)
    assert "base" not in {t.lower() for t in terms}
    found = kinds("Hi, I'm dpo_empathy. Built on smollm2-135m-instruct; see run-5521.", terms)
    assert (Kind.SOURCE_NAME, "dpo_empathy") in found and (Kind.SOURCE_NAME, "smollm2-135m-instruct") in found
    assert (Kind.SOURCE_NAME, "run-5521") in found
    assert kinds("Our base of support is strong.", terms) == set()


def test_a_hit_carries_its_context():
    text = "Thank you for sharing this with me. As an AI, I cannot know exactly how that feels for you today."
    (hit,) = [h for h in screen_text(text) if h.kind == Kind.SELF_DESCRIPTION]
    assert text[hit.start:hit.end] == hit.matched == "As an AI"
    assert hit.before.endswith("with me. ") and hit.after.startswith(", I cannot")


def test_display_normalisation_is_the_same_for_both_sources():
    raw = "<|im_start|>assistant\n  That sounds hard.  \r\n\r\n\r\n\r\nWhat helps?<|im_end|>\n\n\n"
    assert normalise_for_display(raw) == "That sounds hard.\n\nWhat helps?"
    assert normalise_for_display("Fine.</s>") == "Fine."
    assert normalise_for_display("[INST] x [/INST] Yes.<|eot_id|>") == "x  Yes."
    assert normalise_for_display("One.\n\nTwo.") == "One.\n\nTwo."  # one blank line is kept
    assert normalise_for_display("a <b>bold</b> word") == "a <b>bold</b> word"
    assert screening.NORMALISATION == "display-v1"
