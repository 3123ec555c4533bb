"""A task goes through the configured broker to a real worker process and back."""
import pytest

from core.tasks import ping


@pytest.mark.worker
def test_task_round_trip_through_a_real_worker(celery_worker_process, settings):
    result = ping.delay(21)
    try:
        value = result.get(timeout=90)
    except Exception:
        pytest.fail("no result from the worker; its log:\n" + celery_worker_process.log()[-4000:])
    assert value["echo"] == 21 and value["doubled"] == 42
    assert value["worker_pid"] == celery_worker_process.process.pid
