"""Where a survey request's time goes: N participants walk the whole survey in-process
(Django's test client, no test instrumentation, DEBUG off) against a private PostgreSQL
cluster; prints the queries and the mean wall time of every step, then a cProfile summary
grouped by where the time is spent (database driver, ORM, templates, middleware, ...).

    python bench/profile_survey.py                 # 20 participants
    python bench/profile_survey.py --participants 50 --top 40
    python bench/profile_survey.py --timer cpu     # this process's CPU time, not wall time

With ``--timer cpu`` the profile counts the CPU time of the Django process only (waiting on
PostgreSQL, and PostgreSQL's own work, are left out), so its shares move less with the load of a
busy machine than the wall-clock ones do.

The walk is the one tests/survey/test_query_budgets.py counts queries with.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

GROUPS = [  # first match wins, on the file path of each function (its own time)
    ("database driver (psycopg, waiting for PostgreSQL)", ("psycopg",)),
    ("ORM: building and compiling queries, making objects", ("django/db/",)),
    ("templates", ("django/template", "templatetags")),
    ("middleware and request handling", ("django/core/handlers", "django/middleware", "django/contrib/sessions",
                                         "django/contrib/auth", "django/contrib/messages", "csp/", "axes/", "whitenoise",
                                         "core/input.py", "core/middleware.py", "core/error_handlers.py")),
    ("URL resolving, reverse", ("django/urls",)),
    ("Attune survey code", ("/survey/",)),
    ("test client (the load generator's side)", ("django/test", "tests/survey")),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=20)
    parser.add_argument("--top", type=int, default=25, help="functions to list by their own time")
    parser.add_argument("--timer", choices=("wall", "cpu"), default="wall",
                        help="profile wall-clock time (default) or this process's CPU time")
    args = parser.parse_args()

    from load_survey import PrivatePostgres, recreate_database

    pg = PrivatePostgres()
    pg.start()
    try:
        recreate_database(pg.url("postgres"), "attune_profile")
        os.environ.update({"DATABASE_URL": pg.url("attune_profile"), "ATTUNE_VAR_DIR": tempfile.mkdtemp(prefix="attune-profile-"),
                           "DJANGO_SETTINGS_MODULE": "config.settings.local", "DEBUG": "false", "LOG_LEVEL": "WARNING",
                           "ALLOWED_HOSTS": "testserver,127.0.0.1"})
        os.environ.pop("REDIS_URL", None)
        import django

        django.setup()
        import io

        from django.core.management import call_command
        from django.test import Client

        call_command("migrate", verbosity=0, interactive=False)
        from core.services import scenario_bank_load
        from survey import demo
        from survey.models import Study
        from tests.survey.test_query_budgets import walk

        scenario_bank_load()
        demo.load(io.StringIO())
        study = Study.objects.get(slug="demo")
        walk(Client(), study, pid="warm-up")
        profile = cProfile.Profile(time.process_time) if args.timer == "cpu" else cProfile.Profile()
        counts: dict[str, list[int]] = defaultdict(list)
        wall: dict[str, list[float]] = defaultdict(list)
        started = time.perf_counter()
        requests = 0
        for n in range(args.participants):
            profile.enable()
            budget, _ = walk(Client(), study, pid=f"profile-{n}", timings=wall)
            profile.disable()
            for label, count in budget.counts.items():
                counts[label].append(count)
            requests += len(budget.counts)
        elapsed = time.perf_counter() - started
    finally:
        pg.stop()

    print(f"{args.participants} participants, {requests} requests, {1000 * elapsed / requests:.1f} ms per request "
          f"(wall, in-process, profiler on)\n")
    print(f"{'step':<34}{'queries':>8}{'ms (mean wall)':>16}")
    for label in counts:
        print(f"{label:<34}{max(counts[label]):>8}{1000 * sum(wall[label]) / len(wall[label]):>16.1f}")
    stats = pstats.Stats(profile)
    own = defaultdict(float)
    total = 0.0
    for (path, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        total += tottime
        group = next((g for g, needles in GROUPS if any(needle in path for needle in needles)), "other (Python, stdlib)")
        own[group] += tottime
    print(f"\nown {'CPU' if args.timer == 'cpu' else 'wall'} time by where it is spent ({total:.2f} s profiled):")
    for group, seconds in sorted(own.items(), key=lambda kv: -kv[1]):
        print(f"  {100 * seconds / total:5.1f}%  {1000 * seconds / requests:6.2f} ms/request  {group}")
    print()
    stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
