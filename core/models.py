"""The shared vocabulary every app speaks: criteria, scenarios, model versions,
responses; plus the append-only audit log and the participant helplines."""
import hashlib
import re
import secrets

from django.conf import settings
from django.db import models


class Criterion(models.Model):
    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=100)
    question = models.TextField()
    better_when = models.TextField()
    worse_when = models.TextField()
    source_reference = models.CharField(max_length=300, blank=True)
    is_safety = models.BooleanField(default=False)
    evaluation_only = models.BooleanField(default=False, help_text="Used to judge outputs, never to train.")
    is_therapeutic = models.BooleanField(default=False)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "key"]
        verbose_name_plural = "criteria"

    def __str__(self):
        return self.name


class CriteriaSet(models.Model):
    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    criteria = models.ManyToManyField(Criterion, through="CriteriaSetMember", related_name="criteria_sets")
    safety_criterion = models.ForeignKey(
        Criterion, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The member treated as the safety objective.",
    )

    def __str__(self):
        return self.name

    def ordered_criteria(self):
        return [m.criterion for m in self.members.select_related("criterion").order_by("order")]


class CriteriaSetMember(models.Model):
    criteria_set = models.ForeignKey(CriteriaSet, on_delete=models.CASCADE, related_name="members")
    criterion = models.ForeignKey(Criterion, on_delete=models.PROTECT)
    order = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["order"]
        constraints = [
            models.UniqueConstraint(fields=["criteria_set", "criterion"], name="criteria_set_member_unique"),
            models.UniqueConstraint(fields=["criteria_set", "order"], name="criteria_set_order_unique"),
        ]


class Scenario(models.Model):
    class Split(models.TextChoices):
        TRAIN = "train", "Train"
        TEST = "test", "Test"
        UNASSIGNED = "unassigned", "Unassigned"

    class RiskLevel(models.TextChoices):
        NONE = "none", "None"
        LOW = "low", "Low"
        MODERATE = "moderate", "Moderate"
        HIGH = "high", "High"

    text = models.TextField()
    text_sha256 = models.CharField(max_length=64, unique=True, editable=False)
    source = models.CharField(max_length=100, help_text="Where the text came from, e.g. attune-bank or a file name.")
    external_id = models.CharField(max_length=200, blank=True)
    split = models.CharField(max_length=16, choices=Split.choices, default=Split.UNASSIGNED)
    topics = models.JSONField(default=list, blank=True)
    risk_level = models.CharField(max_length=16, choices=RiskLevel.choices, default=RiskLevel.NONE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"], condition=~models.Q(external_id=""), name="scenario_source_external_id_unique"
            ),
        ]

    def __str__(self):
        # What a researcher picks a scenario by (the admin's search shows this): id, topics, risk, the opening words.
        topics = ", ".join(self.topics) if isinstance(self.topics, list) and self.topics else "no topic"
        opening = " ".join(self.text.split())
        opening = opening if len(opening) <= 70 else opening[:69].rstrip() + "…"
        return f"{self.external_id or self.pk} ({topics}; risk: {self.risk_level}): {opening}"

    @staticmethod
    def hash_text(text: str) -> str:
        # Whitespace-normalised so re-imports of the same post are caught.
        return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()

    def save(self, *args, **kwargs):
        self.text_sha256 = self.hash_text(self.text)
        super().save(*args, **kwargs)


class ModelVersion(models.Model):
    class Kind(models.TextChoices):
        BASE = "base", "Base model"
        CHECKPOINT = "checkpoint", "Trained checkpoint"
        ADAPTER = "adapter", "LoRA adapter"
        MERGED = "merged", "Merged adapters"
        REWARD = "reward", "Reward model"
        FIXED = "fixed", "Fixed response set"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    model_ref = models.CharField(max_length=500, help_text="Packaged model name or a local directory.")
    path = models.CharField(max_length=1000, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    provenance = models.JSONField(default=dict, blank=True, help_text="Method, dataset version, config, seed, code version.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name


class Response(models.Model):
    scenario = models.ForeignKey(Scenario, on_delete=models.CASCADE, related_name="responses")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="responses")
    text = models.TextField()
    generation_settings = models.JSONField(default=dict, blank=True)
    seed = models.BigIntegerField(null=True, blank=True)
    sample_index = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["scenario_id", "model_version_id", "sample_index"]
        constraints = [
            models.UniqueConstraint(fields=["scenario", "model_version", "sample_index"], name="response_unique_sample"),
        ]

    def __str__(self):
        return f"response {self.pk} to scenario {self.scenario_id}"


def new_subject_key() -> str:
    return secrets.token_hex(16)


class AuditSubject(models.Model):
    """A random key that audit rows about one person carry instead of any id of theirs.

    The person's own row points here; deleting this row with them (on withdrawal)
    leaves the audit rows in place, append-only, but with a key that no longer
    leads anywhere."""

    key = models.CharField(max_length=32, unique=True, default=new_subject_key, editable=False)

    def __str__(self):
        return f"audit subject {self.key[:8]}…"


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("the audit log is append-only")

    def delete(self):
        raise PermissionError("the audit log is append-only")


class AuditEvent(models.Model):
    """One privileged action. Written by services in the same transaction as the
    action, never updated or deleted (a PostgreSQL trigger enforces it too)."""

    # No database constraint: removing a user must not rewrite the log; actor_label keeps the name.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    actor_label = models.CharField(max_length=200, help_text="Who acted, kept if the user is later removed.")
    action = models.CharField(max_length=100, db_index=True)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=100, blank=True)
    subject_key = models.CharField(
        max_length=32, blank=True, db_index=True,
        help_text="The AuditSubject key of the person the action is about; once that row is deleted, it leads nowhere.",
    )
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_label} {self.action}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise PermissionError("the audit log is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("the audit log is append-only")


class Helpline(models.Model):
    region = models.CharField(max_length=100, help_text="Shown as a heading, e.g. 'United Kingdom'.")
    name = models.CharField(max_length=200)
    phone = models.CharField(max_length=50, blank=True)
    text_contact = models.CharField(max_length=200, blank=True, help_text="e.g. 'Text SHOUT to 85258'.")
    url = models.URLField(blank=True)
    hours = models.CharField(max_length=100, blank=True)
    description = models.CharField(max_length=300, blank=True)
    order = models.PositiveSmallIntegerField(default=0)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["region", "order", "name"]

    def __str__(self):
        return f"{self.region}: {self.name}"

    @property
    def phone_numbers(self) -> list[dict]:
        """Each number in ``phone`` ("112 / 911 / 999", "116 123") as {"display", "href"}:
        one dialable tel: link per number, the display text kept as written."""
        numbers = []
        for part in re.split(r"\s*(?:/|,|;|\bor\b)\s*", self.phone or ""):
            display = part.strip()
            digits = re.sub(r"\D", "", display)
            if digits:
                numbers.append({"display": display, "href": "tel:" + ("+" if display.startswith("+") else "") + digits})
        return numbers
