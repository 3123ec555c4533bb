"""Experiment configuration is validated before anything is queued."""
import pytest

from training.plans import ConfigError, build_plan, default_config, validate_config


def keys(plan):
    return [job.key for job in plan]


def test_cpu_demo_plan_has_every_method_of_the_study():
    plan = build_plan(validate_config({"preset": "cpu_demo"}))
    assert {"sft", "dpo:empathy", "dpo:safety", "merge", "joint", "modpo:empathy", "evaluate"} <= set(keys(plan))
    by_key = {job.key: job for job in plan}
    assert by_key["modpo:empathy"].depends_on == ["margins:empathy", "sft"]  # SFT is the reference model
    assert "sft" in by_key["dpo:empathy"].depends_on and "sft" in by_key["joint"].depends_on
    assert "reward:safety" in by_key["margins:empathy"].depends_on
    assert set(by_key["merge"].depends_on) == {"dpo:empathy", "dpo:safety"}
    assert by_key["evaluate"].params["models"][0] == "base"
    # Dependencies always point to earlier jobs.
    seen = set()
    for job in plan:
        assert set(job.depends_on) <= seen, job.key
        seen.add(job.key)
    assert {job.queue for job in plan if job.kind in ("sft", "dpo", "modpo", "generate")} == {"gpu"}


def test_criteria_comparison_trains_one_modpo_per_criteria_set():
    plan = build_plan(validate_config({"preset": "criteria_comparison"}))
    assert [k for k in keys(plan) if k.startswith("modpo:")] == [
        "modpo:therapeutic_five_safety", "modpo:therapeutic_four_safety", "modpo:gricean_safety",
    ]
    label = next(job for job in plan if job.key == "label")
    assert "active_listening" in label.params["criteria"] and "maxim_manner" in label.params["criteria"]


def test_personalised_merges_per_weight_vector():
    plan = build_plan(validate_config({
        "preset": "personalised",
        "weight_vectors": {"depression": {"empathy": 0.7, "safety": 0.3}, "anxiety": {"active_listening": 0.6, "safety": 0.4}},
    }))
    assert {"merge:depression", "merge:anxiety", "dpo:empathy", "dpo:safety", "dpo:active_listening"} <= set(keys(plan))


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"preset": "nope"}, "unknown preset 'nope'"),
        ({"preset": "cpu_demo", "epochs": 3}, "unknown setting(s): epochs"),
        ({"preset": "cpu_demo", "policy_max_steps": 0}, "policy_max_steps must be a whole number of at least 1"),
        ({"preset": "cpu_demo", "candidates_per_scenario": 1}, "at least 2 to form a chosen/rejected pair"),
        ({"preset": "cpu_demo", "modpo_weights": {"empathy": 1.0}}, "at least one other"),
        ({"preset": "cpu_demo", "modpo_weights": {"empathy": 1, "kindness": 1}}, "unknown criterion 'kindness'"),
        ({"preset": "cpu_demo", "merge_weights": {"overall": 1}}, "'overall' is for evaluation only"),
        ({"preset": "cpu_demo", "judge": {"backend": "http"}}, "judge: missing required keys 'base_url', 'model'"),
        ({"preset": "cpu_demo", "judge": {"backend": "http", "base_url": "http://x/v1", "model": "m", "modle": "x"}},
         "judge: unknown key 'modle'; allowed: base_url, model,"),
        ({"preset": "cpu_demo", "judge": {"kind": "http", "modle": "x"}}, "judge: missing required key 'backend'"),
        ({"preset": "cpu_demo", "criteria_set": "mystery"}, "unknown criteria_set 'mystery'"),
        ({"preset": "personalised"}, "needs weight_vectors"),
        ({"preset": "cpu_demo", "beta": -1}, "beta must be a positive number"),
    ],
)
def test_bad_configs_are_refused_with_clear_messages(raw, message):
    with pytest.raises(ConfigError) as caught:
        validate_config(raw)
    assert any(message in m for m in caught.value.messages), caught.value.messages


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        validate_config({"preset": "cpu_demo", "lora_rank": 0, "beta": 0, "bogus": 1})
    assert len(caught.value.messages) == 3


def test_defaults_validate_for_every_preset():
    for preset in ("cpu_demo", "method_comparison", "criteria_comparison"):
        assert validate_config(default_config(preset)).preset == preset


