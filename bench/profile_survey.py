"""Where a survey request's time goes: N participants walk the whole survey in-process
(Django's test client, no test instrumentation, DEBUG off) against a private PostgreSQL
cluster; prints the queries and the mean wall time of every step, then a cProfile summary
grouped by where the time is spent (database driver, ORM, templates, middleware, ...).

    python bench/profile_survey.py                 # 20 participants
    python bench/profile_survey.py --participants 50 --top 40
    python bench/profile_survey.py --timer cpu     # this process's CPU time, not wall time
    python bench/profile_survey.py --database      # and where the database's time goes
    python bench/profile_survey.py --plain         # no profiler: this process's CPU per request and step
    python bench/profile_survey.py --plain --compare   # the same, and the anchor (bench/anchor) walked alike

With ``--database`` it also loads pg_stat_statements into the private cluster and prints the
database's side: its processes' CPU per request, and each statement's calls, execution and
planning time per participant (planning is what prepared statements save; see
DATABASE_PREPARE_THRESHOLD in README).

With ``--timer cpu`` the profile counts the CPU time of the Django process only (waiting on
PostgreSQL, and PostgreSQL's own work, are left out), so its shares move less with the load of a
busy machine than the wall-clock ones do.

The walk is the one tests/survey/test_query_budgets.py counts queries with. With ``--compare``
(``--plain`` only) the anchor survey is walked the same way in a second process (the same 26
requests: the entry page, the start, the resume link, each page and its POST, the end page) and
the two are printed side by side per step, with the ratio: the quick, in-process form of
``load_survey.py --compare``, to see which step carries the difference.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
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
    parser.add_argument("--compare", action="store_true",
                        help="with --plain: also walk the anchor survey (bench/anchor) in a second process, per step side by side")
    parser.add_argument("--side", choices=("attune", "anchor"), default="attune", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)  # the --compare child writes its timings here
    parser.add_argument("--database", action="store_true",
                        help="also the database's CPU per request and its time per statement (pg_stat_statements)")
    args = parser.parse_args()
    if args.compare:
        if not args.plain:
            parser.error("--compare needs --plain")
        return compare(args)

    from load_survey import PrivatePostgres, recreate_database, tree_cpu_seconds

    if args.side == "anchor":
        return anchor_side(args)

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
        if args.json:
            Path(args.json).write_text(json.dumps({"timings": wall, "requests": requests, "database_cpu_s": database_cpu}))
            return 0
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


ANCHOR_STEPS = ("consent", "eligibility", "background", "attitudes", "importance", "criteria-ranking", "before-scenarios",
                "scenario-1", "scenario-2", "scenario-3", "closing")


def anchor_walk(client, timings, clock) -> int:
    """The anchor's survey walked as tests/survey/test_query_budgets.walk walks Attune's: the same
    requests in the same order, with the same answers (the anchor keeps a page as one JSON row)."""
    from survey import questions

    count = 0

    def timed(label, call, status):
        nonlocal count
        started = clock()
        response = call()
        timings.setdefault(label, []).append(clock() - started)
        count += 1
        assert response.status_code == status, (label, response.status_code)
        return response

    timed("GET entry", lambda: client.get("/study/demo/?PROLIFIC_PID=p&STUDY_ID=st&SESSION_ID=se"), 200)
    resume = timed("POST entry (start)", lambda: client.post("/study/demo/", {"start": "x"}), 303)["Location"]
    token = resume.split("/r/")[1].strip("/")
    timed("GET resume", lambda: client.get(resume), 303)
    answers = {
        "consent": {"consent_version": "1", "statement": ["0", "1", "2"]},
        "eligibility": {"eligibility-adult": "yes", "eligibility-lived_experience": "yes"},
        "background": {"background.age_group": "25_34", "background.gender": "woman", "background.ethnicity": "white",
                       "background.diagnoses": ["depression", "anxiety"], "background.severity": "moderate",
                       "background.treatment": "therapy", "background.ai_use": "sometimes"},
        "attitudes": {**{item.key: "4" for item in questions.ATTITUDES}, "attention.1": "disagree"},
        "importance": {**{f"importance-{k}": "4" for k in ("empathy", "active_listening", "self_motivated_change",
                                                          "trust_rapport", "patient_autonomy")}, "attention.2": "strongly_agree"},
        "criteria-ranking": {"rank-empathy": "1", "rank-active_listening": "2", "rank-self_motivated_change": "3",
                             "rank-trust_rapport": "4", "rank-patient_autonomy": "5", "order_confirmed": "yes"},
        "closing": {"feedback": "Thanks."},
    }
    for step in ANCHOR_STEPS:
        number = step.split("-")[1] if step.startswith("scenario-") else None
        path = f"/study/r/{token}/scenario/{number}/" if number else f"/study/r/{token}/{step}/"
        data = answers.get(step, {"rank": "1", **{f"rank-{int(number) * 10 + i}": str(i + 1) for i in range(4)}} if number else {})
        timed(f"GET {step}", lambda: client.get(path), 200)
        timed(f"POST {step}", lambda: client.post(path, {"participant": token, **data}), 303)
    timed("GET done", lambda: client.get(f"/study/r/{token}/done/"), 200)
    return count


def anchor_side(args) -> int:
    """The anchor walked in this process (its own settings), timings to ``args.json``."""
    from load_survey import SIDES, PrivatePostgres, recreate_database, tree_cpu_seconds

    pg = PrivatePostgres(None)
    pg.start()
    try:
        recreate_database(pg.url("postgres"), "anchor_profile")
        os.environ.update({"DATABASE_URL": pg.url("anchor_profile"), "DJANGO_SETTINGS_MODULE": "anchor.settings",
                           "DEBUG": "false", "CONN_MAX_AGE": "60"})
        sys.path.insert(0, str(SIDES["anchor"][0]))
        import django

        django.setup()
        from django.core.management import call_command
        from django.test import Client

        call_command("migrate", verbosity=0, interactive=False)
        anchor_walk(Client(HTTP_HOST="127.0.0.1"), {}, time.process_time)  # warm-up: templates compiled, statements seen
        database_cpu = tree_cpu_seconds(pg.pid)
        timings: dict[str, list[float]] = defaultdict(list)
        requests = sum(anchor_walk(Client(HTTP_HOST="127.0.0.1"), timings, time.process_time) for _ in range(args.participants))
        database_cpu = tree_cpu_seconds(pg.pid) - database_cpu
    finally:
        pg.stop()
    Path(args.json).write_text(json.dumps({"timings": timings, "requests": requests, "database_cpu_s": database_cpu}))
    return 0


def compare(args) -> int:
    """Both sides walked in-process (each in its own process, one after the other), per step side by side."""
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for side in ("anchor", "attune"):
            out = Path(folder) / f"{side}.json"
            subprocess.run([sys.executable, __file__, "--plain", "--side", side, "--participants", str(args.participants),
                            "--json", str(out)], check=True)
            results[side] = json.loads(out.read_text())

    def median_ms(values):
        return 1000 * sorted(values)[len(values) // 2]

    totals = {side: sum(sum(v) for v in r["timings"].values()) / args.participants for side, r in results.items()}
    print(f"{args.participants} surveys a side, in-process, no profiler; this process's CPU per request (median of each step)\n")
    print(f"{'step':<24}{'anchor ms':>10}{'Attune ms':>10}{'ratio':>7}{'Attune - anchor':>17}")
    for label, values in results["attune"]["timings"].items():
        anchor = results["anchor"]["timings"].get(label)
        a, b = (median_ms(anchor) if anchor else float("nan")), median_ms(values)
        print(f"{label:<24}{a:>10.2f}{b:>10.2f}{b / a:>7.2f}{b - a:>17.2f}")
    a, b = 1000 * totals["anchor"], 1000 * totals["attune"]
    print(f"{'whole survey':<24}{a:>10.1f}{b:>10.1f}{b / a:>7.2f}{b - a:>17.1f}")
    db = {side: 1000 * r["database_cpu_s"] / args.participants for side, r in results.items()}
    print(f"{'database CPU a survey':<24}{db['anchor']:>10.1f}{db['attune']:>10.1f}{db['attune'] / db['anchor']:>7.2f}"
          f"{db['attune'] - db['anchor']:>17.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
