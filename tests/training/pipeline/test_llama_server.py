"""The server generation backend against a real llama.cpp server (llama_cpp.server serving the packaged
SmolLM2 GGUF on loopback, started here), and a LoRA policy served by name on top of it (its PEFT
adapter converted by training.pipeline.lora_gguf). Slow: llama-cpp-python is built from source by `make install-server`
(about 15 minutes on 2 cores) and is not part of `make install`; `make test-slow` installs it and runs these."""
from __future__ import annotations

from unittest import mock

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

LORA_B_SCALE = 0.15  # the policy's shift of a log-probability well above llama.cpp's own numeric noise
TOP_TOKENS = 40
SEEDED_WORDS = 6
SCENARIOS = [
    Scenario("s0", "I moved to a new city and I feel lonely every evening."),
    Scenario("s1", "My exams are next week and I cannot stop panicking."),
]


@pytest.fixture(scope="module")
def policy_adapter(tmp_path_factory):
    """A LoRA policy on the packaged SmolLM2 (q, k, v and o projections; B drawn off zero, since a fresh
    adapter is the identity) saved as PEFT saves a trained one, and its llama.cpp LoRA GGUF."""
    import torch
    from peft import LoraConfig, get_peft_model

    from training.pipeline.lora_gguf import lora_adapter_to_gguf
    from training.pipeline.models import load_causal_lm, packaged_model_file

    folder = tmp_path_factory.mktemp("policy")
    model = get_peft_model(load_causal_lm("smollm2-135m-instruct"),
                           LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * LORA_B_SCALE)
    model.save_pretrained(folder / "adapter")
    base = packaged_model_file("smollm2-135m-instruct")
    converted = lora_adapter_to_gguf(folder / "adapter", base, folder / "policy.gguf")
    # The same adapter with q/k's B left in the Hugging Face row order: what a converter that forgot it would write.
    with mock.patch("training.pipeline.lora_gguf._permuted_rows", lambda rows, n_head: rows):
        unpermuted = lora_adapter_to_gguf(folder / "adapter", base, folder / "policy-unpermuted.gguf")
    return folder / "adapter", converted.path, unpermuted.path


@pytest.fixture(scope="module")
def llama(tmp_path_factory, policy_adapter):
    from training.pipeline.models import packaged_model_file

    gguf = packaged_model_file("smollm2-135m-instruct")
    log = tmp_path_factory.mktemp("llama") / "server.log"
    # The base, and the LoRA policy by name on the same GGUF (llama.cpp's --lora).
    with LlamaCppServer([ServedModel("smollm2", gguf, n_ctx=1024),
                         ServedModel("smollm2-policy", gguf, n_ctx=1024, lora_path=policy_adapter[1]),
                         ServedModel("smollm2-policy-unpermuted", gguf, n_ctx=1024, lora_path=policy_adapter[2])],
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
    # The seed goes through: the same settings in a new file give the same texts, another seed others. The
    # same texts as far as llama.cpp itself repeats them: on the portable AVX2 build a repeated seeded
    # request's text parted from the first after 13-14 words (numerics, not the seed: greedy repeats
    # exactly), so the openings are compared.
    def opening(answers):
        return {sid: [" ".join(text.split()[:SEEDED_WORDS]) for text in texts] for sid, texts in answers.items()}

    again = generate_with_server(_server(llama), SCENARIOS, n=2, sampling=_sampled(7))
    assert opening(again.answers) == opening(result.answers)
    other = generate_with_server(_server(llama), SCENARIOS[:1], n=1, sampling=_sampled(8))
    assert opening(other.answers)["s0"][0] != opening(result.answers)["s0"][0]
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


def _served_first_token_logprobs(llama, model: str, prompt: str) -> dict[str, float]:
    import httpx

    reply = httpx.post(f"{llama.url}/completions", json={"model": model, "prompt": prompt, "max_tokens": 1, "temperature": 0,
                                                          "logprobs": TOP_TOKENS}, timeout=120)
    reply.raise_for_status()
    return reply.json()["choices"][0]["logprobs"]["top_logprobs"][0]


def _local_first_token_logprobs(model, tokenizer, prompt: str) -> dict[str, float]:
    import torch

    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0, -1].float(), dim=-1)
    best = torch.topk(logprobs, 10 * TOP_TOKENS)
    found: dict[str, float] = {}
    for token_id, value in zip(best.indices.tolist(), best.values.tolist()):
        found.setdefault(tokenizer.decode([token_id]), value)
    return found


def _correlation(xs, ys) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    return cov / ((sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys)) ** 0.5)


def test_a_lora_policy_served_by_name_shifts_the_next_token_as_in_transformers(llama, policy_adapter):
    """The converted adapter is the trained one: how the policy moves the first answer token's log-probabilities
    away from the base's, on the server (base and policy by name) and in transformers (the PEFT model with and
    without its adapter), agrees token by token; the same adapter converted without llama.cpp's q/k row order
    agrees less. Log-probabilities, not greedy texts: llama.cpp runs the Q4_1 weights with 8-bit
    activations where transformers runs them dequantized, which moves logits by about half a nat and so flips
    near-ties in a greedy text, not the adapter's effect."""
    from peft import PeftModel

    from training.pipeline.generation import build_chat_prompt
    from training.pipeline.models import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    model = PeftModel.from_pretrained(load_causal_lm("smollm2-135m-instruct"), str(policy_adapter[0]))
    agreement = {"smollm2-policy": [], "smollm2-policy-unpermuted": []}
    for scenario in SCENARIOS:
        prompt = build_chat_prompt(tokenizer, scenario.prompt, None)
        local_policy = _local_first_token_logprobs(model, tokenizer, prompt)
        with model.disable_adapter():
            local_base = _local_first_token_logprobs(model, tokenizer, prompt)
        served_base = _served_first_token_logprobs(llama, "smollm2", prompt)
        for name in agreement:
            served_policy = _served_first_token_logprobs(llama, name, prompt)
            tokens = [t for t in served_policy if t in served_base and t in local_policy and t in local_base]
            assert len(tokens) >= 5, (name, tokens)
            served_shift = [served_policy[t] - served_base[t] for t in tokens]
            local_shift = [local_policy[t] - local_base[t] for t in tokens]
            assert max(abs(x) for x in local_shift) > 0.5  # the adapter does move them
            agreement[name].append(_correlation(served_shift, local_shift))
    assert min(agreement["smollm2-policy"]) > 0.95, agreement
    # Most of the shift comes from v and o, which need no reordering, so the wrong q/k order shows as a
    # larger disagreement rather than none: measured about 8 times the right order's (1 - correlation)
    # (correlations 0.81 and 0.92 against 0.98 and 0.99 for the two scenarios, 40 tokens each).
    wrong, right = (sum(1 - c for c in agreement[name]) / len(SCENARIOS) for name in ("smollm2-policy-unpermuted", "smollm2-policy"))
    assert wrong > 2 * right, agreement


def test_a_lora_policy_is_asked_for_by_name_through_the_backend(llama):
    sampling = SamplingSettings(max_new_tokens=12)
    completions = {"api": "completions", "prompt_model": "smollm2-135m-instruct"}
    served = generate_answers_with_server(_server(llama, model="smollm2-policy", **completions), SCENARIOS, sampling=sampling)
    base = generate_answers_with_server(_server(llama, **completions), SCENARIOS, sampling=sampling)
    assert served != base  # the server applied the adapter the request named
