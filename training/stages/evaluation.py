"""Evaluation: every model answers the test scenarios, the judge compares them, answers become responses."""
from __future__ import annotations

from pathlib import Path

from core.models import ModelVersion, Response
from training.jobs.errors import JobCancelled
from training.models import Artifact, Job
from training.pipeline.control import RunControl

from .common import StageOutcome, base_model, base_model_version, experiment_config, stop_if_asked, upstream
from .inputs import scenario_from_id


def run_evaluate(job: Job, run) -> StageOutcome:
    from training.pipeline.evaluation import EvalGenerationSettings, EvalModel, EvaluationConfig, run_evaluation

    config = experiment_config(job)
    inputs = upstream(job, "scenarios").result
    base = base_model(job, config)
    # A model the experiment names a server for answers through it (a policy by its adapter name there).
    models = [EvalModel(name="base", model=base, server=config.servers.get("base"))]
    for key in job.params["models"]:
        if key != "base":
            # A policy folder knows the base (and SFT adapter) it was trained on.
            models.append(EvalModel(name=key, policy=upstream(job, key).result["adapter_dir"], server=config.servers.get(key)))
    reward_dirs = {j.params["criterion"]: j.result["model_dir"]
                   for j in job.experiment.jobs.filter(kind="reward_model", state=Job.State.SUCCEEDED)}
    criteria = list(config.evaluation_criteria)
    pareto = [c for c in ("empathy", "safety") if c in criteria]
    if len(pareto) < 2:
        pareto = (criteria + criteria)[:2] if len(criteria) == 1 else criteria[:2]
    output = job.work_dir() / "evaluation"
    result = run_evaluation(
        EvaluationConfig(
            models=models, scenarios_path=inputs["scenarios_path"], personas_path=inputs["personas_path"], output_dir=str(output),
            judge=config.judge, criteria=criteria, personas_per_scenario=config.personas_per_scenario, seed=config.seed,
            generation=EvalGenerationSettings(max_new_tokens=config.max_new_tokens, system_prompt=config.system_prompt, seed=config.seed),
            reward_models=reward_dirs, pareto=pareto, progress_bar=False,
        ),
        RunControl.of(run),
    )
    stop_if_asked(run)
    if result.stopped or not result.report_path:
        raise JobCancelled()
    _store_answers(job, output / "answers", [m.name for m in models])
    return StageOutcome(
        result={"evaluation_json": result.report_path, "judge_decisions": result.decisions_path,
                "answers_dir": str(output / "answers"), "plots": list(result.plots), "synthetic": result.synthetic},
        lineage={"models": [m.name for m in models], "reward_models": reward_dirs,
                 **({"servers": {name: {"base_url": s.get("base_url"), "model": s.get("model")} for name, s in config.servers.items()}}
                    if config.servers else {})},
        artifacts=[{"kind": Artifact.Kind.EVALUATION, "name": "evaluation", "path": Path(result.report_path)},
                   {"kind": Artifact.Kind.EVALUATION, "name": "judge-decisions", "path": Path(result.decisions_path)}]
        + [{"kind": Artifact.Kind.PLOT, "name": Path(p).name, "path": Path(p)} for p in result.plots],
    )


def _store_answers(job: Job, answers_dir: Path, names: list[str]):
    """Evaluation answers become Response rows, so they can be sent for clinician rating."""
    from training.pipeline.evaluation import answers_file_name
    from training.pipeline.io import load_candidates

    for name in names:
        version = base_model_version(job) if name == "base" else ModelVersion.objects.get(pk=upstream(job, name).result["model_version"])
        for candidate in load_candidates(answers_dir / f"{answers_file_name(name)}.jsonl"):
            Response.objects.update_or_create(
                scenario=scenario_from_id(candidate.scenario_id), model_version=version, sample_index=0,
                defaults={"text": candidate.responses[0], "generation_settings": candidate.generation or {}},
            )
