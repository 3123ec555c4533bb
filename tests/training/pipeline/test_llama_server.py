"""The server generation backend against a real llama.cpp server (llama_cpp.server serving the packaged
SmolLM2 GGUF on loopback, started here). Slow: llama-cpp-python is built from source by `make install-server`
(about 15 minutes on 2 cores) and is not part of `make install`; `make test-slow` installs it and runs these."""
from __future__ import annotations

import pytest

from training.pipeline.generation import SamplingSettings, scenario_seed
from training.pipeline.io import Scenario, read_jsonl
from training.pipeline.llama_server import LlamaCppServer, ServedModel, llama_cpp_installed
from training.pipeline.server_generation import (
    ServerGenerationError,
    generate_answers_with_server,
    generate_with_server,
    server_config,
    server_problem,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not llama_cpp_installed(), reason="llama-cpp-python[server] is not installed (make install-server)"),
]

SCENARIOS = [
    Scenario("s0", "I moved to a new city and I feel lonely every evening."),
    Scenario("s1", "My exams are next week and I cannot stop panicking."),
]


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from training.pipeline.models import packaged_model_file

    gguf = packaged_model_file("smollm2-135m-instruct")
    log = tmp_path_factory.mktemp("llama") / "server.log"
    # Two names for one GGUF: the base, and a name standing where a LoRA policy would be served (lora_path).
    with LlamaCppServer([ServedModel("smollm2", gguf, n_ctx=1024), ServedModel("smollm2-policy", gguf, n_ctx=1024)],
                        log_path=log) as server:
        yield server


def _sampled(seed: int) -> SamplingSettings:
    return SamplingSettings(do_sample=True, temperature=0.8, top_p=0.95, max_new_tokens=24, seed=seed,
                            system_prompt="Reply warmly and briefly.")


def _server(llama, **overrides) -> dict:
    return {"base_url": llama.url, "model": "smollm2", "api_key_env": None, "max_concurrency": 2, "timeout_s": 120.0,
            **overrides}


def test_candidates_from_llama_cpp_are_seeded_per_row_and_recorded(llama, tmp_path):
    out = tmp_path / "c.jsonl"
    result = generate_with_server(_server(llama), SCENARIOS, n=2, sampling=_sampled(7), output_path=out)
    assert (result.generated, result.failed) == (2, 0) and result.new_tokens > 0
    records = {r["scenario_id"]: r for r in read_jsonl(out)}
    for scenario in SCENARIOS:
        record = records[scenario.scenario_id]
        assert len(record["responses"]) == 2 and all(len(text.split()) >= 3 for text in record["responses"])
        assert record["generation"]["sample_seeds"] == [scenario_seed(7, scenario.scenario_id, j) for j in range(2)]
        assert record["generation"]["server"]["served_model"]  # the name llama.cpp answered with
        assert set(record["generation"]["finish_reasons"]) <= {"stop", "length"}
    # The seed goes through: the same settings in a new file give the same texts, another seed others.
    again = generate_with_server(_server(llama), SCENARIOS, n=2, sampling=_sampled(7))
    assert again.answers == result.answers
    other = generate_with_server(_server(llama), SCENARIOS[:1], n=1, sampling=_sampled(8))
    assert other.answers["s0"][0] != result.answers["s0"][0]
    # Resume: nothing left to ask.
    rerun = generate_with_server(_server(llama), SCENARIOS, n=2, sampling=_sampled(7), output_path=out)
    assert (rerun.generated, rerun.skipped) == (0, 2)


def test_greedy_answers_by_model_name_and_the_start_check(llama, tmp_path):
    out = tmp_path / "answers.jsonl"
    answers = generate_answers_with_server(_server(llama, model="smollm2-policy"), SCENARIOS[:1],
                                           sampling=SamplingSettings(max_new_tokens=16), output_path=out)
    assert len(answers["s0"][0].split()) >= 3
    assert read_jsonl(out)[0]["generation"]["server"]["requested_model"] == "smollm2-policy"
    assert server_problem(server_config(_server(llama, model="smollm2-policy"))) is None
    problem = server_problem(server_config(_server(llama, model="mistral-7b")))
    assert "does not list the model 'mistral-7b'" in problem and "smollm2" in problem


def test_llama_cpp_ignores_n_which_is_caught_not_stored(llama, tmp_path):
    # llama_cpp.server drops `n` from the request and answers with one choice: "per_sample" is the mode to use.
    with pytest.raises(ServerGenerationError, match="asked for 2 choices, got 1"):
        generate_with_server(_server(llama, sampling_requests="n", max_retries=0), SCENARIOS[:1], n=2,
                             sampling=SamplingSettings(do_sample=True, max_new_tokens=8), output_path=tmp_path / "n.jsonl")
    assert not (tmp_path / "n.jsonl").exists()
