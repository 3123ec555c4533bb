"""Experiments, the jobs that run their stages, and the artifacts they leave.

PostgreSQL owns job state: the broker only carries wake-ups. A task claims its
job row with a conditional UPDATE (lease + heartbeat) and exits quietly when it
cannot, so duplicate deliveries do no duplicate work."""
from django.conf import settings
from django.db import models

from training import registry


class Experiment(models.Model):
    name = models.CharField(max_length=200, unique=True)
    preset = models.CharField(max_length=32, choices=registry.preset_choices())
    config = models.JSONField(help_text="The validated plan configuration.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    output_dir = models.CharField(max_length=1000)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name


class Job(models.Model):
    class State(models.TextChoices):
        WAITING = "waiting", "Waiting for earlier stages"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Queue(models.TextChoices):
        DEFAULT = "default", "CPU (default)"
        GPU = "gpu", "GPU"

    FINISHED = (State.SUCCEEDED, State.FAILED, State.CANCELLED)

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="jobs")
    key = models.CharField(max_length=100, help_text="Stage name, unique within the experiment.")
    kind = models.CharField(max_length=50)
    queue = models.CharField(max_length=16, choices=Queue.choices, default=Queue.DEFAULT)
    params = models.JSONField(default=dict, blank=True)
    depends_on = models.ManyToManyField("self", symmetrical=False, blank=True, related_name="dependents")
    position = models.PositiveSmallIntegerField(default=0)

    state = models.CharField(max_length=16, choices=State.choices, default=State.WAITING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=3, help_text="Deliveries allowed before a crashing job is failed.")
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    # When the broker last accepted this job's wake-up message. Older than enqueued_at (or unset): the
    # publish after commit never happened (the process died in between), and recovery republishes it.
    published_at = models.DateTimeField(null=True, blank=True, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    progress_step = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    current_loss = models.FloatField(null=True, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)
    log_tail = models.TextField(blank=True)
    error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    lineage = models.JSONField(default=dict, blank=True, help_text="Dataset version, reward models and parent checkpoint used.")
    # Set when a participant in a survey dataset version this job (or one upstream of it) read withdrew
    # (training.withdrawal); kept apart from ``lineage``, which the stage writes when it finishes.
    affected_by_withdrawal_at = models.DateTimeField(null=True, blank=True, editable=False)
    withdrawn_dataset_versions = models.JSONField(default=list, blank=True, editable=False,
                                                  help_text="Survey dataset versions behind this job that a withdrawal affected.")

    class Meta:
        ordering = ["experiment_id", "position"]
        constraints = [models.UniqueConstraint(fields=["experiment", "key"], name="job_unique_key_per_experiment")]

    def __str__(self):
        return f"{self.experiment.name} / {self.key}"

    @property
    def is_finished(self):
        return self.state in self.FINISHED

    @property
    def withdrawal_note(self) -> str:
        if self.affected_by_withdrawal_at is None:
            return ""
        versions = ", ".join(f"#{pk}" for pk in self.withdrawn_dataset_versions)
        return (f"Built from data of a participant who withdrew (survey dataset version {versions}, "
                f"{self.affected_by_withdrawal_at:%Y-%m-%d %H:%M} UTC): do not use or publish.")

    def work_dir(self):
        from pathlib import Path

        return Path(self.experiment.output_dir) / self.key.replace(":", "-")


class JobAttempt(models.Model):
    """One delivery of a job to a worker: when it ran, where, and how it ended.
    The job row's started_at and error describe only the current attempt."""

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        LOST = "lost", "Lost (worker died or stopped answering)"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="attempt_records")
    number = models.PositiveSmallIntegerField()
    worker = models.CharField(max_length=200)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["job_id", "number"]
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="job_attempt_unique_number")]

    def __str__(self):
        return f"attempt {self.number} of {self.job}"


class Artifact(models.Model):
    class Kind(models.TextChoices):
        SCENARIOS = "scenarios", "Scenarios"
        PERSONAS = "personas", "Personas"
        CANDIDATES = "candidates", "Candidate responses"
        LABELS = "labels", "Judge labels"
        DATASET = "dataset", "Preference dataset"
        REWARD_MODEL = "reward_model", "Reward model"
        MARGINS = "margins", "MODPO margins"
        ADAPTER = "adapter", "Policy adapter"
        MERGED = "merged", "Merged adapter"
        EVALUATION = "evaluation", "Evaluation"
        PLOT = "plot", "Plot"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="artifacts")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    name = models.CharField(max_length=200)
    path = models.CharField(max_length=1000)
    sha256 = models.CharField(max_length=64)
    metrics = models.JSONField(default=dict, blank=True)
    model_version = models.ForeignKey("core.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="artifacts")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job_id", "id"]
        constraints = [models.UniqueConstraint(fields=["job", "name"], name="artifact_unique_name_per_job")]

    def __str__(self):
        return f"{self.kind}: {self.name}"


class ExperimentRatingStudy(models.Model):
    """A clinician rating study sent from an experiment: its results flow into the report."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="rating_links")
    rating_study = models.OneToOneField("annotation.RatingStudy", on_delete=models.CASCADE, related_name="experiment_link")
    model_key = models.CharField(max_length=100, help_text="The experiment's model compared with its base model.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self):
        return f"{self.experiment} -> {self.rating_study}"
