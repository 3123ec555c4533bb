"""The server generation backend against a stand-in OpenAI-compatible server on loopback (protocol and
failure behaviour); tests/training/pipeline/test_llama_server.py runs it against a real llama.cpp server."""
from __future__ import annotations

import json
import time

import pytest

from training.pipeline.control import RunControl
from training.pipeline.generation import CandidateGenerationConfig, SamplingSettings, build_chat_prompt, scenario_seed
from training.pipeline.io import PipelineConfigError, Scenario, read_jsonl
from training.pipeline.judges.http import HTTPJudge, HTTPJudgeConfig
from training.pipeline.judges.loopback import LoopbackChatServer
from training.pipeline.openai_client import ClientSettings, OpenAIClient, ServerMisconfigured
from training.pipeline.server_generation import (
    ServerGenerationError,
    generate_answers_with_server,
    generate_candidates_with_server,
    generate_with_server,
    server_config,
    server_problem,
)

SCENARIOS = [Scenario(f"s{i}", f"I have been feeling low for {i + 1} weeks.") for i in range(4)]
SAMPLED = SamplingSettings(do_sample=True)


def echo(payload: dict) -> str:
    """A reply that shows what was asked, so tests can read the request back from the stored text."""
    asked = payload.get("messages", payload.get("prompt"))
    user = asked[-1]["content"] if isinstance(asked, list) else asked
    return f"seed={payload.get('seed')} t={payload.get('temperature')} p={payload.get('top_p')} | {user}"


@pytest.fixture
def server():
    with LoopbackChatServer(echo, models=("smol", "dpo_empathy"), answer_model="smol-served-q4") as running:
        yield running


def _server(server, **overrides) -> dict:
    spec = dict(base_url=server.url, model="smol", backoff_initial_s=0.01, backoff_max_s=0.05, timeout_s=5.0)
    spec.update(overrides)
    return spec


def test_candidates_pass_sampling_settings_and_a_seed_per_row(server, tmp_path):
    out = tmp_path / "c.jsonl"
    sampling = SamplingSettings(do_sample=True, temperature=0.7, top_p=0.9, max_new_tokens=17, seed=5, system_prompt="Be kind.")
    result = generate_with_server(_server(server), SCENARIOS, n=3, sampling=sampling, output_path=out)
    assert (result.generated, result.skipped, result.failed, result.stopped) == (4, 0, 0, False)
    assert server.requests == 12  # one request per (scenario, sample)
    payload = server.payloads[0]
    assert payload["model"] == "smol" and payload["max_tokens"] == 17 and "n" not in payload
    assert payload["messages"] == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": payload["messages"][1]["content"]}]
    records = {r["scenario_id"]: r for r in read_jsonl(out)}
    for scenario in SCENARIOS:
        record = records[scenario.scenario_id]
        seeds = [scenario_seed(5, scenario.scenario_id, j) for j in range(3)]
        assert record["responses"] == [f"seed={s} t=0.7 p=0.9 | {scenario.prompt}" for s in seeds]
        generation = record["generation"]
        assert generation["sample_seeds"] == seeds and generation["finish_reasons"] == ["stop"] * 3
        assert generation["backend"] == "server" and generation["max_new_tokens"] == 17
        assert generation["server"] == {"requested_model": "smol", "api": "chat", "sampling_requests": "per_sample",
                                        "served_model": "smol-served-q4"}
        assert record["model"] == "server:smol"
    assert result.served_models == ["smol-served-q4"] and result.new_tokens > 0


def test_n_in_one_request(server, tmp_path):
    result = generate_with_server(_server(server, sampling_requests="n"), SCENARIOS[:2], n=4,
                                  sampling=SamplingSettings(do_sample=True, seed=1))
    assert server.requests == 2 and all(p["n"] == 4 for p in server.payloads)
    seeds = {p["messages"][-1]["content"]: p["seed"] for p in server.payloads}
    assert seeds == {s.prompt: scenario_seed(1, s.scenario_id, 0) for s in SCENARIOS[:2]}
    assert all(len(texts) == 4 for texts in result.answers.values())


def test_too_few_choices_is_a_malformed_reply(tmp_path):
    # A server that ignores n answers with one choice: retried, then reported, never stored as if complete.
    with LoopbackChatServer(echo, models=("smol",)) as one_choice:
        one_choice.reply = echo
        for _ in range(3):
            one_choice.then_body(json.dumps({"model": "smol", "choices": [{"index": 0, "message": {"content": "x"}}]}))
        with pytest.raises(ServerGenerationError, match="asked for 2 choices, got 1") as caught:
            generate_with_server(_server(one_choice, sampling_requests="n", max_retries=2), SCENARIOS[:1], n=2,
                                 sampling=SAMPLED, output_path=tmp_path / "c.jsonl")
    assert caught.value.retryable and not (tmp_path / "c.jsonl").exists()


