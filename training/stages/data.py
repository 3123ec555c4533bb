"""Candidate generation, judge labels and the preference dataset."""
from __future__ import annotations

from training.models import Artifact, Job
from training.pipeline.control import RunControl

from .common import StageOutcome, base_model, experiment_config, stop_if_asked, survey_study, upstream


def run_generate(job: Job, run) -> StageOutcome:
    from training.pipeline.generation import CandidateGenerationConfig, generate_candidates

    config = experiment_config(job)
    inputs = upstream(job, "scenarios").result
    output = job.work_dir() / "candidates.jsonl"
    base = base_model(job, config)
    server = config.servers.get("base")  # the base model's inference server, if the experiment names one
    result = generate_candidates(
        CandidateGenerationConfig(
            model=base, scenarios_path=inputs["scenarios_path"], output_path=str(output), n=config.candidates_per_scenario,
            max_new_tokens=config.max_new_tokens, seed=config.seed, system_prompt=config.system_prompt, split="train",
            progress_bar=False, server=server,
        ),
        RunControl.of(run),
    )
    stop_if_asked(run)
    return StageOutcome(
        result={"candidates_path": str(output), "generated": result.generated, "skipped": result.skipped, "base_model": base},
        lineage={"base_model": base, **({"server": _server_lineage(server, result)} if server else {})},
        artifacts=[{"kind": Artifact.Kind.CANDIDATES, "name": "candidates", "path": output}],
    )


def _server_lineage(server: dict, result) -> dict:
    from training.pipeline.server_generation import server_config

    return {**server_config(server).record(), "served_models": getattr(result, "served_models", [])}


def run_label(job: Job, run) -> StageOutcome:
    from training.pipeline.labeling import LabelingConfig, run_labeling

    config = experiment_config(job)
    inputs = upstream(job, "scenarios").result
    candidates = upstream(job, "generate").result["candidates_path"]
    output = job.work_dir() / "labels.jsonl"
    result = run_labeling(
        LabelingConfig(
            candidates_path=candidates, scenarios_path=inputs["scenarios_path"], personas_path=inputs["personas_path"],
            output_path=str(output), judge=config.judge, criteria=job.params["criteria"],
            personas_per_scenario=config.personas_per_scenario, seed=config.seed, progress_bar=False,
        ),
        RunControl.of(run),
    )
    stop_if_asked(run)
    return StageOutcome(
        result={"labels_path": str(output), "labeled": result.labeled, "rejected": result.rejected, "judge": result.judge},
        lineage={"judge": result.judge},
        artifacts=[{"kind": Artifact.Kind.LABELS, "name": "labels", "path": output, "metrics": {"rejected": result.rejected}}],
    )


def run_preferences(job: Job, run) -> StageOutcome:
    from training.pipeline.preferences import PreferenceConfig, build_preference_dataset

    config = experiment_config(job)
    inputs = upstream(job, "scenarios").result
    output = job.work_dir() / "dataset"
    lineage = {}
    survey_path = None
    study = survey_study(config)
    if study is not None:
        from survey import services as survey_services

        survey_path = job.work_dir() / "survey_rankings.jsonl"
        version = survey_services.response_rankings_export(study=study, path=survey_path)
        lineage["dataset_versions"] = [version.pk]
    clinician_path = None
    if config.clinician_studies:
        from annotation import services as annotation_services
        from annotation.models import RatingStudy

        clinician_path = job.work_dir() / "clinician_pairs.jsonl"
        text = "".join(annotation_services.preference_pairs_export(study=study, actor=None)
                       for study in RatingStudy.objects.filter(pk__in=config.clinician_studies).order_by("pk"))
        clinician_path.write_text(text)
        lineage["clinician_studies"] = list(config.clinician_studies)
    result = build_preference_dataset(PreferenceConfig(
        labels_path=upstream(job, "label").result["labels_path"],
        candidates_path=upstream(job, "generate").result["candidates_path"],
        scenarios_path=inputs["scenarios_path"],
        survey_path=str(survey_path) if survey_path else None,
        clinician_path=str(clinician_path) if clinician_path else None,
        criteria=job.experiment.jobs.get(key="label").params["criteria"],
        output_dir=str(output),
    ), RunControl.of(run))
    return StageOutcome(
        result={"dataset_dir": str(output), "version": result.version, "counts": result.counts},
        lineage={"dataset": result.version, **lineage},
        artifacts=[{"kind": Artifact.Kind.DATASET, "name": "preferences", "path": output, "metrics": {"counts": result.counts}}],
    )
