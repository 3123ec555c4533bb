"""The stage runners, one module by area (inputs, data, rewards, policies,
evaluation). Each loads what its job needs, calls one pipeline function with
paths, and returns what to record. A job's kind names its runner in
`training.registry.STAGE_KINDS`. Files go under the job's own folder
(Job.work_dir), so a rerun of the same job resumes where it stopped."""
from __future__ import annotations

from training import registry
from training.jobs.errors import JobRefused
from training.models import Job

from .common import StageOutcome, check_dataset_versions

__all__ = ["StageOutcome", "run_stage"]


def run_stage(job: Job, run) -> StageOutcome:
    kind = registry.STAGE_KINDS.get(job.kind)
    if kind is None:
        raise JobRefused(f"unknown stage kind {job.kind!r}")
    check_dataset_versions(job)
    job.work_dir().mkdir(parents=True, exist_ok=True)
    return kind.load_runner()(job, run)
