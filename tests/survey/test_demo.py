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
