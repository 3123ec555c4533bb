"""The save protocol (survey.services.answers): steps in order, two tabs at once."""
import threading

import pytest
from django.db import connection

from survey import selectors, services
from survey.exceptions import StepNotAvailable
from survey.models import Answer
from tests.survey.factories import background_data

pytestmark = pytest.mark.django_db


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
