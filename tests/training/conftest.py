import pytest

from training.jobs.queue import inline_queue


@pytest.fixture
def published(settings):
    """Jobs published through the inline job queue, held there instead of run:
    a list of (job id, queue) pairs, drained by the test."""
    settings.ATTUNE_JOB_QUEUE = "inline"
    with inline_queue.held() as pending:
        yield pending
