"""Survey exports (survey.services.exports): de-identified and in the pipeline's formats."""
import csv
import json

import pytest

from core.models import AuditEvent
from survey import services
from survey.models import DatasetVersion
from tests.survey.factories import background_data, complete_participant, keys

pytestmark = pytest.mark.django_db


def test_exports_are_deidentified_and_in_the_pipeline_formats(study, tmp_path):
    from training.pipeline.io import load_personas
    from training.pipeline.preferences import pairs_from_survey

    data = background_data(gender="self_describe")
    data["background.gender"]["text"] = "genderfluid, and my name is Alex"
    people = [complete_participant(study, background=data, prolific={"PROLIFIC_PID": f"pid{i}", "SESSION_ID": "s"}) for i in range(3)]
    answers = services.survey_answers_export(study=study)
    content = open(answers.files[0]["path"]).read()
    assert "Alex" not in content and "pid0" not in content and people[0].token not in content
    rows = list(csv.DictReader(content.splitlines()))
    assert len(rows) == 3 and rows[0]["background.diagnoses"] == "depression;anxiety" and rows[0]["importance.empathy"] == "4"
    with_text = services.survey_answers_export(study=study, include_free_text=True)
    assert "Alex" in open(with_text.files[0]["path"]).read()

    ranking = services.criteria_rankings_export(study=study)
    rows = list(csv.DictReader(open(ranking.files[0]["path"])))
    assert len(rows) == 3 * len(keys()) and {r["rank"] for r in rows} == {str(i) for i in range(1, len(keys()) + 1)}

    responses = services.response_rankings_export(study=study)
    records = [json.loads(line) for line in open(responses.files[0]["path"])]
    assert len(records) == 3 * study.scenarios_per_participant
    record = records[0]
    assert set(record) == {"prompt", "scenario_id", "criterion", "ranking", "participant", "shown_order"}
    assert record["ranking"] == record["shown_order"] and len(record["ranking"]) == 4
    pairs_from_survey(records)  # the pipeline accepts it

    services.personas_select(study=study, total=3, train=2, test=1, seed=1, min_quality=0)
    version = services.personas_export_dataset(path=tmp_path / "p.jsonl")
    loaded = load_personas(tmp_path / "p.jsonl")
    assert len(loaded) == 3 and {p.split for p in loaded} == {"train", "test"}
    assert abs(sum(loaded[0].weights.values()) - 1) < 1e-6 and "Alex" not in loaded[0].text
    assert version.kind == DatasetVersion.Kind.PERSONAS and version.participant_count == 3
    assert AuditEvent.objects.filter(action="survey.dataset_version_create").count() == 5
