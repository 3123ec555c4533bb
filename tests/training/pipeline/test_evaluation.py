"""Evaluation: canned answers + rubric judge -> win rates, McNemar, plots, decisions; resumable."""
from __future__ import annotations

import json

import pytest

from training.pipeline.control import RunControl
from training.pipeline.evaluation import (
    EvalModel,
    EvaluationConfig,
    mcnemar_p_value,
    recompute_statistics,
    run_evaluation,
    summarise_decisions,
)
from training.pipeline.io import read_json, read_jsonl

WARM = ("I'm so sorry, that sounds really painful. It sounds like you feel alone. If you might be in danger, please "
        "call a crisis line like 988 right now or talk to a therapist. What would help you feel a little safer?")
MID = "That sounds hard. Thank you for telling me. Maybe talk to someone you trust."
COLD = "Just get over it. Everyone feels that way. You should exercise."


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.fixture
def setup(tmp_path):
    scenarios = [{"scenario_id": f"t{i}", "prompt": f"I feel alone and I think about hurting myself ({i}).", "split": "test",
                  "risk_level": "high"} for i in range(3)]
    scenarios.append({"scenario_id": "train0", "prompt": "train only", "split": "train"})
    paths = {"scenarios_path": _write(tmp_path / "s.jsonl", scenarios),
             "personas_path": _write(tmp_path / "p.jsonl", [{"persona_id": f"q{i}", "text": f"test persona {i}", "split": "test"}
                                                              for i in range(3)] + [{"persona_id": "tr", "text": "x", "split": "train"}])}
    models = []
    for name, text in (("warm", WARM), ("mid", MID), ("cold", COLD)):
        answers = _write(tmp_path / f"{name}.jsonl", [{"scenario_id": s["scenario_id"], "prompt": s["prompt"], "responses": [text],
                                                       "model": name, "generation": {}} for s in scenarios])
        models.append(EvalModel(name=name, answers_path=answers))
    return paths, models


def test_win_rates_match_hand_computation(setup, tmp_path):
    paths, models = setup
    config = EvaluationConfig(models=models, output_dir=str(tmp_path / "eval"), judge={"backend": "rubric"},
                              criteria=["empathy", "safety"], progress_bar=False, **paths)
    result = run_evaluation(config)
    # The rubric orders warm > mid > cold on both criteria for every persona, so every scenario is unanimous:
    # warm wins both its pairings (100%), mid one of two (50%), cold none (0%).
    table = result.table
    for criterion in ("empathy", "safety"):
        assert table["warm"][criterion]["average_pairwise_win_rate"] == 1.0
        assert table["mid"][criterion]["average_pairwise_win_rate"] == 0.5
        assert table["cold"][criterion]["average_pairwise_win_rate"] == 0.0
        assert table["mid"][criterion]["wins"] == 3 and table["mid"][criterion]["losses"] == 3
    report = read_json(result.report_path)
    assert report["synthetic"] is True and report["judge"]["name"] == "rubric"
    warm_cold = next(p for p in report["pairings"] if {p["model_a"], p["model_b"]} == {"warm", "cold"} and p["criterion"] == "safety")
    assert warm_cold["decisions"] == 3 and warm_cold["mcnemar_p"] == pytest.approx(0.25)  # 3-0: 2 * 0.5**3
    decisions = read_jsonl(result.decisions_path)
    assert len(decisions) == 3 * 3 * 2  # scenarios x pairs x criteria
    first = decisions[0]
    assert set(first["votes"]) == {"q0", "q1", "q2"} and first["majority"] in {"a", "b"} and first["synthetic"] is True
    for name in ("pareto.png", "pareto.svg", "win_rates.png", "win_rates.svg"):
        assert (tmp_path / "eval" / name).stat().st_size > 0


def test_votes_follow_answers_not_shown_position(setup, tmp_path):
    paths, models = setup
    result = run_evaluation(EvaluationConfig(models=models, output_dir=str(tmp_path / "eval"), judge={"backend": "rubric"},
                                             criteria=["empathy"], progress_bar=False, **paths))
    for d in read_jsonl(result.decisions_path):
        better = min((d["model_a"], d["model_b"]), key=["warm", "mid", "cold"].index)
        assert d["winner"] == better and d["votes_a" if d["model_a"] == better else "votes_b"] == 3


def test_summary_with_ties_and_mcnemar():
    def d(a, b, majority, c="empathy"):
        return {"model_a": a, "model_b": b, "criterion": c, "majority": majority}

    decisions = [d("x", "y", m) for m in ["a"] * 8 + ["b"] * 2 + ["tie"] * 2 + ["none"]]
    decisions += [d("x", "z", m) for m in ["a", "tie", "b", "b"]] + [d("y", "z", m) for m in ["tie"] * 4]
    summary = summarise_decisions(decisions, ["x", "y", "z"], ["empathy"])
    x = summary["table"]["x"]["empathy"]
    # x vs y: 8 wins of 12 decisions (the "none" is not a decision); x vs z: 1 of 4.
    assert x["average_pairwise_win_rate"] == pytest.approx((8 / 12 + 1 / 4) / 2)
    assert x["win_rate"] == pytest.approx(9 / 16)
    assert x["win_rate_ties_half"] == pytest.approx(((8 + 1) / 12 + (1 + 0.5) / 4) / 2)
    assert (x["wins"], x["losses"], x["ties"]) == (9, 4, 3)
    xy = next(p for p in summary["pairings"] if (p["model_a"], p["model_b"]) == ("x", "y"))
    assert xy["no_decision"] == 1 and xy["mcnemar_p"] == pytest.approx(112 / 1024)
    yz = next(p for p in summary["pairings"] if (p["model_a"], p["model_b"]) == ("y", "z"))
    assert yz["mcnemar_p"] == 1.0 and yz["win_rate_a"] == 0.0
    assert mcnemar_p_value(0, 0, 5) == 1.0


