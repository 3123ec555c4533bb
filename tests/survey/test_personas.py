"""Persona text, scores, diverse selection and balanced split (pure functions)."""
from collections import Counter

from survey.personas import persona_scores, persona_text, select_diverse, split_balanced

NAMES = {"empathy": "Empathy", "safety": "Safety", "patient_autonomy": "Patient autonomy"}


def profile(**background):
    return {
        "background": {"age_group": "45_54", "gender": "man", "ethnicity": "prefer_not_to_say", "diagnoses": ["ptsd", "other"],
                       "severity": "severe", "treatment": "none", "ai_use": "never", **background},
        "attitudes": {"accessible": 5, "empathic": 1, "errors": 3, "complement": 4, "trust": 2},
        "ratings": {"empathy": 5, "safety": 5, "patient_autonomy": 2},
        "ranking": ["safety", "empathy", "patient_autonomy"],
        "names": NAMES,
        "attention_failures": 0,
    }


def test_persona_text_uses_the_template_and_no_free_text():
    text = persona_text(profile())
    assert text.startswith("I am a man, aged 45–54.")
    assert "trauma (PTSD) and another condition" in text
    assert "what matters most to me is safety, then empathy" in text and "patient autonomy matters least" in text
    assert "I doubt an AI can be truly empathic" in text
    assert "I consider safety and empathy extremely important." in text
    private = persona_text(profile(gender="prefer_not_to_say", age_group="prefer_not_to_say", diagnoses=["prefer_not_to_say"]))
    assert private.startswith("I am a person.") and "would rather not name" in private


def test_scores_reward_complete_consistent_answers():
    complete, consistent, quality = persona_scores(profile(), tau=1.0)
    assert (consistent, quality) == (1.0, round((complete + 1.0) / 2, 4))
    sparse = persona_scores(profile(ethnicity="prefer_not_to_say", gender="prefer_not_to_say", severity="prefer_not_to_say"), tau=None)
    assert sparse[0] < complete and sparse[1] == 0.5
    careless = {**profile(), "attention_failures": 2}
    assert persona_scores(careless, tau=1.0)[1] == 0.5


def test_select_diverse_is_deterministic_and_spreads_out():
    texts = [f"I care about empathy and warmth {i}" for i in range(5)] + [f"Safety and crisis resources matter {i}" for i in range(5)]
    texts += ["I want practical next steps at my own pace"]
    first = select_diverse(texts, 3, seed=4)
    assert first == select_diverse(texts, 3, seed=4)
    # Three picks from three clusters: one of each.
    assert {("empathy" in texts[i]) + 2 * ("Safety" in texts[i]) for i in first} == {0, 1, 2}
    assert select_diverse(texts, 20, seed=0) == list(range(len(texts)))
    assert len({tuple(select_diverse(texts, 4, seed=s)) for s in range(6)}) > 1


def test_split_balanced_has_exact_sizes_and_balanced_strata():
    strata = [(src, g, e) for src in ("prolific", "university") for g in ("woman", "man", "non_binary") for e in ("a", "b")] * 5
    labels = split_balanced(strata, n_test=20, seed=3)
    assert labels.count("test") == 20 and labels == split_balanced(strata, n_test=20, seed=3)
    for position in range(3):
        sizes, tests = Counter(s[position] for s in strata), Counter(s[position] for s, l in zip(strata, labels) if l == "test")
        for value, size in sizes.items():
            assert abs(tests[value] - size * 20 / len(strata)) <= 2, (position, value)
    assert split_balanced([], n_test=3, seed=0) == []
    assert split_balanced([("x",)] * 4, n_test=4, seed=0) == ["test"] * 4
