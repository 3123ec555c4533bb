"""Where a survey request's time goes: N participants walk the whole survey in-process
(Django's test client, no test instrumentation, DEBUG off) against a private PostgreSQL
cluster; prints the queries and the mean wall time of every step, then a cProfile summary
grouped by where the time is spent (database driver, ORM, templates, middleware, ...).

    python bench/profile_survey.py                 # 20 participants
    python bench/profile_survey.py --participants 50 --top 40
    python bench/profile_survey.py --timer cpu     # this process's CPU time, not wall time
    python bench/profile_survey.py --database      # and where the database's time goes
    python bench/profile_survey.py --plain         # no profiler: this process's CPU per request and step

With ``--database`` it also loads pg_stat_statements into the private cluster and prints the
database's side: its processes' CPU per request, and each statement's calls, execution and
planning time per participant (planning is what prepared statements save; see
DATABASE_PREPARE_THRESHOLD in README).

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
    parser.add_argument("--plain", action="store_true",
                        help="no profiler: this process's CPU time per request and per step (what the profiler's overhead hides)")
    parser.add_argument("--database", action="store_true",
                        help="also the database's CPU per request and its time per statement (pg_stat_statements)")
    args = parser.parse_args()

    from load_survey import PrivatePostgres, recreate_database, tree_cpu_seconds

    pg = PrivatePostgres({"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track_planning": "on"}
                         if args.database else None)
    pg.start()
    statements = []
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
        if args.database:
            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                cursor.execute("SELECT pg_stat_statements_reset()")
        database_cpu = tree_cpu_seconds(pg.pid)
        profile = cProfile.Profile(time.process_time) if args.timer == "cpu" else cProfile.Profile()
        counts: dict[str, list[int]] = defaultdict(list)
        wall: dict[str, list[float]] = defaultdict(list)
        started = time.perf_counter()
        requests = 0
        for n in range(args.participants):
            if args.plain:
                budget, _ = walk(Client(), study, pid=f"profile-{n}", timings=wall, clock=time.process_time, count_queries=False)
                requests += len(budget.counts)
                continue
            profile.enable()
            budget, _ = walk(Client(), study, pid=f"profile-{n}", timings=wall)
            profile.disable()
            for label, count in budget.counts.items():
                counts[label].append(count)
            requests += len(budget.counts)
        elapsed = time.perf_counter() - started
        database_cpu = tree_cpu_seconds(pg.pid) - database_cpu
        if args.database:
            with connection.cursor() as cursor:
                cursor.execute("SELECT calls, total_exec_time, total_plan_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) "
                               "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                               "AND query NOT LIKE '%pg_stat_statements%' ORDER BY total_exec_time + total_plan_time DESC")
                statements = cursor.fetchall()
    finally:
        pg.stop()

    if args.plain:
        total = sum(sum(v) for v in wall.values())
        print(f"{args.participants} participants, {requests} requests; this process's CPU (no profiler, no query capture): "
              f"{1000 * total / requests:.2f} ms per request, {1000 * total / args.participants:.1f} ms per survey; "
              f"database processes {1000 * database_cpu / requests:.2f} ms per request\n")
        print(f"{'step':<34}{'ms CPU (median)':>16}")
        for label, values in wall.items():
            print(f"{label:<34}{1000 * sorted(values)[len(values) // 2]:>16.2f}")
        return 0
    print(f"{args.participants} participants, {requests} requests, {1000 * elapsed / requests:.1f} ms per request "
          f"(wall, in-process, profiler on)\n")
    print(f"{'step':<34}{'queries':>8}{'ms (mean wall)':>16}")
    for label in counts:
        print(f"{label:<34}{max(counts[label]):>8}{1000 * sum(wall[label]) / len(wall[label]):>16.1f}")
    if args.database:
        n = args.participants
        print(f"\ndatabase: its processes' CPU {1000 * database_cpu / requests:.2f} ms/request; {sum(r[0] for r in statements) / n:.0f} "
              f"statements per participant, execution {sum(r[1] for r in statements) / n:.2f} ms + planning "
              f"{sum(r[2] for r in statements) / n:.2f} ms per participant")
        print(f"{'calls':>7}{'exec ms':>9}{'plan ms':>9}  statement (per participant)")
        for calls, exec_ms, plan_ms, query in statements[:25]:
            print(f"{calls / n:7.1f}{exec_ms / n:9.3f}{plan_ms / n:9.3f}  {query}")
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
