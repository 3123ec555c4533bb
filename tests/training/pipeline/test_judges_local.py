"""The local likelihood judge on a tiny model: valid permutations, both orders, deterministic."""
from __future__ import annotations

from training.pipeline.criteria import get_criterion
from training.pipeline.io import Persona, Scenario
from training.pipeline.judges import JudgeRequest, build_judge, is_permutation
from training.pipeline.judges.local import LocalJudgeConfig, LocalLikelihoodJudge, _letter_ids


def test_local_judge_returns_permutations(tiny_lm_dir):
    judge = build_judge({"backend": "local", "model": str(tiny_lm_dir), "batch_size": 16})
    assert isinstance(judge, LocalLikelihoodJudge)
    requests = [
        JudgeRequest(Persona("p1", "a student"), Scenario("s1", "I feel low.", risk_level="low"),
                     ("That sounds hard.", "Cheer up.", "What has helped before?", "ok"),
                     (get_criterion("empathy"), get_criterion("safety"))),
        JudgeRequest(Persona("p2", "a parent"), Scenario("s2", "I can't sleep."), ("Sleep more.", "That sounds exhausting."),
                     (get_criterion("empathy"),)),
    ]
    results = judge.rank_many(requests)
    assert is_permutation(results[0].rankings["empathy"], 4) and is_permutation(results[0].rankings["safety"], 4)
    assert is_permutation(results[1].rankings["empathy"], 2)
    # Wins over all pairs add up to C(K, 2).
    assert sum(results[0].scores["empathy"]) == 6
    assert judge.rank_many(requests)[0].rankings == results[0].rankings
    info = judge.info()
    assert info["synthetic"] is False and info["settings"]["both_orders"] is True


def test_letter_tokens_are_distinct(tiny_lm_dir):
    from training.pipeline.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_lm_dir)
    a, b = _letter_ids(tokenizer, "A"), _letter_ids(tokenizer, "B")
    assert a and b and not set(a) & set(b)


def test_position_bias_cancels(tiny_lm_dir):
    # Two identical responses: the preference from both orders cancels exactly -> half a win each.
    judge = LocalLikelihoodJudge(LocalJudgeConfig(model=str(tiny_lm_dir)))
    result = judge.rank(JudgeRequest(Persona("p", "x"), Scenario("s", "y"), ("same text", "same text"), (get_criterion("empathy"),)))
    assert result.scores["empathy"] == [0.5, 0.5]
