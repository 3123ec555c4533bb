"""An experiment whose base model and one policy are served by an OpenAI-compatible server (a stand-in on
loopback): candidates and those models' evaluation answers come from the server, the rest from the worker,
and every stored response says where it came from. And (slow) a whole experiment whose base is served by
a real llama.cpp server (llama_cpp.server with the packaged SmolLM2 GGUF, on loopback)."""
import json

import pytest

from core.models import Response
from core.services import scenario_bank_load
from training import services
from training.jobs.queue import inline_queue
from training.models import Job
from training.pipeline.io import read_jsonl
from training.pipeline.judges.loopback import LoopbackChatServer

from ..factories import TINY_DEMO

WORDS = "I hear how heavy this feels and I am glad you said it out loud here with me today".split()


def reply(payload: dict) -> str:
    """A short, varied reply per seed (the rubric judge needs candidates that differ)."""
    seed = int(payload.get("seed") or 0)
    return " ".join(WORDS[(seed + i) % len(WORDS)] for i in range(6 + seed % 7)) + "."


@pytest.mark.django_db(transaction=True)
def test_candidates_and_answers_through_a_server(published, researcher, settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path
    settings.MODEL_CACHE_DIR = tmp_path / "models"
    scenario_bank_load()
    with LoopbackChatServer(reply, models=("smol", "modpo_empathy"), answer_model="smol-q4") as server:
        config = {**TINY_DEMO, "servers": {"base": {"base_url": server.url, "model": "smol", "api_key_env": None},
                                           "modpo:empathy": {"base_url": server.url, "model": "modpo_empathy",
                                                             "api_key_env": None}}}
        experiment = services.experiment_start(name="served demo", config=config, actor=researcher)
        inline_queue.run_pending()
        failed = {job.key: job.error for job in experiment.jobs.exclude(state=Job.State.SUCCEEDED)}
        assert not failed, json.dumps(failed, indent=1)[:6000]
        asked = {p["model"] for p in server.payloads}
    assert asked == {"smol", "modpo_empathy"}
    generate = experiment.jobs.get(key="generate")
    candidates = read_jsonl(generate.result["candidates_path"])
    assert len(candidates) == 6 and all(len(c["responses"]) == 3 for c in candidates)
    assert all(c["generation"]["backend"] == "server" and c["generation"]["server"]["served_model"] == "smol-q4"
               for c in candidates)
    assert generate.lineage["server"]["requested_model"] == "smol" and generate.lineage["server"]["served_models"] == ["smol-q4"]
    evaluate = experiment.jobs.get(key="evaluate")
    answers = evaluate.result["answers_dir"]
    served = {name: read_jsonl(f"{answers}/{name}.jsonl")[0]["generation"].get("backend") for name in ("base", "modpo_empathy", "sft")}
    assert served == {"base": "server", "modpo_empathy": "server", "sft": None}  # sft answered in the worker
    response = Response.objects.filter(model_version__name="served demo/modpo:empathy").first()
    assert response.generation_settings["server"]["requested_model"] == "modpo_empathy"
    assert evaluate.lineage["servers"]["modpo:empathy"]["model"] == "modpo_empathy"


@pytest.mark.django_db(transaction=True)
def test_a_policy_job_on_a_worker_that_cannot_run_qlora_is_refused(published, researcher, settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path
    settings.MODEL_CACHE_DIR = tmp_path / "models"
    settings.ATTUNE_QLORA_WORKERS = True  # Start trusts the deployment; this worker has no CUDA
    scenario_bank_load()
    experiment = services.experiment_start(name="qlora demo", config={**TINY_DEMO, "policy_quantization": "nf4"},
                                           actor=researcher)
    inline_queue.run_pending()
    sft = experiment.jobs.get(key="sft")
    assert sft.state != Job.State.SUCCEEDED
    assert "policy_quantization 'nf4' cannot run on this worker: 4-bit QLoRA needs a CUDA GPU" in sft.error


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_whole_experiment_with_its_base_on_a_real_llama_cpp_server(published, researcher, settings, tmp_path):
    from training.pipeline.llama_server import LlamaCppServer, ServedModel, llama_cpp_installed
    from training.pipeline.models import packaged_model_file

    if not llama_cpp_installed():
        pytest.skip("llama-cpp-python[server] is not installed (make install-server)")
    settings.ARTIFACT_ROOT = tmp_path
    settings.MODEL_CACHE_DIR = tmp_path / "models"
    scenario_bank_load()
    with LlamaCppServer([ServedModel("smollm2", packaged_model_file("smollm2-135m-instruct"), n_ctx=1024)],
                        log_path=tmp_path / "llama.log") as server:
        # The policies train on the same SmolLM2 the server serves (its GGUF, converted once for transformers).
        config = {**TINY_DEMO, "base_model": "smollm2-135m-instruct",
                  "servers": {"base": {"base_url": server.url, "model": "smollm2", "api_key_env": None}}}
        experiment = services.experiment_start(name="llama demo", config=config, actor=researcher)
        inline_queue.run_pending()
    failed = {job.key: job.error for job in experiment.jobs.exclude(state=Job.State.SUCCEEDED)}
    assert not failed, json.dumps(failed, indent=1)[:6000]
    generate = experiment.jobs.get(key="generate")
    candidates = read_jsonl(generate.result["candidates_path"])
    assert len(candidates) == 6 and all(len(c["responses"]) == 3 for c in candidates)
    assert all(c["generation"]["backend"] == "server" and c["generation"]["server"]["requested_model"] == "smollm2"
               for c in candidates)
    assert all(text.strip() for c in candidates for text in c["responses"])  # llama.cpp wrote them
    evaluate = experiment.jobs.get(key="evaluate")
    answers = evaluate.result["answers_dir"]
    assert read_jsonl(f"{answers}/base.jsonl")[0]["generation"]["backend"] == "server"
    assert read_jsonl(f"{answers}/sft.jsonl")[0]["generation"].get("backend") is None  # trained policies answer in the worker
    assert Response.objects.filter(model_version__name="llama demo/base").count() == 3
