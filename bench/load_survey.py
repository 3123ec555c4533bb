"""Load test of the participant survey: N simulated participants (default 200)
complete the whole survey against the real server (gunicorn + PostgreSQL) on
loopback, then the database is checked: no answer lost, none duplicated.

    python bench/load_survey.py                         # 200 participants, at most 300 s
    python bench/load_survey.py --users 300 --spawn-rate 50 --workers 4 --timeout 600

Needs DATABASE_URL pointing at PostgreSQL (scripts/test_services.sh prints one).
The bench uses its own database (<name>_loadbench, dropped and created again),
its own var/ folder, and binds 127.0.0.1 only. Locust runs as a library
(headless). Each simulated participant also refreshes a page, submits one page
twice and goes back to resubmit an earlier page, as real people do.

Prints requests/s, p50/p95/p99 latency (all requests and per step), failures,
and the result of the database check; exits 1 if the check fails.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
STUDY = "demo"
WARM_UP_PREFIX = "warm-up"

from scripts.servers import wait_until_up  # noqa: E402  (needs ROOT on the path)


# --- Setup and verification run in child processes (plain Django, no gevent) ------------


def _django(env_url: str, var_dir: str):
    os.environ["DATABASE_URL"] = env_url
    os.environ["ATTUNE_VAR_DIR"] = var_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    import django

    django.setup()


def child_setup(env_url: str, var_dir: str) -> None:
    """Migrate, load the scenario bank and the demo study."""
    _django(env_url, var_dir)
    import io

    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    from core.services import scenario_bank_load
    from survey import demo

    scenario_bank_load()
    demo.load(io.StringIO())


def child_verify(env_url: str, var_dir: str, submitted_path: str, warm_up: str = "0") -> None:
    """Compare the database with what every simulated participant submitted last."""
    _django(env_url, var_dir)
    from survey import questions, selectors
    from survey.models import Answer, CriteriaRanking, ImportanceRating, Participant, ResponseRanking

    submitted = json.loads(Path(submitted_path).read_text())
    criteria = [c.key for c in selectors.study_criteria()]
    item_keys = sorted(i.key for i in (*questions.BACKGROUND, *questions.ATTITUDES, *questions.ATTENTION_CHECKS)) + [questions.FEEDBACK_KEY]
    item_keys.sort()
    problems = []
    from survey.prolific import prolific_id_hash

    study_id = Participant.objects.filter(study__slug=STUDY).values_list("study_id", flat=True).first()
    by_hash = {p.prolific_pid_hash: p for p in Participant.objects.filter(study__slug=STUDY).exclude(prolific_pid_hash="")}
    participants = {pid: by_hash.get(prolific_id_hash(study_id=study_id, prolific_id=pid)) for pid in submitted}
    partial = 0
    for pid, record in submitted.items():
        if record.get("failed"):
            partial += 1
            continue
        participant = participants.get(pid)
        if participant is None:
            problems.append(f"{pid}: no participant row")
            continue
        if record.get("completed") and participant.status != Participant.Status.COMPLETED:
            problems.append(f"{pid}: completed in the browser but {participant.status} in the database")
        keys = sorted(Answer.objects.filter(participant=participant).values_list("item_key", flat=True))
        if record.get("completed") and keys != item_keys:
            problems.append(f"{pid}: answers {len(keys)} != {len(item_keys)} expected (lost or duplicated)")
        for key, value in record.get("answers", {}).items():
            stored = Answer.objects.filter(participant=participant, item_key=key).values_list("value", flat=True).first()
            if str(stored) != str(value):
                problems.append(f"{pid}: {key} is {stored!r}, last submitted {value!r}")
        ratings = dict(ImportanceRating.objects.filter(participant=participant).values_list("criterion__key", "rating"))
        if record.get("completed") and ratings != {k: int(v) for k, v in record.get("importance", {}).items()}:
            problems.append(f"{pid}: importance ratings differ from the last submission")
        if record.get("completed") and sorted(ratings) != sorted(criteria):
            problems.append(f"{pid}: importance rated for {sorted(ratings)}, the study's criteria are {sorted(criteria)}")
        ranking = CriteriaRanking.objects.filter(participant=participant).values_list("ranking", flat=True).first()
        if record.get("completed") and ranking != record.get("criteria_ranking"):
            problems.append(f"{pid}: criteria ranking {ranking} != submitted {record.get('criteria_ranking')}")
        screens = {r.position + 1: ([str(x) for x in r.ranking], r.skipped)
                   for r in ResponseRanking.objects.filter(participant=participant)}
        for number, (ranking_ids, skipped) in record.get("screens", {}).items():
            if screens.get(int(number)) != (ranking_ids, skipped):
                problems.append(f"{pid}: screen {number} stored {screens.get(int(number))}, submitted {(ranking_ids, skipped)}")
        if record.get("completed") and len(screens) != len(participant.scenario_plan or []):
            problems.append(f"{pid}: {len(screens)} ranking screens stored, plan has {len(participant.scenario_plan or [])}")
    # Every participant row must be one a simulated participant (measured or warm-up) started.
    started_by_bench = [*submitted, *(f"{WARM_UP_PREFIX}-{n:04d}" for n in range(int(warm_up)))]
    extra = set(by_hash) - {prolific_id_hash(study_id=study_id, prolific_id=pid) for pid in started_by_bench}
    if extra:
        problems.append(f"{len(extra)} participants in the database that no simulated user created")
    print(json.dumps({"checked": len(submitted), "completed_in_db": sum(p.status == "completed" for p in participants.values()),
                      "problems": problems[:20], "problem_count": len(problems),
                      "not_compared": partial}))


# --- The simulated participants (locust; imported only in the load phase) ----------------


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process, its exited children it waited for, and its live
    descendants: a gunicorn master with its workers, a postmaster with its backends."""
    import psutil

    process = psutil.Process(pid)
    times = process.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in process.children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95 and p99 in ms (linear interpolation between the measured times); 0 for none."""
    if not values:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0}
    ordered = sorted(values)

    def at(q):
        position = q * (len(ordered) - 1)
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    return {"p50_ms": at(0.5), "p95_ms": at(0.95), "p99_ms": at(0.99)}


def run_load(host: str, users: int, spawn_rate: float, timeout: float, seed: int, submitted_path: str,
             think: tuple[float, float] = (0.0, 0.0), cpu_pids: dict[str, int] | None = None, pid_prefix: str = "load") -> dict:
    import gevent
    from locust import HttpUser, task
    from locust.env import Environment
    from locust.exception import StopUser

    submitted: dict[str, dict] = {}
    counter = {"started": 0, "finished": 0, "errors": []}
    rng_master = random.Random(seed)

    def form_fields(html: str) -> dict:
        return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))

    class SurveyParticipant(HttpUser):
        # The whole survey is one task; the pauses between its pages are the reading time.
        def pause(self):
            if think[1] > 0:
                gevent.sleep(self.rng.uniform(*think))

        def on_start(self):
            self.n = counter["started"]
            counter["started"] += 1
            self.pid = f"{pid_prefix}-{self.n:04d}"
            self.rng = random.Random(rng_master.random())
            self.record = submitted.setdefault(self.pid, {"answers": {}, "screens": {}, "completed": False})

        # Every request is measured on its own: a POST, and each redirect the browser then
        # follows, are separate requests (named "<step>" and "<step> -> page").
        def _follow(self, response, name):
            hops = 0
            while response.status_code in (301, 302, 303):
                hops += 1
                if hops > 3:
                    raise StopUser()
                location = response.headers["Location"]
                with self.client.get(location, name=f"{name} -> page", allow_redirects=False, catch_response=True) as response:
                    if response.status_code not in (200, 301, 302, 303):
                        response.failure(f"GET after {name}: {response.status_code}")
                        raise StopUser()
            return response

        def get(self, path, name, redirect_ok=False):
            self.pause()
            with self.client.get(path, name=name, allow_redirects=False, catch_response=True) as response:
                if response.status_code != 200 and not (redirect_ok and response.status_code in (302, 303)):
                    response.failure(f"GET {name}: {response.status_code}")
                    raise StopUser()
            return self._follow(response, name)

        def post(self, path, data, name, fields):
            self.pause()
            payload = {"csrfmiddlewaretoken": fields.get("csrfmiddlewaretoken", ""), **data}
            with self.client.post(path, data=payload, name=name, allow_redirects=False, catch_response=True) as response:
                # A saved page answers 303 See Other; the page it leads to must then be a 200.
                if response.status_code != 303:
                    response.failure(f"POST {name}: {response.status_code}")
                    raise StopUser()
            return self._follow(response, name)

        def token_from(self, response):
            match = re.match(r"^/study/r/([^/]+)/", urlsplit(response.url).path)
            if match is None:
                raise StopUser()
            return match.group(1)

        @task
        def complete_survey(self):
            try:
                self._complete()
                self.record["completed"] = True
            except StopUser:
                counter["errors"].append(self.pid)
                # A request that failed may or may not have reached the server: what this participant
                # recorded from then on is not comparable with the database (the failure is reported).
                self.record["failed"] = True
            finally:
                counter["finished"] += 1
            raise StopUser()

        def _complete(self):
            entry = self.get(f"/study/{STUDY}/?PROLIFIC_PID={self.pid}&STUDY_ID=load&SESSION_ID=s{self.n}", "entry")
            fields = form_fields(entry.text)
            response = self.post(f"/study/{STUDY}/", {k: v for k, v in fields.items() if k != "csrfmiddlewaretoken"},
                                 "start", fields)
            self.token = self.token_from(response)
            base = f"/study/r/{self.token}"
            # Consent: tick every statement.
            statements = re.findall(r'name="statement" value="(\d+)"', response.text)
            version = form_fields(response.text)["consent_version"]
            response = self.post(f"{base}/consent/", {"participant": self.token, "consent_version": version, "statement": statements},
                                 "consent", form_fields(response.text))
            response = self.post(f"{base}/eligibility/", {"participant": self.token, "eligibility-adult": "yes",
                                                          "eligibility-lived_experience": "yes"}, "eligibility", form_fields(response.text))
            # Background: one option per radio group, the diagnoses as a list.
            background_page = response
            radios = _radio_groups(response.text)
            data = {"participant": self.token}
            for name, options in radios.items():
                value = self.rng.choice([o for o in options if o != "prefer_not_to_say"] or options)
                data[name] = value
                self.record["answers"][name] = value
            diagnoses = self.rng.sample(["depression", "anxiety", "ptsd", "ocd", "adhd"], 2)
            data["background.diagnoses"] = diagnoses
            self.record["answers"]["background.diagnoses"] = [d for d in ["depression", "anxiety", "ptsd", "ocd", "adhd"] if d in diagnoses]
            response = self.post(f"{base}/background/", data, "background", form_fields(response.text))
            # Refresh the attitudes page, then submit it twice (a double click).
            self.get(f"{base}/attitudes/", "attitudes (refresh)")
            radios = _radio_groups(response.text)
            data = {"participant": self.token}
            for name, options in radios.items():
                value = "disagree" if name == "attention.1" else self.rng.choice(options)
                data[name] = value
                self.record["answers"][name] = int(value) if value.isdigit() else value
            fields = form_fields(response.text)
            self.post(f"{base}/attitudes/", data, "attitudes (first of a double submit)", fields)
            response = self.post(f"{base}/attitudes/", data, "attitudes", fields)
            # Back button: resubmit the background page with a changed age group.
            age = self.rng.choice(["18_24", "25_34", "35_44", "45_54", "55_64", "65_plus"])
            back = {**_last_background(self.record), "participant": self.token, "background.age_group": age}
            self.record["answers"]["background.age_group"] = age
            self.post(f"{base}/background/", back, "background (back and resubmit)", form_fields(background_page.text))
            response = self.get(f"{base}/importance/", "importance (page)")
            radios = _radio_groups(response.text)
            data = {"participant": self.token}
            importance = {}
            for name, options in radios.items():
                value = "strongly_agree" if name == "attention.2" else self.rng.choice(options)
                data[name] = value
                if name.startswith("importance-"):
                    importance[name[len("importance-"):]] = value
                else:
                    self.record["answers"][name] = value
            self.record["importance"] = importance
            response = self.post(f"{base}/importance/", data, "importance", form_fields(response.text))
            keys = re.findall(r'name="rank-([a-z_]+)"', response.text)
            order = keys[:]
            self.rng.shuffle(order)
            data = {"participant": self.token, **{f"rank-{k}": str(order.index(k) + 1) for k in keys}, "order_confirmed": "yes"}
            self.record["criteria_ranking"] = order
            response = self.post(f"{base}/criteria-ranking/", data, "criteria ranking", form_fields(response.text))
            response = self.post(f"{base}/before-scenarios/", {"participant": self.token}, "before scenarios", form_fields(response.text))
            number = 1
            while "/scenario/" in response.url:
                ids = re.findall(r'name="rank-(\d+)"', response.text)
                if self.rng.random() < 0.2:
                    data = {"participant": self.token, "skip": "1"}
                    self.record["screens"][str(number)] = ([], True)
                else:
                    order = ids[:]
                    self.rng.shuffle(order)
                    data = {"participant": self.token, "rank": "1", **{f"rank-{i}": str(order.index(i) + 1) for i in ids}}
                    self.record["screens"][str(number)] = (order, False)
                response = self.post(f"{base}/scenario/{number}/", data, "scenario screen", form_fields(response.text))
                number += 1
            response = self.post(f"{base}/closing/", {"participant": self.token, "feedback": ""}, "closing", form_fields(response.text))
            self.record["answers"]["closing.feedback"] = None
            if "Thank you for taking part" not in response.text:
                raise StopUser()

    def _radio_groups(html):
        groups: dict[str, list[str]] = {}
        for name, value in re.findall(r'type="radio" name="([^"]+)" id="[^"]+" value="([^"]+)"', html):
            groups.setdefault(name, []).append(value)
        return groups

    def _last_background(record):
        return {k: v for k, v in record["answers"].items() if k.startswith("background.")}

    env = Environment(user_classes=[SurveyParticipant], host=host)
    # Every request's time as measured (Locust's own percentiles round to whole milliseconds below
    # 100 ms, too coarse for a ratio of pages served in 5-10 ms).
    times: dict[str, list[float]] = {}

    def record(request_type, name, response_time, **_kwargs):
        times.setdefault(f"{request_type} {name}", []).append(response_time)

    env.events.request.add_listener(record)
    runner = env.create_local_runner()
    cpu_at_start = {name: tree_cpu_seconds(pid) for name, pid in (cpu_pids or {}).items()}
    started = time.monotonic()
    runner.start(users, spawn_rate=spawn_rate)
    while counter["finished"] < users and time.monotonic() - started < timeout:
        gevent.sleep(0.2)
    elapsed = time.monotonic() - started
    cpu = {name: tree_cpu_seconds(pid) - cpu_at_start[name] for name, pid in (cpu_pids or {}).items()}
    runner.quit()
    total = env.stats.total
    Path(submitted_path).write_text(json.dumps(submitted))
    steps = sorted(
        ({"name": name, "requests": len(values), **percentiles(values)} for name, values in times.items()),
        key=lambda s: -s["p95_ms"],
    )
    overall = percentiles([t for values in times.values() for t in values])
    return {
        "users": users, "finished": counter["finished"], "failed_users": len(counter["errors"]), "seconds": elapsed,
        "completed": sum(1 for r in submitted.values() if r.get("completed")),
        "timed_out": counter["finished"] < users, "requests": total.num_requests, "failures": total.num_failures,
        "requests_per_s": total.num_requests / elapsed if elapsed else 0.0,
        **overall, "steps": steps, "cpu_s": cpu,
        "failure_samples": [str(e.error) for e in list(env.stats.errors.values())[:5]],
    }


# --- Orchestration ------------------------------------------------------------------------


def bench_database_url(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise SystemExit("DATABASE_URL must point at PostgreSQL (the bench measures the real server stack)")
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the load bench runs on loopback only; DATABASE_URL must be a local PostgreSQL")
    name = parts.path.lstrip("/") or "attune"
    bench_name = f"{name}_loadbench"
    admin = urlunsplit(parts._replace(path="/postgres"))
    return urlunsplit(parts._replace(path=f"/{bench_name}")), admin, bench_name


def recreate_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePostgres:
    """A throwaway PostgreSQL cluster (the machine's own binaries, default configuration) that
    only the bench uses, so the CPU time of its processes is the bench's database cost alone."""

    def __init__(self, settings: dict[str, str] | None = None):
        self.settings = settings or {}  # more server settings (-c name=value), e.g. to load pg_stat_statements
        self.bindir = self._bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="attune-loadbench-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0  # initdb refuses to run as root

    @staticmethod
    def _bindir() -> Path | None:
        try:
            return Path(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip())
        except (OSError, subprocess.CalledProcessError):
            found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
            return found[-1].parent if found else None

    def _run(self, *args):
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self):
        if self.as_postgres:
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-o",
                  f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} -c max_connections=200"
                  + "".join(f" -c {name}={value}" for name, value in self.settings.items()),
                  "start")
        return self

    def url(self, name: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    @property
    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().splitlines()[0])

    def stop(self):
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


