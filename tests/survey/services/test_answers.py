"""The save protocol (survey.services.answers): steps in order, two tabs at once."""
import pytest

from survey import services
from survey.exceptions import StepNotAvailable
from survey.models import Answer
from tests.survey.factories import attitudes_data, background_data, participant_through

pytestmark = pytest.mark.django_db


def test_steps_must_be_reached_in_order(study):
    participant = services.participant_start(study=study)
    with pytest.raises(StepNotAvailable):
        services.background_save(participant=participant, data=background_data())
    with pytest.raises(StepNotAvailable):
        services.participant_complete(participant=participant)


@pytest.mark.django_db(transaction=True)
def test_two_tabs_saving_at_once_keep_one_answer(study, at_once):
    participant = participant_through(study, "background")
    at_once(lambda value: services.attitudes_save(participant=participant, data=attitudes_data(values=(value,) * 5)), (1, 2, 3, 4))
    rows = Answer.objects.filter(participant=participant, item_key="attitude.trust")
    assert rows.count() == 1 and rows.get().value in (1, 2, 3, 4)
