"""Start an experiment and run every job in this process, without a worker:
the validation run (`make validate`) and small runs on a laptop. Jobs reach
this process through the inline job queue (ATTUNE_JOB_QUEUE=inline)."""
import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core.services import scenario_bank_load
from training import services
from training.jobs.queue import inline_queue
from training.models import Job
from training.plans import ConfigError


class Command(BaseCommand):
    help = "Start an experiment from a preset (plus JSON overrides) and run all its jobs here, in order."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--preset", default="cpu_demo")
        parser.add_argument("--config", default="{}", help="JSON settings that override the preset's defaults.")
        parser.add_argument("--config-file", type=Path, help="A JSON file of settings (applied before --config).")

    def handle(self, *args, name, preset, config, config_file, **options):
        try:
            overrides = json.loads(config_file.read_text()) if config_file else {}
            overrides.update(json.loads(config))
        except (OSError, json.JSONDecodeError) as exc:
            raise CommandError(f"cannot read the configuration: {exc}") from None
        if settings.ATTUNE_JOB_QUEUE != "inline":
            raise CommandError("run_experiment runs every job in this process: set ATTUNE_JOB_QUEUE=inline "
                               "(make validate does)")
        scenario_bank_load()

        def print_job(job_id, state):
            job = Job.objects.get(pk=job_id)
            self.stdout.write(f"  {job.key:<28} {state}")
            if state != Job.State.SUCCEEDED and state != "skipped":
                raise CommandError(f"job {job.key} {state}: {job.error.splitlines()[0] if job.error else ''}")

        # Held, so that the jobs run here one by one and the first failure stops the run.
        with inline_queue.held():
            try:
                with transaction.atomic():
                    experiment = services.experiment_start(name=name, config={**overrides, "preset": preset}, actor=None)
            except ConfigError as exc:
                raise CommandError("the experiment was not started:\n  " + "\n  ".join(exc.messages)) from None
            self.stdout.write(f"Experiment {experiment.name!r}: {experiment.jobs.count()} jobs, output in {experiment.output_dir}")
            inline_queue.run_pending(report=print_job)
        evaluate = experiment.jobs.get(kind="evaluate")
        report = json.loads(Path(evaluate.result["evaluation_json"]).read_text())
        self.stdout.write("\nAverage pairwise win rate (%) [95% bootstrap interval]"
                          + (" — synthetic judge" if report.get("synthetic") else ""))
        criteria = report["criteria"]
        self.stdout.write(f"  {'model':<16}{'words':>7}" + "".join(f"{c:>22}" for c in criteria))
        for model, row in report["table"].items():
            cells = "".join(f"{_rate(row[c]):>22}" for c in criteria)
            words = report.get("lengths", {}).get(model, {}).get("mean_words")
            self.stdout.write(f"  {model:<16}{'-' if words is None else round(words, 1):>7}{cells}")
        if report.get("shape_checks"):
            self.stdout.write("\nShape checks (difference of average pairwise win rates, 95% interval, points)")
            for check in report["shape_checks"]:
                interval = check.get("interval")
                detail = (f"[{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]" if interval else check.get("reason") or "")
                self.stdout.write(f"  {check['status']:<15} {check['title']}  {detail}")
        self.stdout.write(f"\nFull report: {evaluate.result['evaluation_json']}")
        self.stdout.write("Plots: " + ", ".join(evaluate.result.get("plots", [])))


def _rate(entry: dict) -> str:
    rate, interval = entry.get("average_pairwise_win_rate"), entry.get("interval")
    if rate is None:
        return "-"
    return f"{100 * rate:.1f}" + (f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]" if interval else "")