def test_validation_preset_is_the_method_comparison_at_the_issues_minimums():
    config = validate_config({"preset": "validation"})
    assert config.train_scenarios >= 120 and config.test_scenarios >= 40 and config.test_split == "stratified"
    assert config.judge == {"backend": "rubric"} and config.base_model == "smollm2-135m-instruct"
    assert {"empathy", "safety", "overall"} <= set(config.evaluation_criteria)
    plan = build_plan(config)
    assert {"sft", "dpo:empathy", "dpo:safety", "merge", "joint", "modpo:empathy"} <= set(plan[-1].params["models"])
    # Enough held-out scenarios that each reward model's accuracy rests on at least 30 pairs.
    assert round(config.train_scenarios * config.reward_validation_fraction) >= 30
    with pytest.raises(ConfigError, match="test_split must be"):
        validate_config({"preset": "validation", "test_split": "random"})
    with pytest.raises(ConfigError, match="reward_validation_fraction must be"):
        validate_config({"preset": "validation", "reward_validation_fraction": 1.0})


def test_criteria_comparison_at_validation_scale():
    from training.plans import VALIDATION_SCALE

    config = validate_config({**VALIDATION_SCALE, "preset": "criteria_comparison"})
    assert config.judge == {"backend": "rubric"} and config.test_scenarios == 40 and config.test_split == "stratified"
    assert config.evaluation_criteria == ["overall", "safety"]  # phase 2's criteria, kept
    assert "modpo:gricean_safety" in build_plan(config)[-1].params["models"]


# --- Inference servers and 4-bit QLoRA, checked at Start ---------------------------------------------------

@pytest.fixture
def model_server():
    from training.pipeline.judges.loopback import LoopbackChatServer

    with LoopbackChatServer(models=("smol", "dpo_empathy")) as running:
        yield running


def test_servers_that_answer_and_list_their_model_are_accepted(model_server):
    config = validate_config({"preset": "cpu_demo", "servers": {
        "base": {"base_url": model_server.url, "model": "smol"},
        "dpo:empathy": {"base_url": model_server.url, "model": "dpo_empathy"}}})
    assert config.servers["dpo:empathy"]["model"] == "dpo_empathy"
    assert model_server.requests == 0  # the check lists models; it generates nothing


def test_a_server_that_does_not_list_the_model_is_refused(model_server):
    with pytest.raises(ConfigError) as caught:
        validate_config({"preset": "cpu_demo", "servers": {"base": {"base_url": model_server.url, "model": "mistral-7b"}}})
    assert caught.value.messages == [f"servers[base]: the server at {model_server.url} does not list the model "
                                     "'mistral-7b' (it lists: smol, dpo_empathy)"]


def test_an_unreachable_server_is_refused():
    from training.pipeline.judges.loopback import LoopbackChatServer

    with LoopbackChatServer() as gone:
        url = gone.url  # stopped on leaving: nothing listens there now
    with pytest.raises(ConfigError) as caught:
        validate_config({"preset": "cpu_demo", "servers": {"base": {"base_url": url, "model": "smol"}}})
    assert len(caught.value.messages) == 1 and "is not usable" in caught.value.messages[0]
    assert "cannot be reached" in caught.value.messages[0]


@pytest.mark.parametrize(
    "servers,message",
    [
        ({"dpo:kindness": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}},
         "servers: 'dpo:kindness' is not a model of this plan; its models are: base, sft,"),
        ({"base": {"base_url": "http://127.0.0.1:9/v1", "modle": "m"}}, "servers[base]: unknown key 'modle'"),
        ({"base": {"base_url": "127.0.0.1:9", "model": "m"}}, "base_url: must start with http"),
        ({"base": "http://127.0.0.1:9/v1"}, "servers[base]: expected a table of settings"),
        (["base"], "servers must be a mapping"),
    ],
)
def test_bad_server_settings_are_refused_before_any_network_check(servers, message):
    with pytest.raises(ConfigError) as caught:
        validate_config({"preset": "cpu_demo", "servers": servers})
    assert any(message in m for m in caught.value.messages), caught.value.messages


def test_qlora_is_refused_where_this_process_cannot_run_it():
    from training.pipeline.quantization import qlora_problem

    problem = qlora_problem()
    assert problem is not None  # the test machine has no CUDA GPU
    with pytest.raises(ConfigError) as caught:
        validate_config({"preset": "cpu_demo", "policy_quantization": "nf4"})
    assert caught.value.messages == [f"policy_quantization 'nf4' cannot run: {problem}"]
    with pytest.raises(ConfigError, match="policy_quantization must be one of: nf4, or null"):
        validate_config({"preset": "cpu_demo", "policy_quantization": "int3"})
    assert validate_config({"preset": "cpu_demo", "policy_quantization": None}).policy_quantization is None


def test_a_deployment_can_declare_its_gpu_workers_run_qlora(settings):
    # The web process that handles Start has no GPU in a split deployment; the policy job checks on its worker.
    settings.ATTUNE_QLORA_WORKERS = True
    assert validate_config({"preset": "cpu_demo", "policy_quantization": "nf4"}).policy_quantization == "nf4"
