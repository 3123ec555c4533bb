"""What a participant's withdrawal does to training: every job that read an
affected survey dataset version, and every job downstream of it, is marked
(``Job.affected_by_withdrawal_at`` and ``withdrawn_dataset_versions``), and so
is every model version those jobs registered (``provenance["affected_by_withdrawal"]``).
Derived files in those jobs' work directories that name the participant
(labels keyed by persona id, a dataset card listing persona ids) are deleted,
and their identifiers are taken out of the jobs' log tail, error and result;
model weights stay, marked. Connected to ``survey.signals.dataset_versions_withdrawn``; runs in
the withdrawal's transaction."""
from __future__ import annotations

from pathlib import Path

from core.models import ModelVersion

from .models import Artifact, Job

# Files that can name a participant (text, and dataset tables; weights and checkpoints cannot).
TEXT_SUFFIXES = {".jsonl", ".json", ".csv", ".txt", ".toml", ".log", ".md", ".yaml", ".yml", ".arrow", ".parquet"}
MAX_SCAN_BYTES = 256 * 1024 * 1024


def jobs_affected(version_ids) -> list[Job]:
    """Jobs whose lineage names one of the dataset versions, and all jobs downstream of them."""
    wanted = set(version_ids)
    found = {job.pk: job for job in Job.objects.filter(lineage__has_key="dataset_versions")
             if wanted & set((job.lineage or {}).get("dataset_versions") or [])}
    frontier = list(found)
    while frontier:
        downstream = list(Job.objects.filter(depends_on__in=frontier).exclude(pk__in=list(found)).distinct())
        found.update({job.pk: job for job in downstream})
        frontier = [job.pk for job in downstream]
    return list(found.values())


def _scrub(job: Job, texts: list[str]) -> int:
    """Delete the job's text files that contain any of ``texts``."""
    needles = [t.encode("utf-8") for t in texts if t]
    work = Path(job.work_dir())
    if not needles or not work.is_dir():
        return 0
    deleted = 0
    for path in work.rglob("*"):
        if not path.is_file() or path.suffix.lower() not in TEXT_SUFFIXES or path.stat().st_size > MAX_SCAN_BYTES:
            continue
        content = path.read_bytes()
        if any(needle in content for needle in needles):
            path.unlink(missing_ok=True)
            deleted += 1
    return deleted


def _scrubbed_fields(job: Job, texts: list[str]) -> dict:
    """The job's log tail, error and result with the participant's identifiers taken out."""
    import json

    def clean(text: str) -> str:
        for needle in sorted((t for t in texts if t), key=len, reverse=True):
            text = text.replace(needle, "<withdrawn participant>")
        return text

    result = json.loads(clean(json.dumps(job.result))) if job.result else job.result
    return {"log_tail": clean(job.log_tail or ""), "error": clean(job.error or ""), "result": result}


def mark_withdrawn(*, version_ids, at, texts=()) -> list[int]:
    """Mark what was built from the versions; returns the ids of the jobs marked."""
    if not version_ids:
        return []
    jobs = jobs_affected(version_ids)
    for job in jobs:
        versions = sorted(set(job.withdrawn_dataset_versions or []) | set(version_ids))
        Job.objects.filter(pk=job.pk).update(withdrawn_dataset_versions=versions,
                                             affected_by_withdrawal_at=job.affected_by_withdrawal_at or at,
                                             **_scrubbed_fields(job, list(texts)))
        _scrub(job, list(texts))
    model_ids = {job.result.get("model_version") for job in jobs if isinstance(job.result, dict)} - {None}
    model_ids |= set(Artifact.objects.filter(job__in=jobs, model_version__isnull=False).values_list("model_version_id", flat=True))
    for model in ModelVersion.objects.filter(pk__in=model_ids):
        mark = model.provenance.get("affected_by_withdrawal") or {}
        model.provenance = {**model.provenance, "affected_by_withdrawal": {
            "dataset_versions": sorted(set(mark.get("dataset_versions", [])) | set(version_ids)),
            "at": mark.get("at") or at.isoformat(),
        }}
        model.save(update_fields=["provenance"])
    return [job.pk for job in jobs]


def on_dataset_versions_withdrawn(sender, *, version_ids, at, texts=(), **kwargs):
    mark_withdrawn(version_ids=version_ids, at=at, texts=texts)


def withdrawal_mark_for(job: Job) -> dict | None:
    """The mark a model registered by this job carries (a job running when the withdrawal came)."""
    job = Job.objects.filter(pk=job.pk).values("affected_by_withdrawal_at", "withdrawn_dataset_versions").first()
    if not job or job["affected_by_withdrawal_at"] is None:
        return None
    return {"dataset_versions": job["withdrawn_dataset_versions"], "at": job["affected_by_withdrawal_at"].isoformat()}
