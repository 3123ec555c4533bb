"""Shared fixtures: users by role, and a real Celery worker process."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training.pipeline.lifecycle import stop_process

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def clinician(db):
    from tests.factories import ClinicianFactory

    return ClinicianFactory()


@pytest.fixture
def researcher(db):
    from tests.factories import ResearcherFactory

    return ResearcherFactory()


def worker_environment(extra=None):
    """Environment for a worker process that shares the test database."""
    from django.conf import settings
    from django.db import connection

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "ATTUNE_VAR_DIR": str(settings.VAR_DIR)}
    db = connection.settings_dict
    if db["ENGINE"].endswith("postgresql"):
        env["DATABASE_URL"] = f"postgres://{db['USER'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    else:
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    env.update(extra or {})
    return env


class WorkerProcess:
    def __init__(self, queues="default,gpu", extra_env=None, name="test", pool="solo", app="config"):
        self.args = [
            sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queues, "--pool", pool, "--concurrency", "1",
            "--loglevel", "INFO", "-n", f"{name}-{os.getpid()}-{time.monotonic_ns()}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]
        self.env = worker_environment(extra_env)
        self.log_path = Path(self.env["ATTUNE_VAR_DIR"]) / f"worker-{name}.log"
        self.process = None

    def start(self):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def log(self):
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self):
        stop_process(self.process, timeout_s=20)
        if getattr(self, "_log", None):
            self._log.close()


class RecoveryProcess(WorkerProcess):
    """`manage.py recover_jobs`, the job recovery loop, as its own process (as `make demo` runs it)."""

    def __init__(self, extra_env=None, name="recovery"):
        super().__init__(extra_env=extra_env, name=name)
        self.args = [sys.executable, "manage.py", "recover_jobs"]


def wait_for(predicate, timeout, processes, what):
    """Poll ``predicate`` until it returns something true, and return that. Fails at once, with its log, when
    one of the ``processes`` (a WorkerProcess or several) exits, or after ``timeout`` seconds with all their logs."""
    processes = [processes] if isinstance(processes, WorkerProcess) else list(processes)
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        for process in processes:
            if process.process.poll() is not None:
                pytest.fail(f"{process.log_path.name} exited while waiting for {what}:\n{process.log()[-4000:]}")
        time.sleep(0.1)
    logs = "\n".join(f"--- {p.log_path.name}\n{p.log()[-3000:]}" for p in processes)
    pytest.fail(f"timed out waiting for {what}\n{logs}")


@pytest.fixture
def celery_worker_process(transactional_db):
    """A real `celery worker` process on the configured broker, sharing the test database."""
    worker = WorkerProcess().start()
    yield worker
    worker.stop()


@pytest.fixture(autouse=True, scope="session")
def _purge_test_broker():
    """Old messages from an earlier interrupted run must not reach this run's workers."""
    from django.conf import settings

    if settings.CELERY_BROKER_URL.startswith("redis://"):
        import redis

        client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        for key in client.scan_iter(match=settings.TEST_KEY_PREFIX + "*"):
            client.delete(key)
    yield
