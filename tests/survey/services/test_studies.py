"""Study settings (survey.services.studies): consent versions."""
import pytest

from core.models import AuditEvent
from survey import services
from survey.exceptions import InvalidAnswer
from survey.models import ConsentRecord
from tests.survey.factories import complete_participant

pytestmark = pytest.mark.django_db


def test_consent_versions_are_new_rows_and_old_answers_keep_theirs(study, researcher):
    early = complete_participant(study)
    v2 = services.consent_version_publish(study=study, information_sheet="New sheet", statements="A\nB", actor=researcher)
    assert v2.version == 2
    late = services.participant_start(study=study)
    with pytest.raises(InvalidAnswer):
        services.consent_give(participant=late, consent_version_id=v2.pk, agreed=[0])
    with pytest.raises(InvalidAnswer, match="reload the page"):
        services.consent_give(participant=late, consent_version_id=early.consent.consent_version_id, agreed=[0, 1, 2])
    assert not ConsentRecord.objects.filter(participant=late).exists()
    services.consent_give(participant=late, consent_version_id=v2.pk, agreed=[0, 1])
    assert early.consent.consent_version.version == 1
    assert ConsentRecord.objects.get(participant=late).consent_version.version == 2
    assert AuditEvent.objects.filter(action="survey.consent_publish").count() == 1
