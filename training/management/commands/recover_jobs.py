"""`manage.py recover_jobs`: the job recovery loop (training.jobs.recovery), until SIGTERM or Ctrl-C."""
import signal
import threading

from django.core.management.base import BaseCommand

from training.jobs.recovery import recovery_loop


class Command(BaseCommand):
    help = "Requeue jobs whose worker was lost and republish jobs whose message was lost, every few seconds."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=None,
                            help="seconds between passes (default: ATTUNE_RECOVERY_INTERVAL_SECONDS)")

    def handle(self, *args, interval=None, **options):
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        recovery_loop(stop=stop, interval=interval)
