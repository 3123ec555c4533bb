"""Candidate generation on a tiny model: n per scenario, seeded, batch-independent, resumable, left-padded."""
from __future__ import annotations

import json

import pytest

from training.pipeline.control import RunControl
from training.pipeline.generation import (
    CandidateGenerationConfig,
    PerRowSampler,
    SamplingSettings,
    build_chat_prompt,
    encode_prompts,
    generate_answers,
    generate_candidates,
)
from training.pipeline.io import read_jsonl


@pytest.fixture
def scenarios_path(tmp_path):
    path = tmp_path / "scenarios.jsonl"
    prompts = ["I feel low.", "My partner left and I cannot sleep at all these days.", "Work is hard.",
               "I keep thinking it was my fault that everything went wrong last year.", "Nobody calls me."]
    path.write_text("".join(json.dumps({"scenario_id": f"s{i}", "prompt": p, "split": "train" if i < 4 else "test"}) + "\n"
                            for i, p in enumerate(prompts)))
    return path


def _config(model, scenarios_path, out, **kw):
    base = dict(model=str(model), scenarios_path=str(scenarios_path), output_path=str(out), n=3, max_new_tokens=6,
                batch_size=4, progress_bar=False)
    base.update(kw)
    return CandidateGenerationConfig(**base)


def test_n_responses_per_scenario_and_record_format(tiny_lm_dir, scenarios_path, tmp_path):
    progress = []
    result = generate_candidates(_config(tiny_lm_dir, scenarios_path, tmp_path / "c.jsonl", split="train"),
                                 RunControl(on_progress=lambda done, total, loss: progress.append((done, total))))
    records = read_jsonl(tmp_path / "c.jsonl")
    assert result.generated == 4 and result.total == 4 and not result.stopped
    assert sorted(r["scenario_id"] for r in records) == ["s0", "s1", "s2", "s3"]
    for record in records:
        assert len(record["responses"]) == 3 and all(isinstance(t, str) for t in record["responses"])
        assert record["model"] == str(tiny_lm_dir)
        assert {"temperature", "top_p", "max_new_tokens", "seed", "system_prompt"} <= set(record["generation"])
        assert record["generation"]["temperature"] == 0.8 and record["generation"]["top_p"] == 0.95
    assert progress[0] == (0, 4) and progress[-1] == (4, 4)
    assert len({t for r in records for t in r["responses"]}) > 4  # sampled, not copies


def test_seeded_and_independent_of_batching(tiny_lm_dir, scenarios_path, tmp_path):
    a = generate_candidates(_config(tiny_lm_dir, scenarios_path, tmp_path / "a.jsonl", batch_size=8))
    b = generate_candidates(_config(tiny_lm_dir, scenarios_path, tmp_path / "b.jsonl", batch_size=1))
    c = generate_candidates(_config(tiny_lm_dir, scenarios_path, tmp_path / "c.jsonl", seed=1))
    by_id = lambda p: {r["scenario_id"]: r["responses"] for r in read_jsonl(p)}  # noqa: E731
    assert by_id(a.output_path) == by_id(b.output_path)
    assert by_id(a.output_path) != by_id(c.output_path)


def test_interrupt_then_resume_skips_done(tiny_lm_dir, scenarios_path, tmp_path):
    out = tmp_path / "c.jsonl"
    calls = {"n": 0}

    def stop_after_first_batch():
        calls["n"] += 1
        return calls["n"] > 1

    first = generate_candidates(_config(tiny_lm_dir, scenarios_path, out, batch_size=3), RunControl(stop_check=stop_after_first_batch))
    assert first.stopped and first.generated == 1  # 3 rows = one scenario's 3 samples
    done = {r["scenario_id"] for r in read_jsonl(out)}
    with open(out, "a") as handle:
        handle.write('{"scenario_id": "half')  # a crash mid-append is repaired on resume
    second = generate_candidates(_config(tiny_lm_dir, scenarios_path, out, batch_size=3))
    assert second.skipped == 1 and second.generated == 4 and not second.stopped
    records = read_jsonl(out)
    assert len(records) == 5 and len({r["scenario_id"] for r in records}) == 5
    # Same results as an uninterrupted run.
    whole = generate_candidates(_config(tiny_lm_dir, scenarios_path, tmp_path / "whole.jsonl", batch_size=3))
    assert {r["scenario_id"]: r["responses"] for r in records} == {r["scenario_id"]: r["responses"] for r in read_jsonl(whole.output_path)}
    assert done <= {r["scenario_id"] for r in records}
    again = generate_candidates(_config(tiny_lm_dir, scenarios_path, out, batch_size=3))
    assert again.generated == 0 and again.skipped == 5


