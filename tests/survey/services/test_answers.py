"""Answers (survey.services.answers): attention checks, steps in order, two tabs at once."""
import threading

import pytest
from django.db import connection

from survey import selectors, services
from survey.exceptions import StepNotAvailable
from survey.models import Answer, Participant
from tests.survey.factories import background_data, complete_participant

pytestmark = pytest.mark.django_db


def test_attention_checks_flag_only_after_two_failures_and_keep_the_person(study):
    one = complete_participant(study, attention=("agree", "strongly_agree"))
    two = complete_participant(study, attention=("agree", "disagree"))
    assert (one.attention_failures, one.attention_flagged) == (1, False)
    assert (two.attention_failures, two.attention_flagged) == (2, True)
    assert two.status == Participant.Status.COMPLETED
    assert selectors.study_funnel(study)["attention_flagged"] == 1
    assert two in selectors.cohort_participants(study)
    assert two not in selectors.cohort_participants(study, exclude_flagged=True)


def test_steps_must_be_reached_in_order(study):
    participant = services.participant_start(study=study)
    with pytest.raises(StepNotAvailable):
        services.background_save(participant=participant, data=background_data())
    with pytest.raises(StepNotAvailable):
        services.participant_complete(participant=participant)


@pytest.mark.django_db(transaction=True)
def test_two_tabs_saving_at_once_keep_one_answer(study):
    from tests.survey.factories import attitudes_data

    participant = services.participant_start(study=study)
    version = selectors.consent_version_current(study)
    services.consent_give(participant=participant, consent_version_id=version.pk, agreed=[0, 1, 2])
    services.eligibility_submit(participant=participant, answers={"adult": "yes", "lived": "yes"})
    services.background_save(participant=participant, data=background_data())
    barrier = threading.Barrier(4)
    errors = []

    def save(value):
        try:
            barrier.wait()
            services.attitudes_save(participant=participant, data=attitudes_data(values=(value,) * 5))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=save, args=(v,)) for v in (1, 2, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = Answer.objects.filter(participant=participant, item_key="attitude.trust")
    assert rows.count() == 1 and rows.get().value in (1, 2, 3, 4)
