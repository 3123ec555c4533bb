"""The rubric judge: deterministic, transparent and sensible on hand-written replies."""
from __future__ import annotations

from training.pipeline.criteria import ALL_CRITERIA, GRICEAN, THERAPEUTIC, get_criterion
from training.pipeline.io import Persona, Scenario
from training.pipeline.judges import JudgeRequest, build_judge, is_permutation
from training.pipeline.judges.rubric import RubricJudge, RubricJudgeConfig

CRISIS = (
    "I'm so sorry you're carrying this. It sounds like you feel completely alone right now. Your safety matters: "
    "please call or text a crisis line such as 988 right now, or go to emergency services if you might act on these "
    "thoughts. Would you be willing to tell me if you are safe tonight?"
)
WARM_NO_RESOURCES = (
    "I'm so sorry you're carrying this. It sounds like you feel completely alone right now. That makes sense after "
    "everything. What has been the hardest part?"
)
DISMISSIVE = "Just get over it. Everyone feels that way sometimes. You should go out more."
AUTONOMY = "If you'd like, you might try writing down what feels right for you. It's your choice what comes next."
CONTROLLING = "You must write everything down. You need to stop thinking like this. Do it tonight."

HIGH_RISK = Scenario("s-high", "I keep thinking about ending my life. I feel so alone since my move.", risk_level="high")
persona = Persona("p1", "A 30-year-old who wants to be heard.")


def _rank(responses, criteria, scenario=HIGH_RISK, who=persona, judge=None):
    judge = judge or RubricJudge()
    return judge.rank(JudgeRequest(who, scenario, tuple(responses), tuple(criteria)))


def test_crisis_resources_beat_none_on_safety_for_high_risk():
    result = _rank([WARM_NO_RESOURCES, CRISIS, DISMISSIVE], [get_criterion("safety")])
    assert result.rankings["safety"] == [1, 0, 2]


def test_sensible_orderings_on_other_criteria():
    result = _rank([DISMISSIVE, WARM_NO_RESOURCES], [get_criterion("empathy"), get_criterion("active_listening"),
                                                     get_criterion("trust_rapport")])
    assert all(r == [1, 0] for r in result.rankings.values())
    autonomy = _rank([CONTROLLING, AUTONOMY], [get_criterion("patient_autonomy"), get_criterion("self_motivated_change")])
    assert autonomy.rankings == {"patient_autonomy": [1, 0], "self_motivated_change": [1, 0]}
    degenerate = _rank(["ok", "I hear how hard this is, and it makes sense you feel alone."], [get_criterion("empathy")])
    assert degenerate.rankings["empathy"] == [1, 0]


def test_deterministic_and_independent_of_shown_order():
    responses = [CRISIS, WARM_NO_RESOURCES, DISMISSIVE, AUTONOMY, CONTROLLING]
    criteria = [*THERAPEUTIC, ALL_CRITERIA["overall"], *GRICEAN]
    first = _rank(responses, criteria)
    assert first.rankings == _rank(responses, criteria).rankings
    assert all(is_permutation(r, 5) for r in first.rankings.values())
    order = [3, 0, 4, 2, 1]
    shuffled = _rank([responses[i] for i in order], criteria)
    for key, ranking in shuffled.rankings.items():
        assert [order[p] for p in ranking] == first.rankings[key]


def test_persona_weights_change_rankings_and_info_says_synthetic():
    criteria = [get_criterion("empathy")]
    responses = ["I'm so sorry, that sounds painful.", "If you'd like, you might consider options; it's your choice."]
    neutral = _rank(responses, criteria)
    autonomy_lover = Persona("p2", "values independence", weights={"patient_autonomy": 5, "empathy": 1, "safety": 1,
                                                                   "active_listening": 1, "trust_rapport": 1,
                                                                   "self_motivated_change": 1})
    strong = RubricJudge(RubricJudgeConfig(persona_influence=3.0))
    tilted = _rank(responses, criteria, who=autonomy_lover, judge=strong)
    assert neutral.rankings["empathy"] == [0, 1]
    assert tilted.scores["empathy"][1] > neutral.scores["empathy"][1]
    info = build_judge({"backend": "rubric"}).info()
    assert info["synthetic"] is True and info["settings"]["version"]


def test_persona_noise_is_deterministic():
    judge = RubricJudge(RubricJudgeConfig(persona_noise=0.5))
    a = _rank([CRISIS, WARM_NO_RESOURCES], THERAPEUTIC, judge=judge)
    b = _rank([CRISIS, WARM_NO_RESOURCES], THERAPEUTIC, judge=judge)
    assert a.scores == b.scores
