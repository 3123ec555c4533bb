"""`make demo`: migrate, load the demo study, run the web server, a Celery worker
(both queues) and the job recovery loop until Ctrl-C, then stop them cleanly.

Quiet by default: the URLs, new passwords (and where they are kept), warnings
and errors. `--verbose` (`make demo VERBOSE=1`) shows every request and the
worker's INFO log."""
import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.servers import wait_until_up  # noqa: E402  (needs ROOT on the path)

PYTHON = sys.executable
HOST = os.environ.get("ATTUNE_HOST", "127.0.0.1")
PORT = os.environ.get("ATTUNE_PORT", "8000")
ENV = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings.local")}


def manage(*args):
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=ENV, check=True)


def participant_path() -> str:
    """The demo study's entry page, as the survey app's demo defines it."""
    from importlib import import_module

    os.environ.update(ENV)
    import django

    django.setup()
    try:
        return import_module("survey.demo").PARTICIPANT_PATH
    except (ImportError, AttributeError):
        return "/"


def passwords_path() -> str:
    """Where load_demo keeps the demo accounts' passwords (under ATTUNE_VAR_DIR)."""
    from core.management.commands.load_demo import demo_passwords_path

    participant_path()  # sets Django up
    return str(demo_passwords_path())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="log every request and the worker's INFO messages")
    verbose = parser.parse_args(argv).verbose or os.environ.get("VERBOSE", "") not in ("", "0")
    if not verbose:
        # The 2-second progress polling alone is a line every 2 s at INFO.
        ENV.setdefault("LOG_LEVEL", "WARNING")
    # Ctrl-C and SIGTERM both stop cleanly, even when started from a shell that ignores SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    manage("migrate", "--noinput", "-v", "0")
    manage("load_demo", "-v", "1" if verbose else "0")
    celery_quiet = [] if verbose else ["--quiet"]  # no start-up banner
    processes = [
        # Own sessions: Ctrl-C reaches only this script, which then stops both in order.
        # Quiet: its start-up banner (stdout) goes; warnings and errors are logged to stderr and stay.
        subprocess.Popen([PYTHON, "manage.py", "runserver", f"{HOST}:{PORT}", "--noreload"], cwd=ROOT, env=ENV,
                         start_new_session=True, stdout=None if verbose else subprocess.DEVNULL),
        subprocess.Popen(
            [PYTHON, "-m", "celery", "-A", "config", *celery_quiet, "worker", "-Q", "default,gpu", "--concurrency", "1",
             "--loglevel", "INFO" if verbose else "WARNING", "-n", "demo@%h"],
            cwd=ROOT, env=ENV, start_new_session=True,
        ),
        # Job recovery in its own process: the one worker may be busy training for a long time.
        subprocess.Popen([PYTHON, "manage.py", "recover_jobs"], cwd=ROOT, env=ENV, start_new_session=True),
    ]
    base = f"http://{HOST}:{PORT}"
    try:
        if not wait_until_up(f"{base}/healthz"):
            print("The web server did not come up; see the log above.", file=sys.stderr)
            return 1
        participant_url = base + participant_path()
        print(
            "\nAttune is running. Ctrl-C stops the web server and the worker.\n"
            f"  Demo passwords:      {passwords_path()}\n"
            f"  Participant survey:  {participant_url}\n"
            f"  Clinician sign-in:   {base}/accounts/login/\n"
            f"  Researcher admin:    {base}/admin/\n"
            + ("" if verbose else "Quiet: warnings and errors only (`make demo VERBOSE=1` shows every request).\n"),
            flush=True,
        )
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        print("A process stopped; shutting down the others.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping...", flush=True)
        return 0
    finally:
        for p in processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in processes:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
