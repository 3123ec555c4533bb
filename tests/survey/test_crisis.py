import pytest

from survey.crisis import contains_crisis_language


@pytest.mark.parametrize("text", [
    "I want to kill myself", "thinking about suicide a lot", "Sometimes I think I'd be better off dead",
    "I've been self-harming again", "I can’t go on like this", "I don't want to live anymore",
    "I took an overdose last year", "I keep cutting myself", "I want to end my life", "My partner hits me",
])
def test_crisis_language_is_caught(text):
    assert contains_crisis_language(text)


@pytest.mark.parametrize("text", [
    "", "I would like more empathy from replies", "This survey was killing time nicely", "Safety matters to me most",
    "I died laughing at the last reply",
])
def test_ordinary_text_is_not_flagged(text):
    assert not contains_crisis_language(text)
