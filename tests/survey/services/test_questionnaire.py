"""Questionnaire pages (survey.services.questionnaire): screen-out at eligibility, attention checks."""
import pytest

from core.models import AuditSubject
from survey import selectors, services
from survey.exceptions import InvalidAnswer, ProlificExcluded, StepNotAvailable
from survey.models import ConsentRecord, Participant, ProlificExclusion
from tests.survey.factories import complete_participant

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
    assert list(ProlificExclusion.objects.values_list("study_id", flat=True)) == [study.pk]  # the whole record
    with pytest.raises(InvalidAnswer):
        services.eligibility_submit(participant=participant, answers={"adult": "maybe", "lived": "yes"})
    with pytest.raises(StepNotAvailable):
        services.eligibility_submit(participant=participant, answers={"adult": "yes", "lived": "yes"})
    for session in ("s1", "s2"):
        with pytest.raises(ProlificExcluded):
            services.participant_start(study=study, prolific={"PROLIFIC_PID": "pp", "SESSION_ID": session})


def test_attention_checks_flag_only_after_two_failures_and_keep_the_person(study):
    one = complete_participant(study, attention=("agree", "strongly_agree"))
    two = complete_participant(study, attention=("agree", "disagree"))
    assert (one.attention_failures, one.attention_flagged) == (1, False)
    assert (two.attention_failures, two.attention_flagged) == (2, True)
    assert two.status == Participant.Status.COMPLETED
    assert selectors.study_funnel(study)["attention_flagged"] == 1
    assert two in selectors.cohort_participants(study)
    assert two not in selectors.cohort_participants(study, exclude_flagged=True)
