import io

import pytest

from core.models import ModelVersion, Response
from core.services import scenario_bank_load
from survey import demo, selectors
from survey.models import Study

pytestmark = pytest.mark.django_db


def test_demo_loads_once_and_is_usable(client):
    scenario_bank_load()
    first, second = io.StringIO(), io.StringIO()
    demo.load(first)
    demo.load(second)
    assert "created; 24 demo responses added" in first.getvalue()
    assert "already there; 0 demo responses added" in second.getvalue()
    study = Study.objects.get(slug="demo")
    assert demo.PARTICIPANT_PATH == "/study/demo/"
    version = ModelVersion.objects.get(name=demo.DEMO_MODEL_VERSION)
    assert version.kind == ModelVersion.Kind.FIXED and study.model_version == version
    assert Response.objects.filter(model_version=version).count() == 4 * len(demo.DEMO_RESPONSES) >= 24
    assert study.consent_versions.count() == 1 and study.eligibility_questions.count() == 2
    assert len(selectors.scenario_candidates(study)) == len(demo.DEMO_RESPONSES)
    assert client.get(demo.PARTICIPANT_PATH).status_code == 200


def test_demo_seeds_a_synthetic_cohort_once_marked_everywhere_and_left_out_of_exports(client, researcher, tmp_path):
    from survey import services
    from survey.models import Participant

    scenario_bank_load()
    first = io.StringIO()
    demo.load(first)
    demo.load(io.StringIO())  # a rerun adds nobody
    study = Study.objects.get(slug="demo")
    cohort = Participant.objects.filter(study=study)
    assert cohort.count() == demo.SYNTHETIC_COHORT_SIZE == cohort.filter(synthetic=True).count()
    assert "synthetic cohort of 60 simulated participants (added" in first.getvalue()
    completed = cohort.filter(status=Participant.Status.COMPLETED).count()
    assert 0 < cohort.count() - completed <= demo.SYNTHETIC_COHORT_SIZE // 10
    # Real distributions: the criteria's mean importances differ, with intervals of some width.
    report = selectors.study_report(study)
    assert report["n"] == completed and report["n_rankings"] == completed
    rows = {row["key"]: row for row in report["rows"]}
    assert all(row["mean_high"] - row["mean_low"] > 0.1 for row in rows.values())  # not [5.00, 5.00]
    assert rows["safety"]["mean"] > rows["self_motivated_change"]["mean"]
    assert str(cohort.first()).endswith("(synthetic)")
    # Marked on the dashboard and in the admin.
    client.force_login(researcher)
    page = client.get(f"/study/manage/{study.slug}/").content.decode()
    assert 'id="synthetic-notice"' in page and "60 of this study" in page
    admin = client.get("/admin/survey/participant/?synthetic__exact=1").content.decode()
    assert "60 participants" in admin
    # Exports leave them out unless asked, and mark them when asked.
    assert services.survey_answers_export(study=study, path=tmp_path / "a.csv").participant_count == 0
    asked = services.survey_answers_export(study=study, include_synthetic=True, path=tmp_path / "b.csv")
    assert asked.participant_count == cohort.count() and "synthetic" in asked.note
    header, *rows = (tmp_path / "b.csv").read_text().splitlines()
    assert header.split(",")[-1] == "synthetic" and all(row.endswith(",1") for row in rows)
    assert services.response_rankings_export(study=study, path=tmp_path / "c.jsonl").participant_count == 0
    assert services.criteria_rankings_export(study=study, include_synthetic=True, path=tmp_path / "d.csv").participant_count > 0
    # Personas built from them are exported (and so reach training) only when asked too.
    from survey.exceptions import SurveyError

    services.personas_build(study=study)
    services.personas_select(study=study, total=20, train=10, test=10, min_quality=0.0)
    with pytest.raises(SurveyError, match="synthetic"):
        services.personas_export_dataset(path=tmp_path / "p.jsonl", study=study)
    assert services.personas_export_dataset(path=tmp_path / "p.jsonl", study=study, include_synthetic=True).participant_count == 20