def test_resume_refuses_other_settings(tiny_lm_dir, scenarios_path, tmp_path):
    out = tmp_path / "c.jsonl"
    generate_candidates(_config(tiny_lm_dir, scenarios_path, out, limit=1))
    with pytest.raises(ValueError, match="different settings"):
        generate_candidates(_config(tiny_lm_dir, scenarios_path, out, temperature=0.5))


def test_left_padding_and_chat_template(tiny_lm_dir):
    from training.pipeline.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_lm_dir)
    prompts = [build_chat_prompt(tokenizer, text, "Be kind.") for text in ("hi", "a much longer message than the other")]
    assert prompts[0].startswith("<|im_start|>system\nBe kind.") and prompts[0].endswith("<|im_start|>assistant\n")
    batch = encode_prompts(tokenizer, prompts)
    mask = batch["attention_mask"]
    assert mask[0, 0] == 0 and mask[0, -1] == 1 and mask[1].all()  # padding on the left of the short one
    assert batch["input_ids"][0, 0] == tokenizer.pad_token_id
    assert tokenizer.padding_side == "right"  # left untouched for other users


def test_sampler_respects_top_p():
    import torch

    scores = torch.tensor([[5.0, 4.9, -10.0, -10.0]] * 3)
    sampler = PerRowSampler([1, 2, 3], temperature=1.0, top_p=0.5)
    for _ in range(20):
        out = sampler(None, scores)
        assert (out.argmax(dim=-1) == 0).all()  # only the top token is inside top-p 0.5


def test_sampling_settings_record_what_is_sent_and_refuse_what_cannot_run():
    greedy = SamplingSettings(temperature=0.7, top_p=0.9, max_new_tokens=5, seed=2, system_prompt="Be kind.")
    assert greedy.record() == {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 5, "seed": 2, "system_prompt": "Be kind."}
    sampled = SamplingSettings(do_sample=True, temperature=0.7, top_p=0.9)
    assert (sampled.record()["temperature"], sampled.record()["top_p"]) == (0.7, 0.9)
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingSettings(max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature > 0"):
        SamplingSettings(do_sample=True, temperature=0.0)
    SamplingSettings(temperature=0.0)  # greedy ignores the temperature
    config = CandidateGenerationConfig(model="m", scenarios_path="s", output_path="o", temperature=0.6, seed=4)
    assert config.sampling == SamplingSettings(do_sample=True, temperature=0.6, seed=4, system_prompt=config.system_prompt)


def test_generate_answers_greedy_and_resume(tiny_lm_dir, scenarios_path, tmp_path):
    out = tmp_path / "answers.jsonl"
    greedy = SamplingSettings(max_new_tokens=5)
    answers = generate_answers(str(tiny_lm_dir), None, scenarios_path, n=2, sampling=greedy, output_path=out)
    assert len(answers) == 5 and all(len(v) == 2 and v[0] == v[1] for v in answers.values())
    resumed = generate_answers(str(tiny_lm_dir), None, scenarios_path, n=2, sampling=greedy, output_path=out, loaded=("unused", None))
    assert resumed == answers
    sampled = SamplingSettings(do_sample=True, max_new_tokens=5, seed=3)
    assert generate_answers(str(tiny_lm_dir), None, scenarios_path, n=2, sampling=sampled) == generate_answers(
        str(tiny_lm_dir), None, scenarios_path, n=2, sampling=sampled)
