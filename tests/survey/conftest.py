import pytest


@pytest.fixture(autouse=True)
def _vocabulary(db):
    """The criteria (seeded after migrate; seeded again here because transactional tests flush)."""
    from core.services import helplines_seed, vocabulary_seed

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
