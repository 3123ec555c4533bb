import pytest

from training import services


@pytest.fixture
def published(monkeypatch):
    """Job wake-ups captured instead of sent to the broker: (job id, queue) pairs."""
    sent = []
    monkeypatch.setattr(services, "_publish", lambda job_id, queue: sent.append((job_id, queue)))
    return sent
