"""The step pilot on an experiment's own data: win rate against DPO steps for one policy, to choose
policy_max_steps (training.pipeline.pilot). Reads the experiment; writes only files under --output."""
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from training.models import Experiment, Job


def _finished(experiment: Experiment, **filters) -> Job:
    job = experiment.jobs.filter(**filters).first()
    if job is None or job.state != Job.State.SUCCEEDED:
        what = ", ".join(f"{v}" for v in filters.values())
        state = "has none" if job is None else f"is {job.state}"
        raise CommandError(f"experiment {experiment.name!r}: its {what} job {state}; the pilot needs it finished")
    return job


class Command(BaseCommand):
    help = ("Train DPO on a finished experiment's preference data (from its SFT adapter) with checkpoints at the given "
            "steps and judge each against the base model on the reward models' held-out scenarios.")

    def add_arguments(self, parser):
        parser.add_argument("--from-experiment", required=True, dest="experiment", help="The experiment's name.")
        parser.add_argument("--criterion", help="The policy's criterion (default: the experiment's primary).")
        parser.add_argument("--steps", default="10,20,40,80", help="Comma-separated DPO step counts (default 10,20,40,80).")
        parser.add_argument("--output", type=Path, help="Output folder (default: <experiment folder>/pilot-<criterion>).")

    def handle(self, *args, experiment, criterion, steps, output, **options):
        from training.pipeline.pilot import StepPilotConfig, format_pilot_table, run_step_pilot
        from training.pipeline.policies import PolicyConfig
        from training.stages.common import base_model, experiment_config
        from training.stages.policies import _policy_recipe

        found = Experiment.objects.filter(name=experiment).first()
        if found is None:
            raise CommandError(f"no experiment named {experiment!r}")
        try:
            step_counts = [int(part) for part in steps.split(",")]
        except ValueError:
            raise CommandError(f"--steps must be comma-separated whole numbers (got {steps!r})") from None
        config = experiment_config(found.jobs.first())
        criterion = criterion or config.primary
        preferences = _finished(found, kind="preferences")
        if criterion not in (preferences.result.get("counts") or {}):
            raise CommandError(f"experiment {found.name!r} has no {criterion!r} preference pairs")
        sft = _finished(found, kind="sft")
        scenarios = _finished(found, kind="export_inputs")
        # The experiment's own DPO recipe (what its dpo:<criterion> job trains with), on its SFT adapter.
        dpo_job = found.jobs.filter(kind="dpo").first() or sft
        policy = PolicyConfig(**{**_policy_recipe(dpo_job), "base_adapter": sft.result["adapter_dir"]})
        output = output or Path(found.output_dir) / f"pilot-{criterion}"
        try:
            pilot_config = StepPilotConfig(
                dataset_dir=preferences.result["dataset_dir"], criterion=criterion,
                scenarios_path=scenarios.result["scenarios_path"], personas_path=scenarios.result["personas_path"],
                output_dir=str(output), policy=policy, base_model=base_model(sft, config), judge=config.judge,
                steps=step_counts, validation_fraction=config.reward_validation_fraction, split_seed=config.seed,
                personas_per_scenario=config.personas_per_scenario, max_new_tokens=config.max_new_tokens,
                system_prompt=config.system_prompt, seed=config.seed,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Pilot of {found.name!r} on {criterion}: DPO steps {pilot_config.steps}, output in {output}")
        pilot = run_step_pilot(pilot_config)
        self.stdout.write(format_pilot_table(pilot))
        self.stdout.write(f"\nFull result: {output / 'pilot.json'}")
        self.stdout.write(json.dumps(pilot["suggestion"]))