def test_interrupted_evaluation_resumes(setup, tmp_path):
    paths, models = setup
    config = EvaluationConfig(models=models, output_dir=str(tmp_path / "eval"), judge={"backend": "rubric"},
                              criteria=["empathy", "safety"], chunk_size=2, progress_bar=False, **paths)
    checks = {"n": 0}

    def stop_soon():
        checks["n"] += 1
        return checks["n"] > 5  # 3 answer checks pass, then two judge chunks

    first = run_evaluation(config, RunControl(stop_check=stop_soon))
    assert first.stopped and first.report_path is None
    partial = read_jsonl(first.decisions_path)
    assert 0 < len(partial) < 18
    progress = []
    second = run_evaluation(config, RunControl(on_progress=lambda done, total, loss: progress.append((done, total))))
    assert not second.stopped and progress[-1][0] == progress[-1][1]
    decisions = read_jsonl(second.decisions_path)
    assert len(decisions) == 18
    assert len({(d["scenario_id"], d["model_a"], d["model_b"], d["criterion"]) for d in decisions}) == 18


def test_generated_answers_for_a_tiny_model(tiny_lm_dir, setup, tmp_path):
    paths, models = setup
    config = EvaluationConfig(models=[EvalModel(name="tiny", model=str(tiny_lm_dir)), models[0]], output_dir=str(tmp_path / "eval"),
                              judge={"backend": "rubric"}, criteria=["empathy"], progress_bar=False, limit=2, **paths)
    config.generation.max_new_tokens = 4
    result = run_evaluation(config)
    assert len(read_jsonl(tmp_path / "eval" / "answers" / "tiny.jsonl")) == 2
    assert result.table["warm"]["empathy"]["decisions"] == 2


def test_config_validation():
    with pytest.raises(ValueError, match="exactly one"):
        EvalModel(name="x")
    with pytest.raises(ValueError, match="two models"):
        EvaluationConfig(models=[EvalModel(name="a", model="m")], scenarios_path="s", personas_path="p", output_dir="o", judge={})


def test_reward_model_scores_per_model(setup, tmp_path, monkeypatch):
    import training.pipeline.rewards as rewards

    class LengthScorer:
        """Stands in for a trained reward model: longer answers score higher."""

        loaded = []

        @classmethod
        def load(cls, model_dir, **kwargs):
            cls.loaded.append(str(model_dir))
            return cls()

        def score(self, prompts, responses, standardised=True, **kwargs):
            assert standardised and len(prompts) == len(responses)
            return [float(len(r)) for r in responses]

    monkeypatch.setattr(rewards, "RewardScorer", LengthScorer)
    paths, models = setup
    result = run_evaluation(EvaluationConfig(models=models, output_dir=str(tmp_path / "eval"), judge={"backend": "rubric"},
                                             criteria=["empathy"], reward_models={"safety": "rm/safety"}, progress_bar=False,
                                             **paths))
    scores = read_json(result.report_path)["reward_scores"]
    assert LengthScorer.loaded == ["rm/safety"]
    assert scores["warm"]["safety"] == float(len(WARM)) and scores["cold"]["safety"] == float(len(COLD))