SIDES = {
    # name: (working directory, WSGI application, settings module)
    "anchor": (ROOT / "bench" / "anchor", "anchor.wsgi:application", "anchor.settings"),
    "attune": (ROOT, "config.wsgi:application", "config.settings.local"),
}


def child_setup_anchor(env_url: str) -> None:
    os.environ["DATABASE_URL"] = env_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "anchor.settings"
    sys.path[:0] = [str(SIDES["anchor"][0]), str(ROOT)]
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def side_run(side: str, args, users: int, database_url: str, var_dir: str, db_pid: int | None) -> dict:
    """Start gunicorn for one side, run the load, stop it; the CPU of its processes (and of the
    database's, when the bench owns the database server) is measured over the load phase."""
    cwd, app, settings_module = SIDES[side]
    env = {**os.environ, "DATABASE_URL": database_url, "ATTUNE_VAR_DIR": var_dir, "DJANGO_SETTINGS_MODULE": settings_module,
           "DEBUG": "false", "CONN_MAX_AGE": str(args.conn_max_age), "CONN_HEALTH_CHECKS": str(args.health_checks).lower(),
           "DATABASE_PREPARE_THRESHOLD": str(args.prepare_threshold if side == "attune" or args.anchor_prepared else 0),
           "LOG_LEVEL": "WARNING", "PYTHONPATH": os.pathsep.join([str(cwd), str(ROOT)])}
    env.pop("REDIS_URL", None)  # the survey does not need a shared cache; keep the bench self-contained
    port = free_port()
    command = [PYTHON, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers),
               "--threads", str(args.threads), "--worker-class", args.worker_class, "--log-level", "warning", "--timeout", "60",
               "--keep-alive", str(args.keep_alive)]
    server = subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True)
    host = f"http://127.0.0.1:{port}"
    submitted_path = str(Path(var_dir) / f"submitted-{side}-{users}.json")
    try:
        if not wait_until_up(f"{host}/healthz", poll_s=0.3):
            raise SystemExit(f"gunicorn ({side}) did not come up")
        for _ in range(4 * args.workers):  # every worker has imported and answered once
            urllib.request.urlopen(f"{host}/study/{STUDY}/", timeout=10).read()
        if args.warm_up:
            # A server that has run for a while has compiled every page's template, filled its caches and
            # prepared its statements: whole surveys before the measured phase, not counted, so a short run
            # measures that steady state rather than each worker's first pages.
            run_load(host, args.warm_up, args.spawn_rate, args.timeout, args.seed + 1, f"{submitted_path}.warm-up", (0.0, 0.0),
                     pid_prefix=WARM_UP_PREFIX)
        pids = {"app": server.pid, **({"db": db_pid} if db_pid else {})}
        print(f"  {side}: {users} participants ...", flush=True)
        result = run_load(host, users, args.spawn_rate, args.timeout, args.seed, submitted_path, tuple(args.think), cpu_pids=pids)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    result["side"] = side
    result["submitted_path"] = submitted_path
    cpu = result["cpu_s"]
    result["cpu_ms_per_request"] = {k: 1000 * v / result["requests"] if result["requests"] else 0.0 for k, v in cpu.items()}
    return result


