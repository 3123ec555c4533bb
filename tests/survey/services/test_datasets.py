"""Dataset versions (survey.services.datasets)."""
import pytest

from core.models import AuditEvent
from survey import selectors, services
from survey.exceptions import SurveyError
from tests.survey.factories import complete_participant

pytestmark = pytest.mark.django_db


def test_dataset_version_create_api(study, tmp_path):
    a, b = complete_participant(study), complete_participant(study)
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("one\n")
    second.write_text("two\n")
    version = services.dataset_version_create(kind="training", participants=[a.pseudonym, f"survey-{b.pseudonym}"],
                                              files=[first, second], note="preferences")
    assert version.participant_count == 2 and len(version.files) == 2 and len(version.sha256) == 64
    assert set(version.participants.all()) == {a, b}
    single = services.dataset_version_create(kind="training", participants=[a.pk], files=[first])
    import hashlib

    assert single.sha256 == hashlib.sha256(b"one\n").hexdigest()
    assert AuditEvent.objects.filter(action="survey.dataset_version_create").count() == 2
    with pytest.raises(SurveyError, match="unknown dataset kind"):
        services.dataset_version_create(kind="nope", participants=[a], files=[first])
    with pytest.raises(SurveyError, match="not found"):
        services.dataset_version_create(kind="training", participants=[a], files=[tmp_path / "missing"])
    services.participant_withdraw(participant=b, via="admin")
    assert not first.exists() and not second.exists()  # the files that held b are deleted
    first.write_text("one\n")
    with pytest.raises(SurveyError, match="withdrawn"):
        services.dataset_version_create(kind="training", participants=[a, b], files=[first])
    with pytest.raises(SurveyError, match="withdrawn"):
        services.dataset_version_create(kind="training", participants=[b.pseudonym], files=[first])
    assert selectors.dataset_version_withdrawal_problem(None) is not None