def test_greedy_answers_are_one_request_copied(server):
    answers = generate_answers_with_server(_server(server), SCENARIOS[:2], n=2, sampling=SamplingSettings(seed=3))
    assert server.requests == 2
    assert all(p["temperature"] == 0.0 and p["top_p"] == 1.0 for p in server.payloads)
    assert answers["s0"][0] == answers["s0"][1] and answers["s0"][0].startswith(f"seed={scenario_seed(3, 's0', 0)} t=0.0")


def test_lora_adapter_is_asked_for_by_name(server, tmp_path):
    out = tmp_path / "answers.jsonl"
    generate_answers_with_server(_server(server, model="dpo_empathy"), SCENARIOS[:1], output_path=out)
    assert server.payloads[0]["model"] == "dpo_empathy"
    assert read_jsonl(out)[0]["generation"]["server"]["requested_model"] == "dpo_empathy"


def test_resume_skips_stored_scenarios_and_refuses_other_settings(server, tmp_path):
    out = tmp_path / "c.jsonl"
    asked = []

    def stop_after_two():
        asked.append(1)
        return len(read_jsonl(out)) >= 2 if out.exists() else False

    first = generate_with_server(_server(server, max_concurrency=1), SCENARIOS, n=2, sampling=SAMPLED, output_path=out,
                                 control=RunControl(stop_check=stop_after_two))
    assert first.stopped and first.generated == 2 and server.requests == 4
    progress = []
    second = generate_with_server(_server(server), SCENARIOS, n=2, sampling=SAMPLED, output_path=out,
                                  control=RunControl(on_progress=lambda done, total, loss: progress.append((done, total))))
    assert (second.generated, second.skipped) == (2, 2) and server.requests == 8
    assert progress[0] == (2, 4) and progress[-1] == (4, 4)
    assert sorted(r["scenario_id"] for r in read_jsonl(out)) == ["s0", "s1", "s2", "s3"]
    third = generate_with_server(_server(server), SCENARIOS, n=2, sampling=SAMPLED, output_path=out)
    assert third.generated == 0 and server.requests == 8  # nothing left to ask
    with pytest.raises(ValueError, match="different settings"):
        generate_with_server(_server(server), SCENARIOS, n=2, sampling=SamplingSettings(do_sample=True, temperature=0.5),
                             output_path=out)
    with pytest.raises(ValueError, match="different settings"):
        generate_with_server(_server(server, model="dpo_empathy"), SCENARIOS, n=2, sampling=SAMPLED, output_path=out)


def test_429_and_5xx_are_retried_with_retry_after(server, tmp_path):
    server.then_status(429, {"Retry-After": "1"}).then_status(503)
    started = time.monotonic()
    result = generate_with_server(_server(server, max_concurrency=1), SCENARIOS[:1], output_path=tmp_path / "a.jsonl")
    assert time.monotonic() - started >= 0.95  # Retry-After, not the 0.01 s backoff
    assert result.generated == 1 and server.requests == 3 and result.stats["transport_retries"] == 2


def test_timeouts_and_malformed_replies_are_retried(server, tmp_path):
    server.then_delay(1.5).then_body("{not json").then_body(json.dumps({"choices": []}))
    result = generate_with_server(_server(server, timeout_s=0.5, max_concurrency=1), SCENARIOS[:1])
    assert result.generated == 1 and server.requests == 4
    assert result.stats["malformed_replies"] == 2 and result.stats["transport_retries"] == 3


def test_exhausted_retries_keep_the_rest_and_a_rerun_finishes(server, tmp_path):
    out = tmp_path / "c.jsonl"
    for _ in range(3):
        server.then_status(500)
    with pytest.raises(ServerGenerationError, match="1 of 4 scenarios got no reply") as caught:
        generate_with_server(_server(server, max_retries=2, max_concurrency=1), SCENARIOS, output_path=out)
    assert caught.value.retryable and len(read_jsonl(out)) == 3
    rerun = generate_with_server(_server(server), SCENARIOS, output_path=out)
    assert (rerun.generated, rerun.skipped) == (1, 3)


def test_misconfigured_and_rejected_requests_stop_at_once(server, tmp_path):
    server.then_status(401)
    with pytest.raises(ServerMisconfigured, match="401"):
        generate_with_server(_server(server, max_concurrency=1), SCENARIOS[:1])
    server.then_status(400, body=json.dumps({"error": "max_tokens too large"}))
    with pytest.raises(ServerGenerationError, match="max_tokens too large") as caught:
        generate_with_server(_server(server, max_concurrency=1), SCENARIOS[:1])
    assert not caught.value.retryable


def test_concurrency_is_bounded():
    with LoopbackChatServer(echo, latency_s=0.1, models=("smol",)) as slow:
        result = generate_with_server(_server(slow, max_concurrency=3), [Scenario(f"s{i}", "hi") for i in range(6)],
                                      n=2, sampling=SAMPLED)
    # Three requests were in flight together, never more: bounded, and used (a wall-time bound here
    # failed on a loaded machine).
    assert result.generated == 6 and slow.max_in_flight == 3


