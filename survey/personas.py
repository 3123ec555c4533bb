"""Personas from survey answers: the text, its quality scores, a diverse
subset and a balanced train/test split. Pure functions; no Django.

A profile is a dict:
    background: {"age_group": "25_34", "gender": "woman", ..., "diagnoses": [...]}
    attitudes:  {"accessible": 4, ...}                 (1–5)
    ratings:    {criterion key: 1–5}
    ranking:    [criterion keys, most important first] (or None)
    names:      {criterion key: display name}
    attention_failures: int
"""
from __future__ import annotations

import numpy as np

from . import questions
from .ordering import rng_for
from .questions import PREFER_NOT

AGE_PHRASES = {"18_24": "aged 18–24", "25_34": "aged 25–34", "35_44": "aged 35–44", "45_54": "aged 45–54",
               "55_64": "aged 55–64", "65_plus": "aged 65 or over"}
GENDER_PHRASES = {"woman": "a woman", "man": "a man", "non_binary": "a non-binary person",
                  "self_describe": "a person who describes their gender in their own way"}
ETHNICITY_PHRASES = {"asian": "from an Asian background", "black": "from a Black, African or Caribbean background",
                     "mixed": "from a mixed ethnic background", "white": "from a White background",
                     "other": "from another ethnic background"}
CONDITION_NAMES = {"depression": "depression", "anxiety": "anxiety", "bipolar": "bipolar disorder",
                   "ptsd": "trauma (PTSD)", "ocd": "OCD", "eating": "an eating disorder", "adhd": "ADHD",
                   "personality": "a personality disorder", "psychosis": "psychosis", "substance": "substance use",
                   "other": "another condition"}
SEVERITY_SENTENCES = {"mild": "Over the past year it has affected my daily life a little.",
                      "moderate": "Over the past year it has affected my daily life a fair amount.",
                      "severe": "Over the past year it has affected my daily life a great deal."}
TREATMENT_SENTENCES = {"therapy": "At the moment I see a therapist or counsellor.",
                       "medication": "At the moment I take medication for it.",
                       "both": "At the moment I have talking therapy and take medication.",
                       "none": "I am not getting treatment at the moment."}
AI_SENTENCES = {"never": "I have never used an AI chatbot for support with my mental health.",
                "once": "I have tried an AI chatbot for support once or twice.",
                "sometimes": "I sometimes use AI chatbots for support with my mental health.",
                "often": "I often use AI chatbots for support with my mental health."}
ATTITUDE_PHRASES = {
    # item: (agree phrase, disagree phrase)
    "accessible": ("I think AI tools could make support easier to reach", "I doubt AI tools make support easier to reach"),
    "empathic": ("I believe an AI can respond with real empathy", "I doubt an AI can be truly empathic"),
    "errors": ("I worry about AI getting facts wrong", "I am not especially worried about AI getting facts wrong"),
    "complement": ("I think AI should only ever add to what human therapists do",
                   "I think AI could do more than just add to human therapy"),
    "trust": ("I mostly trust AI tools to be safe and accurate", "I do not really trust AI tools to be safe or accurate"),
}


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _given(value) -> bool:
    if isinstance(value, list):
        return bool(value) and PREFER_NOT not in value
    return value not in (None, "", PREFER_NOT)


def persona_text(profile: dict) -> str:
    """The persona in the first person, in Attune's own template. Free text
    the participant typed is never copied in."""
    bg = profile.get("background", {})
    sentences = []
    identity = GENDER_PHRASES.get(bg.get("gender"), "a person")
    extras = [p for p in (AGE_PHRASES.get(bg.get("age_group")), ETHNICITY_PHRASES.get(bg.get("ethnicity"))) if p]
    sentences.append(f"I am {', '.join([identity, *extras])}.")
    diagnoses = bg.get("diagnoses") or []
    if _given(diagnoses):
        sentences.append(f"I have lived with {_join([CONDITION_NAMES.get(d, d) for d in diagnoses])}.")
    else:
        sentences.append("I have lived with a mental-health condition I would rather not name.")
    for key, table in (("severity", SEVERITY_SENTENCES), ("treatment", TREATMENT_SENTENCES), ("ai_use", AI_SENTENCES)):
        if bg.get(key) in table:
            sentences.append(table[bg[key]])
    views = []
    for item, (agree, disagree) in ATTITUDE_PHRASES.items():
        value = profile.get("attitudes", {}).get(item)
        if value is not None and value >= 4:
            views.append(agree)
        elif value is not None and value <= 2:
            views.append(disagree)
    if views:
        sentences.append(f"About AI in mental-health care: {_join(views)}.")
    names = profile.get("names", {})
    ranking = profile.get("ranking")
    if ranking:
        ordered = [names.get(k, k).lower() for k in ranking]
        sentences.append(
            f"When I reach out about something hard, what matters most to me is {ordered[0]}, "
            f"then {_join(ordered[1:3])}; {ordered[-1]} matters least to me."
        )
    ratings = profile.get("ratings", {})
    essential = [names.get(k, k).lower() for k in (ranking or sorted(ratings)) if ratings.get(k) == 5]
    if essential:
        sentences.append(f"I consider {_join(essential)} extremely important.")
    return " ".join(sentences)


