import pytest


@pytest.fixture(autouse=True)
def _vocabulary(db):
    """The criteria (seeded after migrate; seeded again here after a transactional test flushed them).
    Only then: writing them in the test's transaction makes the survey read them from the database
    for the whole test instead of its per-process cache (survey.selectors.vocabulary)."""
    from core.models import Criterion
    from core.services import helplines_seed, vocabulary_seed

    if not Criterion.objects.filter(is_therapeutic=True).exists():
        vocabulary_seed()
    helplines_seed()


@pytest.fixture(autouse=True)
def _artifacts(settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"


@pytest.fixture
def study(db):
    from tests.survey.factories import StudyFactory, response_set

    study = StudyFactory()
    study.model_version = response_set()
    study.save()
    return study