def _ratio(a, b):
    return a / b if b else float("nan")


def print_side(result: dict):
    cpu = result["cpu_ms_per_request"]
    cpu_text = "   ".join(f"{k} {v:.2f}" for k, v in cpu.items())
    print(f"  {result['side']:<7} {result['requests']:>6} requests ({result['failures']} failed) in {result['seconds']:.0f} s, "
          f"{result['requests_per_s']:.1f}/s, {result['completed']}/{result['users']} surveys completed; "
          f"p50 {result['p50_ms']:.1f}  p95 {result['p95_ms']:.1f}  p99 {result['p99_ms']:.1f} ms; CPU ms/request: {cpu_text}")


def print_comparison(anchor: dict, attune: dict):
    def cpu_total(r):
        return sum(r["cpu_ms_per_request"].values())

    print(f"\n  {'':<34}{'anchor':>10}{'Attune':>10}{'ratio':>8}")
    rows = [("server CPU per request, ms", cpu_total(anchor), cpu_total(attune))]
    for k in attune["cpu_ms_per_request"]:
        rows.append((f"  of which {k}", anchor["cpu_ms_per_request"].get(k, 0.0), attune["cpu_ms_per_request"][k]))
    rows += [(f"{p} all requests, ms", anchor[f"{p}_ms"], attune[f"{p}_ms"]) for p in ("p50", "p95", "p99")]
    rows += [("requests/s", anchor["requests_per_s"], attune["requests_per_s"]),
             ("completed surveys", anchor["completed"], attune["completed"])]
    for label, a, b in rows:
        print(f"  {label:<34}{a:>10.2f}{b:>10.2f}{_ratio(b, a):>8.2f}")
    steps_a = {s["name"]: s for s in anchor["steps"]}
    print(f"\n  per step (ms){'':<33}{'anchor p50/p95/p99':>20}{'Attune p50/p95/p99':>22}{'p95 ratio':>10}")
    for step in sorted(attune["steps"], key=lambda s: s["name"]):
        other = steps_a.get(step["name"])
        if other is None:
            continue
        print(f"  {step['name'][:45]:<46}{other['p50_ms']:>6.1f}/{other['p95_ms']:>5.1f}/{other['p99_ms']:>5.1f}"
              f"{step['p50_ms']:>9.1f}/{step['p95_ms']:>5.1f}/{step['p99_ms']:>5.1f}{_ratio(step['p95_ms'], other['p95_ms']):>10.2f}")