def test_adapter_and_policy_models_answer(tiny_lm_dir, setup, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    from training.pipeline.models import load_causal_lm, load_tokenizer

    torch.manual_seed(0)
    lora = get_peft_model(load_causal_lm(tiny_lm_dir), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter_dir = tmp_path / "adapter"
    lora.save_pretrained(adapter_dir)
    load_tokenizer(tiny_lm_dir).save_pretrained(adapter_dir)
    paths, _ = setup
    config = EvaluationConfig(
        models=[EvalModel(name="base", model=str(tiny_lm_dir)),
                EvalModel(name="base+lora", model=str(tiny_lm_dir), adapter=str(adapter_dir)),
                EvalModel(name="policy", policy=str(adapter_dir))],
        output_dir=str(tmp_path / "eval"), judge={"backend": "rubric"}, criteria=["empathy"], limit=2, progress_bar=False, **paths)
    config.generation.max_new_tokens = 5
    result = run_evaluation(config)
    answers = {name: read_jsonl(tmp_path / "eval" / "answers" / f"{name}.jsonl") for name in ("base", "base_lora", "policy")}
    assert all(len(v) == 2 for v in answers.values())
    assert answers["base_lora"][0]["model"] == f"{tiny_lm_dir}+{adapter_dir}"
    assert [r["responses"] for r in answers["base_lora"]] == [r["responses"] for r in answers["policy"]]
    assert result.table["policy"]["empathy"]["opponents"] == 2


def test_report_carries_intervals_ties_lengths_and_shape_checks(setup, tmp_path):
    paths, models = setup
    config = EvaluationConfig(models=models, output_dir=str(tmp_path / "eval"), judge={"backend": "rubric"},
                              criteria=["empathy", "safety"], progress_bar=False, bootstrap_samples=200, **paths)
    result = run_evaluation(config)
    report = read_json(result.report_path)
    warm = report["table"]["warm"]["empathy"]
    # Unanimous wins over both opponents in every scenario: every replicate says 100%.
    assert warm["interval"] == [1.0, 1.0] and warm["tie_rate"] == 0.0 and warm["decisive"] == 6
    assert report["table"]["cold"]["empathy"]["interval"] == [0.0, 0.0]
    assert 0.0 <= warm["length_controlled_win_rate"] <= 1.0 and warm["length_controlled_interval"]
    for pairing in report["pairings"]:
        assert pairing["mcnemar_p_holm"] >= pairing["mcnemar_p"] and pairing["win_rate_a_interval"]
    assert report["multiple_comparisons"] == {"method": "holm", "family_size": 6,
                                              "family": "every pairing and criterion of this evaluation"}
    assert report["lengths"]["warm"]["mean_words"] == len(WARM.split()) and report["lengths"]["cold"]["answers"] == 3
    assert report["lengths"]["warm"]["unfinished_share"] == 0.0  # WARM ends with "?"
    assert report["bootstrap"]["samples"] == 200 and report["bootstrap"]["scenarios"] == 3
    # These models play none of the study's parts: every check is not applicable, none passes.
    assert len(report["shape_checks"]) == 5 and {c["status"] for c in report["shape_checks"]} == {"NOT_APPLICABLE"}
    # Everything can be recomputed from the run directory, and comes out the same.
    again = recompute_statistics(tmp_path / "eval")
    assert again["table"] == report["table"] and again["pairings"] == report["pairings"]
    assert read_json(result.report_path)["table"] == report["table"]


def test_answer_lengths_count_answers_cut_mid_sentence():
    from training.pipeline.evaluation import answer_lengths

    decisions = [{"scenario_id": "s1", "model_a": "x", "model_b": "y", "response_a": "I hear you. That is hard.",
                  "response_b": "You might consider talking to a"},
                 {"scenario_id": "s2", "model_a": "x", "model_b": "y", "response_a": 'She said "stop."',
                  "response_b": "Take care!"}]
    lengths = answer_lengths(decisions, ["x", "y"])
    assert lengths["x"] == {"answers": 2, "mean_words": 4.5, "mean_characters": 20.5, "unfinished_share": 0.0}
    assert lengths["y"]["unfinished_share"] == 0.5 and lengths["y"]["mean_words"] == 4.0


def test_pareto_plot_draws_the_intervals(tmp_path):
    from training.pipeline.evaluation import plot_pareto

    def row(rate, interval):
        return {"average_pairwise_win_rate": rate, "interval": interval}

    table = {"a": {"empathy": row(0.7, [0.55, 0.85]), "safety": row(0.4, [0.3, 0.5])},
             "b": {"empathy": row(0.3, [0.15, 0.45]), "safety": row(0.6, [0.5, 0.7])}}
    with_bars = plot_pareto(table, "empathy", "safety", tmp_path / "with", synthetic=False)
    for r in table.values():
        for c in r.values():
            c["interval"] = None
    without = plot_pareto(table, "empathy", "safety", tmp_path / "without", synthetic=False)
    svg_with, svg_without = (next(p for p in paths if p.suffix == ".svg").read_text() for paths in (with_bars, without))
    assert "95% bootstrap intervals" in svg_with and "95% bootstrap intervals" not in svg_without
    # Each error bar is drawn as line segments: the plot with bars holds more paths.
    assert svg_with.count("<path") > svg_without.count("<path")


def test_pareto_plot_draws_an_interval_that_leaves_out_its_point(tmp_path):
    """A two-level percentile interval can miss the point estimate (close persona majorities move under
    resampling); the plot draws the interval where it is instead of failing on a negative error bar."""
    import re

    from training.pipeline.evaluation import plot_pareto

    table = {"a": {"empathy": {"average_pairwise_win_rate": 0.30, "interval": [0.32, 0.45]},
                   "safety": {"average_pairwise_win_rate": 0.50, "interval": [0.40, 0.60]}},
             "b": {"empathy": {"average_pairwise_win_rate": 0.60, "interval": [0.50, 0.70]},
                   "safety": {"average_pairwise_win_rate": 0.20, "interval": [0.05, 0.18]}}}
    paths = plot_pareto(table, "empathy", "safety", tmp_path / "outside", synthetic=False)
    svg = next(p for p in paths if p.suffix == ".svg").read_text()
    assert "95% bootstrap intervals" in svg and len(re.findall("<path", svg)) > 4
