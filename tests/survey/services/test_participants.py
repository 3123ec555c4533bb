"""Participants (survey.services.participants): closed studies."""
import pytest

from survey import services
from survey.exceptions import SurveyError
from tests.survey.factories import StudyFactory

pytestmark = pytest.mark.django_db


def test_closed_study_takes_no_one_new():
    closed = StudyFactory(is_active=False)
    with pytest.raises(SurveyError, match="not taking new participants"):
        services.participant_start(study=closed)
