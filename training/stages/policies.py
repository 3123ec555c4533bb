"""Policies: SFT, DPO, joint-loss DPO, MODPO (in this process or through `accelerate launch`) and merged adapters."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from core.models import ModelVersion
from training.jobs.errors import JobCancelled, JobRefused
from training.models import Artifact, Job
from training.pipeline.control import RunControl

from .common import StageOutcome, base_model, experiment_config, model_version_register, stop_if_asked, upstream


def _sft_adapter(job: Job) -> str | None:
    """The SFT adapter a DPO-family policy starts from and uses as its reference."""
    sft = job.depends_on.filter(kind="sft").first()
    return sft.result["adapter_dir"] if sft else None


def _policy_recipe(job: Job) -> dict:
    """The PolicyConfig fields an experiment's policy jobs share; each method's config adds its data fields."""
    from training.pipeline.quantization import quantization_problem

    config = experiment_config(job)
    # Start checked this where the experiment was started; the worker that trains may be another machine.
    problem = quantization_problem(config.policy_quantization)
    if problem:
        raise JobRefused(f"policy_quantization {config.policy_quantization!r} cannot run on this worker: {problem}")
    return dict(
        output_dir=job.work_dir() / "policy", base_model=base_model(job, config), model_cache_dir=settings.MODEL_CACHE_DIR,
        base_adapter=_sft_adapter(job) if job.kind != "sft" else None,
        system_prompt=config.system_prompt, quantization=config.policy_quantization,
        lora_rank=config.lora_rank, lora_alpha=2 * config.lora_rank,
        lora_init_seed=config.seed, beta=config.beta, learning_rate=config.learning_rate, max_steps=config.policy_max_steps,
        batch_size=config.policy_batch_size, save_steps=config.policy_save_steps, seed=config.seed,
        # 512, not 256: with the system prompt the bank's longest scenario is 390 prompt tokens, and at 256 TRL cut
        # the completion of 42 of its 172 scenarios (training SFT on nothing for the longest, dropping DPO pairs).
        max_length=512,
    )


def _policy_outcome(job: Job, run, result, *, method: str, extra_lineage: dict) -> StageOutcome:
    stop_if_asked(run)
    if not result.completed:
        raise JobCancelled()
    adapter = Path(result.adapter_dir or result.model_dir)
    if result.resumed_from:
        run.log(f"resumed from {result.resumed_from}")
    run.log(f"adapter saved to {adapter}")
    config = experiment_config(job)
    version = model_version_register(job, kind=ModelVersion.Kind.ADAPTER, path=adapter, model_ref=config.base_model,
                                      provenance={"method": method, **job.params})
    lineage = {"dataset": upstream(job, "preferences").result.get("version"), "base_model": config.base_model,
               "parent_checkpoint": _sft_adapter(job) if job.kind != "sft" else None, **extra_lineage}
    if config.policy_quantization is not None:
        from training.pipeline.quantization import quantization_record

        lineage["quantization"] = quantization_record(config.policy_quantization)
    return StageOutcome(
        result={"adapter_dir": str(adapter), "metrics": result.metrics, "model_version": version.pk,
                "resumed_from": str(result.resumed_from) if result.resumed_from else None},
        lineage=lineage,
        artifacts=[{"kind": Artifact.Kind.ADAPTER, "name": job.key.replace(":", "-"), "path": adapter,
                    "metrics": result.metrics, "model_version": version}],
    )


@dataclass


class LaunchedPolicyResult:
    """What a policy run through `accelerate launch` left in its output folder."""

    adapter_dir: str | None
    model_dir: str | None
    metrics: dict
    completed: bool
    resumed_from: str | None = None


def _train_policy(job: Job, run, stage: str, config, train):
    """Train in this process, or through `accelerate launch` on a multi-GPU worker (the child process runs the
    pipeline's command line on the config written as TOML; its output goes to the job log)."""
    run.log(f"training {stage} on {config.base_model} for {config.max_steps} steps (batch {config.batch_size}), "
            f"checkpoints every {config.save_steps} steps in {config.output_dir}")
    if not settings.ATTUNE_ACCELERATE_NUM_PROCESSES:
        return train(config, RunControl.of(run))
    import json

    from training.launch import build_launch_command, run_launch, write_stage_toml

    config_path = write_stage_toml(job.work_dir() / f"{stage}.toml", config.to_dict())
    command = build_launch_command(stage=stage, stage_config=config_path, accelerate_config=settings.ATTUNE_ACCELERATE_CONFIG,
                                   num_processes=settings.ATTUNE_ACCELERATE_NUM_PROCESSES)
    code = run_launch(command, run=run, cwd=settings.BASE_DIR)
    stop_if_asked(run)
    if code != 0:
        raise RuntimeError(f"`accelerate launch` exited with status {code}; see the job log")
    output = Path(config.output_dir)
    record = json.loads((output / "policy.json").read_text())
    return LaunchedPolicyResult(adapter_dir=record["adapter_dir"], model_dir=record["model_dir"],
                                metrics=json.loads((output / "metrics.json").read_text()), completed=record["completed"])


def _preferences_dir(job: Job) -> str:
    return upstream(job, "preferences").result["dataset_dir"]


def run_sft(job: Job, run) -> StageOutcome:
    from training.pipeline.policies import SFTConfig, train_sft

    config = SFTConfig(**_policy_recipe(job), dataset_dir=_preferences_dir(job), criterion=job.params["criterion"])
    result = _train_policy(job, run, "sft", config, train_sft)
    return _policy_outcome(job, run, result, method="sft", extra_lineage={})


def run_dpo(job: Job, run) -> StageOutcome:
    from training.pipeline.policies import DPOConfig, train_dpo

    config = DPOConfig(**_policy_recipe(job), dataset_dir=_preferences_dir(job), criterion=job.params["criterion"])
    result = _train_policy(job, run, "dpo", config, train_dpo)
    return _policy_outcome(job, run, result, method="dpo", extra_lineage={})


def run_joint_dpo(job: Job, run) -> StageOutcome:
    from training.pipeline.policies import JointDPOConfig, train_joint_dpo

    config = JointDPOConfig(**_policy_recipe(job), dataset_dir=_preferences_dir(job), weights=job.params["weights"])
    result = _train_policy(job, run, "joint-dpo", config, train_joint_dpo)
    return _policy_outcome(job, run, result, method="joint_dpo", extra_lineage={})


def run_modpo(job: Job, run) -> StageOutcome:
    from training.pipeline.policies import MODPOConfig, SafetyConstraint, train_modpo

    margins_job = job.depends_on.get(kind="margins")
    safety = None
    floor = job.params.get("safety_floor")
    if floor is not None and "safety" in job.params["weights"] and job.params["primary"] != "safety":
        safety = SafetyConstraint(floor=floor, every_n_steps=max(1, experiment_config(job).policy_save_steps))
    config = MODPOConfig(**_policy_recipe(job), margin_dataset_dir=margins_job.result["margin_dataset_dir"],
                         primary=job.params["primary"], weights=job.params["weights"], safety=safety)
    result = _train_policy(job, run, "modpo", config, train_modpo)
    return _policy_outcome(job, run, result, method="modpo", extra_lineage={"reward_models": margins_job.lineage.get("reward_models")})


def run_merge(job: Job, run) -> StageOutcome:
    from training.pipeline.policies import MergeConfig, merge_adapters

    config = experiment_config(job)
    weights = job.params["weights"]
    adapters = {c: upstream(job, f"dpo:{c}").result["adapter_dir"] for c in weights}
    method = job.params.get("method", "cat")
    sft_adapter = _sft_adapter(job.depends_on.filter(kind="dpo").first())
    path = merge_adapters(MergeConfig(
        base_model=base_model(job, config), adapters=adapters, weights=weights, output_dir=job.work_dir() / "merged",
        method=method, svd_rank=config.lora_rank * len(adapters) if method == "svd" else None,
        base_adapter=sft_adapter, model_cache_dir=settings.MODEL_CACHE_DIR,
    ), RunControl.of(run))
    version = model_version_register(job, kind=ModelVersion.Kind.MERGED, path=Path(path), model_ref=config.base_model,
                                      provenance={"method": "merge", **job.params})
    return StageOutcome(
        result={"adapter_dir": str(path), "model_version": version.pk},
        lineage={"adapters": adapters, "weights": weights, "base_model": config.base_model, "parent_checkpoint": sft_adapter,
                 **({"quantization": config.policy_quantization} if config.policy_quantization else {})},
        artifacts=[{"kind": Artifact.Kind.MERGED, "name": job.key.replace(":", "-"), "path": Path(path), "model_version": version}],
    )
