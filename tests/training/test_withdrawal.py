"""A participant's withdrawal marks every job and model built from a survey
dataset version that held them, deletes derived text files that name them,
and the admin shows the mark."""
import json

import pytest

from core.models import ModelVersion
from core.services import helplines_seed, vocabulary_seed
from survey import services as survey_services
from tests.survey.factories import StudyFactory, complete_participant
from training.models import Artifact, Experiment, Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def survey_personas(settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path
    vocabulary_seed()
    helplines_seed()
    study = StudyFactory()
    people = [complete_participant(study) for _ in range(3)]
    survey_services.personas_build(study=study)
    survey_services.personas_select(study=study, total=3, train=2, test=1, min_quality=0)
    return study, people


def experiment_on(version, tmp_path, people, name="from the survey"):
    """A small experiment graph: inputs (read the version) -> label -> policy (a model), and an unrelated job."""
    experiment = Experiment.objects.create(name=name, preset="cpu_demo", config={}, output_dir=str(tmp_path / name))
    inputs = Job.objects.create(experiment=experiment, key="scenarios", kind="export_inputs", position=0,
                                lineage={"dataset_versions": [version.pk]}, state=Job.State.SUCCEEDED)
    label = Job.objects.create(experiment=experiment, key="label", kind="label", position=1, state=Job.State.SUCCEEDED)
    label.depends_on.add(inputs)
    model = ModelVersion.objects.create(name=f"{name}/dpo", kind=ModelVersion.Kind.ADAPTER, model_ref="tiny",
                                        provenance={"method": "dpo"})
    policy = Job.objects.create(experiment=experiment, key="dpo", kind="dpo", position=2, state=Job.State.SUCCEEDED,
                                result={"model_version": model.pk, "note": f"persona survey-{people[0].pseudonym}"},
                                log_tail=f"step 3: persona survey-{people[0].pseudonym} skipped\n")
    policy.depends_on.add(label)
    Artifact.objects.create(job=policy, kind=Artifact.Kind.ADAPTER, name="adapter", path=str(tmp_path / "adapter"),
                            sha256="0" * 64, model_version=model)
    other = Job.objects.create(experiment=experiment, key="generate", kind="generate", position=3, state=Job.State.SUCCEEDED)
    work = label.work_dir()
    work.mkdir(parents=True)
    labels = work / "labels.jsonl"
    labels.write_text("".join(json.dumps({"persona_id": f"survey-{p.pseudonym}", "ranks": [1, 2]}) + "\n" for p in people))
    weights = policy.work_dir()
    weights.mkdir(parents=True)
    (weights / "adapter_model.safetensors").write_bytes(b"\x00weights")
    return experiment, inputs, label, policy, other, model, labels


def test_withdrawal_marks_jobs_and_models_built_from_an_affected_version(survey_personas, tmp_path, client, researcher):
    study, people = survey_personas
    version = survey_services.personas_export_dataset(path=tmp_path / "exp" / "personas.jsonl", study=study)
    experiment, inputs, label, policy, other, model, labels = experiment_on(version, tmp_path, people)
    untouched = ModelVersion.objects.create(name="elsewhere/dpo", kind=ModelVersion.Kind.ADAPTER, model_ref="tiny")

    survey_services.participant_withdraw(participant=people[0], via="code")

    for job in (inputs, label, policy):
        job.refresh_from_db()
        assert job.affected_by_withdrawal_at is not None and job.withdrawn_dataset_versions == [version.pk], job.key
        assert f"#{version.pk}" in job.withdrawal_note
    other.refresh_from_db()
    assert other.affected_by_withdrawal_at is None  # not downstream of the version
    model.refresh_from_db()
    assert model.provenance["affected_by_withdrawal"]["dataset_versions"] == [version.pk]
    assert model.provenance["method"] == "dpo"  # the rest of the lineage stays
    # The job's log and result no longer name them.
    assert people[0].pseudonym not in policy.log_tail and "<withdrawn participant>" in policy.log_tail
    assert people[0].pseudonym not in str(policy.result) and policy.result["model_version"] == model.pk
    untouched.refresh_from_db()
    assert "affected_by_withdrawal" not in untouched.provenance
    # Derived text that names them is deleted; model weights stay, marked.
    assert not labels.exists()
    assert (policy.work_dir() / "adapter_model.safetensors").exists()

    client.force_login(researcher)
    jobs_page = client.get("/admin/training/job/").content.decode()
    assert jobs_page.count("Withdrawn data: #") == 3
    assert "Withdrawn data: #" in client.get("/admin/training/artifact/").content.decode()
    assert client.get("/admin/training/job/?withdrawn=yes").content.decode().count("Withdrawn data: #") == 3
    assert "do not use or publish" in client.get(f"/admin/training/job/{policy.pk}/change/").content.decode()
    assert "Trained on withdrawn data" in client.get(f"/admin/core/modelversion/{model.pk}/change/").content.decode()
    assert "Trained on withdrawn data" in client.get("/admin/core/modelversion/").content.decode()
    report = client.get(f"/admin/training/experiment/{experiment.pk}/report/").content.decode()
    assert 'id="withdrawal-note"' in report and f"#{version.pk}" in report


def test_a_model_registered_after_the_withdrawal_carries_the_mark(survey_personas, tmp_path):
    from training.stages.common import model_version_register

    study, people = survey_personas
    version = survey_services.personas_export_dataset(path=tmp_path / "exp" / "personas.jsonl", study=study)
    experiment, inputs, label, policy, *_ = experiment_on(version, tmp_path, people, name="running")
    survey_services.participant_withdraw(participant=people[1], via="resume_link")
    policy.refresh_from_db()
    registered = model_version_register(policy, kind=ModelVersion.Kind.ADAPTER, path=policy.work_dir(), model_ref="tiny",
                                        provenance={"method": "dpo"})
    assert registered.provenance["affected_by_withdrawal"]["dataset_versions"] == [version.pk]