def print_repeats(results: list[dict]):
    """Per load size: each Attune/anchor ratio's median and range over the repeated runs."""
    measures = {
        "server CPU per request": lambda r: sum(r["cpu_ms_per_request"].values()),
        "  of which app": lambda r: r["cpu_ms_per_request"].get("app", 0.0),
        "  of which db": lambda r: r["cpu_ms_per_request"].get("db", 0.0),
        "p95 all requests": lambda r: r["p95_ms"],
        "requests/s": lambda r: r["requests_per_s"],
    }
    for users in dict.fromkeys(pair["attune"]["users"] for pair in results):
        pairs = [pair for pair in results if pair["attune"]["users"] == users]
        print(f"\n  {users} participants, {len(pairs)} runs: Attune / anchor, median [lowest, highest]")
        for label, measure in measures.items():
            ratios = sorted(_ratio(measure(p["attune"]), measure(p["anchor"])) for p in pairs)
            print(f"  {label:<34}{statistics.median(ratios):>6.2f}  [{ratios[0]:.2f}, {ratios[-1]:.2f}]")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[200],
                        help="simulated participants, each completes the survey once (several values: one run each)")
    parser.add_argument("--spawn-rate", type=float, default=20.0, help="participants started per second")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker")
    parser.add_argument("--worker-class", default="sync", choices=["sync", "gthread"], help="gunicorn worker class")
    parser.add_argument("--keep-alive", type=int, default=2,
                        help="gunicorn's --keep-alive seconds (gthread; 0: a new connection per request, as behind nginx)")
    parser.add_argument("--conn-max-age", type=int, default=60, help="CONN_MAX_AGE for both sides (0: a new connection per request)")
    parser.add_argument("--health-checks", action=argparse.BooleanOptionalAction, default=True,
                        help="CONN_HEALTH_CHECKS for both sides")
    parser.add_argument("--prepare-threshold", type=int, default=5,
                        help="Attune's DATABASE_PREPARE_THRESHOLD (server-side binding and prepared statements; 0: off)")
    parser.add_argument("--anchor-prepared", action="store_true",
                        help="give the anchor the same prepared statements (by default it keeps Django's: none)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="with --compare: run each size this many times, the side order alternating, and print each "
                             "ratio's median and range (the machine's speed drifts between runs)")
    parser.add_argument("--compare", action="store_true",
                        help="side by side: the same load against the minimal anchor survey (bench/anchor), then Attune, and the ratios")
    parser.add_argument("--shared-postgres", action="store_true",
                        help="use the DATABASE_URL server instead of a private cluster (its CPU is then not measured)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a load phase stops")
    parser.add_argument("--think", type=float, nargs=2, default=[2.0, 5.0], metavar=("MIN", "MAX"),
                        help="seconds a participant spends on each page (uniform); 0 0 for a saturation test")
    parser.add_argument("--warm-up", type=int, default=8,
                        help="whole surveys each side serves before the measured phase (not counted; 0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write every measured number to this file")
    parser.add_argument("--keep", action="store_true", help="keep the bench database and var folder")
    parser.add_argument("--child", choices=["setup", "setup-anchor", "verify"], help=argparse.SUPPRESS)
    parser.add_argument("--child-args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "setup":
        child_setup(*args.child_args)
        return 0
    if args.child == "setup-anchor":
        child_setup_anchor(*args.child_args)
        return 0
    if args.child == "verify":
        child_verify(*args.child_args)
        return 0
    if args.worker_class == "sync" and args.threads > 1:
        raise SystemExit("--threads needs --worker-class gthread")

    private = None
    if args.shared_postgres:
        source = os.environ.get("DATABASE_URL", "")
        if not source:
            raise SystemExit("set DATABASE_URL to a local PostgreSQL (eval \"$(scripts/test_services.sh)\")")
        url, admin_url, name = bench_database_url(source)
        anchor_url, _, anchor_name = bench_database_url(source.rsplit("/", 1)[0] + "/anchor")
        db_pid = None
    else:
        private = PrivatePostgres()
        if private.bindir is None:
            raise SystemExit("no PostgreSQL binaries found; pass --shared-postgres to use DATABASE_URL")
        print(f"Starting a private PostgreSQL cluster on 127.0.0.1:{private.port} ...", flush=True)
        private.start()
        url, admin_url, name = private.url("attune_loadbench"), private.url("postgres"), "attune_loadbench"
        anchor_url, anchor_name = private.url("anchor_loadbench"), "anchor_loadbench"
        db_pid = private.pid
    var_dir = tempfile.mkdtemp(prefix="attune-loadbench-")
    setup_env = {**os.environ, "DATABASE_URL": url, "ATTUNE_VAR_DIR": var_dir, "DJANGO_SETTINGS_MODULE": "config.settings.local",
                 "DEBUG": "false", "LOG_LEVEL": "WARNING"}
    setup_env.pop("REDIS_URL", None)
    results = []
    problems_total = 0
    ok = True
    try:
        print(f"Preparing database {name} and the demo study ...", flush=True)
        recreate_database(admin_url, name)
        subprocess.run([PYTHON, __file__, "--child", "setup", "--child-args", url, var_dir], cwd=ROOT, env=setup_env, check=True)
        if args.compare:
            recreate_database(admin_url, anchor_name)
            subprocess.run([PYTHON, __file__, "--child", "setup-anchor", "--child-args", anchor_url], cwd=ROOT, env=setup_env, check=True)
        print(f"gunicorn: {args.workers} {args.worker_class} workers x {args.threads} threads, keep-alive {args.keep_alive} s, "
              f"CONN_MAX_AGE={args.conn_max_age}, prepared statements: Attune "
              f"{f'after {args.prepare_threshold} runs' if args.prepare_threshold > 0 else 'off'}, anchor "
              f"{'the same' if args.anchor_prepared and args.prepare_threshold > 0 else 'off'}, "
              f"health checks {'on' if args.health_checks else 'off'}; {args.think[0]:g}-{args.think[1]:g} s per page, "
              f"spawn rate {args.spawn_rate}/s; {args.warm_up} warm-up surveys a side (not measured); database CPU {'not measured (shared server)' if db_pid is None else 'measured (private cluster)'}",
              flush=True)
        runs = [(users, n) for users in args.users for n in range(max(1, args.repeat))]
        for index, (users, repeat) in enumerate(runs):
            label = f" (run {repeat + 1} of {args.repeat})" if args.repeat > 1 else ""
            print(f"\n{users} participants{label} (load average before: {load_average()})", flush=True)
            pair = {}
            sides = ["anchor", "attune"] if args.compare else ["attune"]
            for side in sides if repeat % 2 == 0 else sides[::-1]:  # alternate who goes first
                result = side_run(side, args, users, anchor_url if side == "anchor" else url, var_dir, db_pid)
                result["load_average_after"] = load_average()
                pair[side] = result
                print_side(result)
                for sample in result["failure_samples"]:
                    print(f"    failure: {sample}")
                ok = ok and result["failures"] == 0 and not result["timed_out"]
            attune = pair["attune"]
            check = subprocess.run([PYTHON, __file__, "--child", "verify", "--child-args", url, var_dir, attune["submitted_path"],
                                    str(args.warm_up)],
                                   cwd=ROOT, env=setup_env, check=True, capture_output=True, text=True)
            verification = json.loads(check.stdout.strip().splitlines()[-1])
            attune["verification"] = verification
            problems_total += verification["problem_count"]
            print(f"  database check (Attune): {verification['checked']} participants checked, {verification['completed_in_db']} completed, "
                  f"{verification['problem_count']} problems (lost, duplicated or wrong answers)"
                  + (f"; {verification['not_compared']} not compared (a request of theirs failed)" if verification.get("not_compared") else ""))
            for problem in verification["problems"]:
                print(f"    {problem}")
            if args.compare:
                print_comparison(pair["anchor"], attune)
            else:
                print("  slowest steps (p95):")
                for step in attune["steps"][:8]:
                    print(f"    {step['name']:<48} {step['requests']:>6} requests   p50 {step['p50_ms']:>5.1f}   "
                          f"p95 {step['p95_ms']:>5.1f}   p99 {step['p99_ms']:>5.1f} ms")
            results.append(pair)
            # The next run starts from an empty survey again (same participant names).
            if index + 1 < len(runs):
                recreate_database(admin_url, name)
                subprocess.run([PYTHON, __file__, "--child", "setup", "--child-args", url, var_dir], cwd=ROOT, env=setup_env, check=True)
        if args.compare and args.repeat > 1:
            print_repeats(results)
    finally:
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1, default=str))
        if not args.keep:
            shutil.rmtree(var_dir, ignore_errors=True)
        if private is not None:
            private.stop()
        elif not args.keep:
            import psycopg

            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f'DROP DATABASE IF EXISTS "{anchor_name}" WITH (FORCE)')
    ok = ok and problems_total == 0
    print("\nOK" if ok else "\nPROBLEMS FOUND")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
