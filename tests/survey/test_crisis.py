"""The crisis-language detector and its phrase file."""
import re

import pytest

from survey.crisis import contains_crisis_language, load_patterns, matching_patterns, normalise

# Each phrasing, with its inflections; every pattern in the data file must be hit by one of these.
CRISIS = [
    "sometimes I feel like ending it all", "I just want to end it all", "I nearly ended it all last year",
    "I think about ending my own life", "I want to end my life",
    "it would be easier to end everything", "I might take my own life", "I thought about taking my life",
    "I want to kill myself", "I keep thinking of killing myself", "I tried to kill my self once", "I thought about hanging myself",
    "honestly kms", "I want to unalive", "thinking about suicide a lot", "I have felt suicidal for weeks",
    "I want to die", "I wanted to die after the breakup", "I'm ready to die", "I don't want to live anymore",
    "I do not want to be here", "I didn't want to wake up", "I dont want to be alive", "I wish I was dead",
    "I wish I were never born", "I wish I wasn't here", "soon I'll not be around any more", "there is no reason to live", "I see no point in going on",
    "Sometimes I think I'd be better off dead", "my family would be better off without me",
    "everyone would be better without me", "I can’t go on like this", "I cannot carry on any longer",
    "I can't take it anymore", "I have thoughts of dying", "I've been self-harming again", "self harm helps me cope",
    "I keep cutting myself", "I hurt myself when it gets bad", "I harmed myself last night", "I burned myself on purpose",
    "I took an overdose last year", "I overdosed twice", "I took too many pills", "I swallowed a handful of tablets",
    "My partner hits me", "my husband beat me again",
]

ORDINARY = [
    "", "I would like more empathy from replies", "This survey was killing time nicely", "Safety matters to me most",
    "I died laughing at the last reply", "I'm killing it at work these days", "the end of it all was a relief for the project",
    "I was dead tired after the night shift", "my phone is dying", "the cake was to die for", "I could kill for a coffee",
    "this deadline is killing me", "I want to end my subscription", "self-care matters to me", "I am better off with a therapist",
    "I can't go out much", "he hit the nail on the head", "the overall tone was kind", "I cut back on coffee",
    "therapy helped me take my life back", "the end of the session felt rushed",
]


@pytest.mark.parametrize("text", CRISIS)
def test_crisis_language_is_caught(text):
    assert contains_crisis_language(text), text


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_not_flagged(text):
    assert not contains_crisis_language(text), matching_patterns(text)


def test_every_pattern_in_the_phrase_file_has_an_example():
    patterns = load_patterns()
    assert len(patterns) >= 20
    for pattern in patterns:
        assert any(re.search(pattern, normalise(text)) for text in CRISIS), f"no test phrase for {pattern!r}"


def test_curly_apostrophes_case_and_spacing_do_not_hide_a_match():
    assert contains_crisis_language("I DON’T   WANT TO\nLIVE")