def persona_weights(ratings: dict[str, int]) -> dict[str, float]:
    """The participant's importance ratings, normalised to sum 1."""
    total = sum(ratings.values())
    return {k: v / total for k, v in sorted(ratings.items())} if total else {}


def persona_scores(profile: dict, tau: float | None) -> tuple[float, float, float]:
    """(completeness, consistency, quality), each in [0, 1].

    completeness: share of the background and attitude items answered with
    something other than "prefer not to say", plus ratings and ranking present.
    consistency: agreement of ratings and ranking, (tau + 1) / 2 (0.5 when the
    ratings were all equal), less 0.25 per failed attention check.
    quality: the mean of the two."""
    bg = profile.get("background", {})
    items = [_given(bg.get(i.key.split(".", 1)[1])) for i in questions.BACKGROUND]
    items += [profile.get("attitudes", {}).get(i.key.split(".", 1)[1]) is not None for i in questions.ATTITUDES]
    items += [bool(profile.get("ratings")), bool(profile.get("ranking"))]
    completeness = sum(items) / len(items)
    consistency = 0.5 if tau is None else (tau + 1) / 2
    consistency = min(1.0, max(0.0, consistency - 0.25 * profile.get("attention_failures", 0)))
    return round(completeness, 4), round(consistency, 4), round((completeness + consistency) / 2, 4)


def select_diverse(texts: list[str], k: int, *, seed: int) -> list[int]:
    """Indices of ``k`` texts chosen by greedy max-min cosine distance on TF-IDF.

    Starts from a seeded random text; each step adds the text farthest from
    everything chosen so far (ties broken by a seeded order), so the result
    depends only on the texts, k and the seed."""
    n = len(texts)
    if k >= n:
        return list(range(n))
    if k <= 0:
        return []
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_distances

    matrix = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1).fit_transform(texts)
    tie_break = list(range(n))
    rng_for(seed, "persona-selection").shuffle(tie_break)
    priority = np.empty(n)
    priority[tie_break] = np.arange(n)  # lower = preferred among equals
    chosen = [tie_break[0]]
    nearest = cosine_distances(matrix, matrix[chosen[0]]).ravel()
    nearest[chosen[0]] = -1.0
    while len(chosen) < k:
        rounded = np.round(nearest, 9)  # float noise must not decide ties
        best = rounded.max()
        candidates = np.flatnonzero(rounded == best)
        pick = int(candidates[np.argmin(priority[candidates])])
        chosen.append(pick)
        nearest = np.minimum(nearest, cosine_distances(matrix, matrix[pick]).ravel())
        nearest[chosen] = -1.0
    return chosen


def split_balanced(strata: list[tuple], *, n_test: int, seed: int) -> list[str]:
    """"train"/"test" per item with exactly ``n_test`` test items, balanced by stratum.

    Items are sorted by stratum (e.g. (source, gender, ethnicity)), in a seeded
    order within each stratum, and every (n/n_test)-th one goes to test. Any
    contiguous run of the sorted list -- each stratum, and each group of strata
    sharing the first field -- gets its proportional share of test items to
    within one."""
    n = len(strata)
    if n == 0:
        return []
    n_test = max(0, min(n_test, n))
    rng = rng_for(seed, "persona-split")
    jitter = [rng.random() for _ in range(n)]
    order = sorted(range(n), key=lambda i: (tuple(str(s) for s in strata[i]), jitter[i]))
    labels = ["train"] * n
    # Systematic sampling with a seeded start u in [0, n), in integers so no rounding can
    # move an item: ((i+1)t + u)//n - (i t + u)//n is 0 or 1, and the sum over all n is t.
    offset = rng.randrange(n)
    for rank, index in enumerate(order):
        if ((rank + 1) * n_test + offset) // n - (rank * n_test + offset) // n == 1:
            labels[index] = "test"
    return labels
