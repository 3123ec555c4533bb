from celery import shared_task


@shared_task(name="core.ping")
def ping(value: int) -> dict:
    """Round-trip check for the broker and a worker process."""
    import os

    return {"echo": value, "doubled": value * 2, "worker_pid": os.getpid()}
