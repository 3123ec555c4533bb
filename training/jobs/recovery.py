"""The recovery loop: every few seconds, one `runtime.jobs_reap` pass (lapsed leases requeued, lost
publishes republished).

Where it runs, and why there: in its own small process, `manage.py recover_jobs` (started by
`scripts/demo.py` beside the worker, and as the `recovery` service in docker-compose). Not as a
periodic Celery task: on a single worker (the demo, a laptop) that task queues behind the running
training job and nothing is reaped until it ends. Not as a thread in the worker's main process
either: with the prefork pool that process forks children after the thread has opened a database
connection, which the children would inherit; and with `--pool solo` the main process is the one
training. A separate process imports no torch, never touches CUDA, keeps working while every worker
is busy or dead, and is safe to run more than once (each pass locks rows with SKIP LOCKED)."""
from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import close_old_connections, connection

from .runtime import jobs_reap

logger = logging.getLogger(__name__)


def recovery_loop(*, stop: threading.Event, interval: float | None = None) -> None:
    """Run recovery passes until `stop` is set. A pass that fails (the database restarting) is logged and
    the next one tries again on a fresh connection."""
    interval = settings.ATTUNE_RECOVERY_INTERVAL_SECONDS if interval is None else interval
    logger.info("job recovery: a pass every %.1f s", interval)
    while not stop.is_set():
        try:
            close_old_connections()
            jobs_reap()
        except Exception:  # noqa: BLE001 - the loop must outlive a database hiccup
            logger.exception("job recovery pass failed; retrying in %.1f s", interval)
            connection.close()
        stop.wait(interval)
    connection.close()
