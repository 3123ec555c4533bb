"""Reward models (one per criterion) and the MODPO margins computed from them."""
from __future__ import annotations

from django.conf import settings

from core.models import ModelVersion
from training.jobs.errors import JobCancelled
from training.models import Artifact, Job
from training.pipeline.control import RunControl

from .common import StageOutcome, experiment_config, model_version_register, reward_backbone, stop_if_asked, upstream


def run_reward_model(job: Job, run) -> StageOutcome:
    from training.pipeline.rewards import RewardModelConfig, train_reward_model

    config = experiment_config(job)
    criterion = job.params["criterion"]
    dataset = upstream(job, "preferences").result["dataset_dir"]
    output = job.work_dir() / "model"
    result = train_reward_model(RewardModelConfig(
        dataset_dir=dataset, criterion=criterion, output_dir=output, backbone=reward_backbone(job, config),
        model_cache_dir=settings.MODEL_CACHE_DIR, max_steps=config.reward_max_steps, seed=config.seed,
        save_steps=max(1, config.policy_save_steps), validation_fraction=config.reward_validation_fraction,
    ), RunControl.of(run))
    stop_if_asked(run)
    if not result.completed:
        raise JobCancelled()
    run.log(f"reward model for {criterion}: {result.train_pairs} training pairs, {result.validation_pairs} held out, "
            f"validation accuracy {result.validation_accuracy}")
    version = model_version_register(job, kind=ModelVersion.Kind.REWARD, path=output, model_ref=config.reward_backbone,
                                      provenance={"criterion": criterion, "validation_accuracy": result.validation_accuracy})
    metrics = {"validation_accuracy": result.validation_accuracy, "train_accuracy": result.train_accuracy,
               "train_pairs": result.train_pairs, "validation_pairs": result.validation_pairs,
               "scale_mean": result.scale_mean, "scale_std": result.scale_std}
    return StageOutcome(
        result={"model_dir": str(output), **metrics},
        lineage={"dataset": upstream(job, "preferences").result.get("version")},
        artifacts=[{"kind": Artifact.Kind.REWARD_MODEL, "name": f"reward-{criterion}", "path": output, "metrics": metrics,
                    "model_version": version}],
    )


def run_margins(job: Job, run) -> StageOutcome:
    from training.pipeline.rewards import MarginsConfig, compute_margins

    primary = job.params["primary"]
    weights = job.params["weights"]
    reward_dirs = {c: upstream(job, f"reward:{c}").result["model_dir"] for c in weights if c != primary}
    path = compute_margins(MarginsConfig(
        dataset_dir=upstream(job, "preferences").result["dataset_dir"], primary=primary, weights=weights,
        reward_model_dirs=reward_dirs, output_dir=job.work_dir() / "margins",
    ), RunControl.of(run))
    return StageOutcome(
        result={"margin_dataset_dir": str(path)},
        lineage={"reward_models": reward_dirs, "dataset": upstream(job, "preferences").result.get("version")},
        artifacts=[{"kind": Artifact.Kind.MARGINS, "name": "margins", "path": path}],
    )
