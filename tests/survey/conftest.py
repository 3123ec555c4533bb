import pytest


def migrate(targets):
    """Migrate the test database to ``targets`` (a migration test); returns the historical models there."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def back_to_the_latest_schema():
    """After a migration test: every migration applied again, as later tests need."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    yield
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


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
    from tests.survey.factories import study_with_responses

    return study_with_responses()


@pytest.fixture
def at_once():
    """`at_once(save, values)`: calls `save(value)` for every value, each in its own thread and all released
    together (tabs submitting at the same moment), and fails the test if any call raised."""
    import threading

    from django.db import connection

    def run(save, values):
        barrier = threading.Barrier(len(values))
        errors = []

        def one(value):
            try:
                barrier.wait()
                save(value)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                connection.close()  # each thread has its own connection; leave none open for the flush

        threads = [threading.Thread(target=one, args=(value,)) for value in values]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []

    return run
