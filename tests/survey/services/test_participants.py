"""Participants (survey.services.participants): screen-out, closed studies."""
import pytest

from core.models import AuditSubject
from survey import selectors, services
from survey.exceptions import InvalidAnswer, StepNotAvailable, SurveyError
from survey.models import ConsentRecord, Participant
from tests.survey.factories import StudyFactory

pytestmark = pytest.mark.django_db


def test_screen_out_keeps_only_the_record(study):
    participant = services.participant_start(study=study, prolific={"PROLIFIC_PID": "pp", "SESSION_ID": "s1"})
    version = selectors.consent_version_current(study)
    services.consent_give(participant=participant, consent_version_id=version.pk, agreed=[0, 1, 2])
    subject = participant.audit_subject
    assert services.eligibility_submit(participant=participant, answers={"adult": "no", "lived": "yes"}) is False
    assert not Participant.objects.filter(pk=participant.pk).exists()
    assert not ConsentRecord.objects.filter(participant_id=participant.pk).exists()
    assert not AuditSubject.objects.filter(pk=subject.pk).exists()
    from survey.models import ProlificExclusion

    assert list(ProlificExclusion.objects.values_list("study_id", flat=True)) == [study.pk]  # the whole record
    with pytest.raises(InvalidAnswer):
        services.eligibility_submit(participant=participant, answers={"adult": "maybe", "lived": "yes"})
    with pytest.raises(StepNotAvailable):
        services.eligibility_submit(participant=participant, answers={"adult": "yes", "lived": "yes"})
    from survey.exceptions import ProlificExcluded

    for session in ("s1", "s2"):
        with pytest.raises(ProlificExcluded):
            services.participant_start(study=study, prolific={"PROLIFIC_PID": "pp", "SESSION_ID": session})


def test_closed_study_takes_no_one_new():
    closed = StudyFactory(is_active=False)
    with pytest.raises(SurveyError, match="not taking new participants"):
        services.participant_start(study=closed)
