"""Start an experiment and run every job in this process, without a worker:
the validation run (`make validate`) and small runs on a laptop."""
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core.services import scenario_bank_load
from training import services
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
        scenario_bank_load()
        queue: list[int] = []
        # Jobs are published after commit; here they are run in this process instead.
        original_publish = services._publish
        services._publish = lambda job_id, _queue: queue.append(job_id)
        try:
            try:
                with transaction.atomic():
                    experiment = services.experiment_start(name=name, config={**overrides, "preset": preset}, actor=None)
            except ConfigError as exc:
                raise CommandError("the experiment was not started:\n  " + "\n  ".join(exc.messages)) from None
            self.stdout.write(f"Experiment {experiment.name!r}: {experiment.jobs.count()} jobs, output in {experiment.output_dir}")
            while queue:
                job_id = queue.pop(0)
                state = services.job_execute(job_id=job_id)
                job = Job.objects.get(pk=job_id)
                self.stdout.write(f"  {job.key:<28} {state}")
                if state != Job.State.SUCCEEDED and state != "skipped":
                    raise CommandError(f"job {job.key} {state}: {job.error.splitlines()[0] if job.error else ''}")
        finally:
            services._publish = original_publish
        evaluate = experiment.jobs.get(kind="evaluate")
        report = json.loads(Path(evaluate.result["evaluation_json"]).read_text())
        self.stdout.write("\nAverage pairwise win rate (%)" + (" — synthetic judge" if report.get("synthetic") else ""))
        criteria = report["criteria"]
        self.stdout.write(f"  {'model':<16}" + "".join(f"{c:>12}" for c in criteria))
        for model, row in report["table"].items():
            cells = "".join(
                f"{'-' if row[c]['average_pairwise_win_rate'] is None else round(100 * row[c]['average_pairwise_win_rate'], 1):>12}"
                for c in criteria)
            self.stdout.write(f"  {model:<16}{cells}")
        self.stdout.write("\nPlots: " + ", ".join(evaluate.result.get("plots", [])))