def test_completions_api_sends_the_local_backends_prompt(server, tiny_lm_dir):
    from training.pipeline.models import load_tokenizer

    generate_with_server(_server(server, api="completions", prompt_model=str(tiny_lm_dir)), SCENARIOS[:1],
                         sampling=SamplingSettings(system_prompt="Be kind."))
    assert server.payloads[0]["prompt"] == build_chat_prompt(load_tokenizer(tiny_lm_dir), SCENARIOS[0].prompt, "Be kind.")


def test_candidate_stage_settings(server, tmp_path):
    scenarios = tmp_path / "scenarios.jsonl"
    scenarios.write_text("".join(json.dumps({"scenario_id": s.scenario_id, "prompt": s.prompt, "split": "train" if i < 3 else "test"}) + "\n"
                                 for i, s in enumerate(SCENARIOS)))
    config = CandidateGenerationConfig(model="unused-here", scenarios_path=str(scenarios), output_path=str(tmp_path / "c.jsonl"),
                                       n=2, max_new_tokens=9, seed=4, split="train", limit=2)
    result = generate_candidates_with_server(config, _server(server))
    assert result.generated == 2 and server.requests == 4
    assert all(p["max_tokens"] == 9 and p["temperature"] == 0.8 and p["top_p"] == 0.95 for p in server.payloads)


def test_server_settings_are_checked():
    with pytest.raises(PipelineConfigError, match="unknown key 'modle'"):
        server_config({"base_url": "http://127.0.0.1:1/v1", "modle": "x"})
    with pytest.raises(PipelineConfigError, match="base_url: must start with http"):
        server_config({"base_url": "127.0.0.1:8000", "model": "x"})
    with pytest.raises(PipelineConfigError, match="prompt_model"):
        server_config({"base_url": "http://h/v1", "model": "x", "api": "completions"})
    with pytest.raises(PipelineConfigError, match="api: must be one of"):
        server_config({"base_url": "http://h/v1", "model": "x", "api": "rpc"})
    with pytest.raises(PipelineConfigError, match="base_url: must not contain spaces or control characters"):
        server_config({"base_url": "http://127.0.0.1:1/v1\x00", "model": "x"})
    with pytest.raises(PipelineConfigError, match="extra_body: seed"):
        server_config({"base_url": "http://h/v1", "model": "x", "extra_body": {"seed": 1}})


def test_server_problem_reachable_listed_or_not(server):
    assert server_problem(server_config(_server(server))) is None
    problem = server_problem(server_config(_server(server, model="mistral")))
    assert "does not list the model 'mistral'" in problem and "smol, dpo_empathy" in problem
    with LoopbackChatServer() as gone:
        url = gone.url
    assert "not usable" in server_problem(server_config({"base_url": url, "model": "smol"}))
    assert "not a usable address" in server_problem(server_config({"base_url": "http://[::1/v1", "model": "smol"}))


def test_the_judge_and_the_generator_carry_one_set_of_transport_settings():
    """One declaration (ClientSettings) with each backend's defaults; an unknown key lists the required first."""
    judge = HTTPJudgeConfig(base_url="http://h/v1", model="m")
    generator = server_config({"base_url": "http://h/v1", "model": "m"})
    assert isinstance(judge, ClientSettings) and isinstance(generator, ClientSettings)
    assert ClientSettings.of(judge) == ClientSettings(base_url="http://h/v1")  # the judge keeps the client's defaults
    assert (ClientSettings.of(generator).timeout_s, generator.api_key_env, generator.backoff_max_s) == (300.0, None, 30.0)
    with pytest.raises(ValueError, match="max_concurrency"):
        HTTPJudgeConfig(base_url="http://h/v1", model="m", max_concurrency=0)  # the client's check, inherited
    with pytest.raises(PipelineConfigError, match=r"allowed: base_url, model, api_key_env, timeout_s, max_concurrency, "):
        server_config({"base_url": "http://h/v1", "model": "m", "tiemout_s": 5})


def test_the_judge_and_the_generator_share_one_client(server, tmp_path):
    judge = HTTPJudge(HTTPJudgeConfig(base_url=server.url, model="smol", api_key_env=None))
    assert type(judge.client) is OpenAIClient
    assert judge.client.list_models() == ["smol", "dpo_empathy"]


def test_a_run_control_object_reports_and_stops(server, tmp_path):
    class Control:
        def __init__(self):
            self.seen = []

        def progress(self, done, total, loss=None):
            self.seen.append((done, total))

        def should_stop(self):
            return len(self.seen) >= 2

    control = Control()
    result = generate_with_server(_server(server, max_concurrency=1), SCENARIOS, output_path=tmp_path / "a.jsonl",
                                  control=control)
    assert result.stopped and result.generated == 1 and control.seen == [(0, 4), (1, 4)]
