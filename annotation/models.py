"""Blinded clinician A/B rating studies.

A study compares two sources of responses (``source_a`` and ``source_b``, both
``core.ModelVersion``) on a set of scenarios, over the dimensions of a criteria
set plus "overall". Each scenario becomes one ``RatingItem`` (the pair of
responses); each item is assigned to ``overlap`` clinicians (``Assignment``),
each with its own opaque token and its own stored left/right order. A
clinician's answer to an assignment is one ``Judgment`` (unique per clinician
and item) with one ``JudgmentChoice`` per dimension; every submission, change
and undo is kept in ``JudgmentRevision``.

Choices are stored in terms of the SOURCE ("a" = source A better, "b" =
source B better, "tie"), never in terms of screen position; what the clinician
saw is recorded beside it (``left_is_a``).
"""
import secrets

from django.conf import settings
from django.db import models

TOKEN_BYTES = 18


def new_token() -> str:
    """An opaque, unguessable identifier for URLs (24 URL-safe characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_seed() -> int:
    return secrets.randbits(62)


class Choice(models.TextChoices):
    A = "a", "Source A better"
    B = "b", "Source B better"
    TIE = "tie", "Tie"


class RatingStudy(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    name = models.CharField(max_length=200, unique=True, help_text="Researchers only; clinicians never see it.")
    description = models.TextField(blank=True)
    public_title = models.CharField(
        max_length=200, blank=True, help_text="What clinicians see. Never name or hint at the models."
    )
    token = models.CharField(max_length=40, unique=True, default=new_token, editable=False)
    source_a = models.ForeignKey("core.ModelVersion", on_delete=models.PROTECT, related_name="+")
    source_b = models.ForeignKey("core.ModelVersion", on_delete=models.PROTECT, related_name="+")
    criteria_set = models.ForeignKey("core.CriteriaSet", on_delete=models.PROTECT, related_name="+")
    overlap = models.PositiveSmallIntegerField(help_text="How many clinicians rate each item.")
    overlap_all = models.BooleanField(default=False, help_text="Every clinician rates every item.")
    sample_index = models.PositiveSmallIntegerField(default=0, help_text="Which sample of each source's responses is shown.")
    seed = models.BigIntegerField(
        default=new_seed, help_text="Secret until the study closes: seeds the sample, the labels, the assignment and every left/right order."
    )
    normalisation = models.CharField(
        max_length=40, default="display-v1", help_text="How both sources' texts are normalised for display (annotation.screening)."
    )
    screened_at = models.DateTimeField(null=True, blank=True, help_text="When the self-identification screen ran.")
    state = models.CharField(max_length=16, choices=State.choices, default=State.DRAFT)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "rating studies"
        constraints = [
            models.CheckConstraint(condition=~models.Q(source_a=models.F("source_b")), name="rating_study_two_sources"),
            models.CheckConstraint(condition=models.Q(overlap__gte=1), name="rating_study_overlap_positive"),
        ]

    def __str__(self):
        return self.name

    @property
    def is_open(self) -> bool:
        return self.state == self.State.OPEN

    @property
    def clinician_title(self) -> str:
        return self.public_title or "Response comparison"


class StudyDimension(models.Model):
    """The dimensions a study asks about, frozen when it is created (criteria
    sets can change later; a study's questions must not)."""

    study = models.ForeignKey(RatingStudy, on_delete=models.CASCADE, related_name="dimensions")
    criterion = models.ForeignKey("core.Criterion", on_delete=models.PROTECT, related_name="+")
    order = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["study", "order"]
        constraints = [
            models.UniqueConstraint(fields=["study", "criterion"], name="study_dimension_unique"),
            models.UniqueConstraint(fields=["study", "order"], name="study_dimension_order_unique"),
        ]

    def __str__(self):
        return self.criterion.key


class StudyClinician(models.Model):
    study = models.ForeignKey(RatingStudy, on_delete=models.CASCADE, related_name="memberships")
    clinician = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="rating_memberships")
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "clinician__username"]
        constraints = [models.UniqueConstraint(fields=["study", "clinician"], name="study_clinician_unique")]


class RatingItem(models.Model):
    """One scenario with one response from each source."""

    study = models.ForeignKey(RatingStudy, on_delete=models.CASCADE, related_name="items")
    scenario = models.ForeignKey("core.Scenario", on_delete=models.PROTECT, related_name="+")
    response_a = models.ForeignKey("core.Response", on_delete=models.PROTECT, related_name="+")
    response_b = models.ForeignKey("core.Response", on_delete=models.PROTECT, related_name="+")
    class Screen(models.TextChoices):
        CLEAR = "clear", "No self-identification hit"
        PENDING = "pending", "Hits not yet reviewed"
        KEEP = "keep", "Reviewed: kept as is"
        EXCLUDE = "exclude", "Reviewed: excluded from the study"

    token = models.CharField(max_length=40, unique=True, default=new_token, editable=False)
    order = models.PositiveIntegerField()
    screen = models.CharField(max_length=16, choices=Screen.choices, default=Screen.CLEAR)
    screen_reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                           related_name="+")
    screen_reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["study", "order"]
        constraints = [
            models.UniqueConstraint(fields=["study", "scenario"], name="rating_item_scenario_unique"),
            models.UniqueConstraint(fields=["study", "order"], name="rating_item_order_unique"),
        ]

    def __str__(self):
        # Researchers' admin titles: where it is, never which model wrote what (nor the token).
        return f"Study {self.study_id}, item {self.order + 1} (scenario {self.scenario_ref})"

    @property
    def scenario_ref(self) -> str:
        """How exports name the scenario, as the training pipeline does: s<pk>."""
        return f"s{self.scenario_id}"


class ScreeningHit(models.Model):
    """One self-identification hit in one response of a study (researchers only:
    it names the source)."""

    class Kind(models.TextChoices):
        SOURCE_NAME = "source_name", "Name or reference of a source or its base model"
        MODEL_FAMILY = "model_family", "Model family"
        VENDOR = "vendor", "Model vendor"
        SELF_DESCRIPTION = "self_description", "Self-description"
        SPECIAL_TOKEN = "special_token", "Special token"
        ROLE_TAG = "role_tag", "Role tag"

    study = models.ForeignKey(RatingStudy, on_delete=models.CASCADE, related_name="screening_hits")
    item = models.ForeignKey(RatingItem, on_delete=models.CASCADE, related_name="screening_hits")
    source = models.CharField(max_length=1, choices=[("a", "Source A"), ("b", "Source B")])
    kind = models.CharField(max_length=32, choices=Kind.choices)
    term = models.CharField(max_length=300, help_text="The list entry or source reference that matched.")
    matched = models.CharField(max_length=300)
    start = models.PositiveIntegerField(help_text="Offset of the match in the raw response text.")
    before = models.CharField(max_length=100, blank=True)
    after = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["study", "item__order", "source", "start", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["item", "source", "kind", "start", "matched"], name="screening_hit_unique"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()}: {self.matched!r}"


class Assignment(models.Model):
    """One item in one clinician's queue. The token is what the clinician's URLs
    carry; it says nothing about the item, the source or the order."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"

    study = models.ForeignKey(RatingStudy, on_delete=models.CASCADE, related_name="assignments")
    item = models.ForeignKey(RatingItem, on_delete=models.CASCADE, related_name="assignments")
    clinician = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="rating_assignments")
    token = models.CharField(max_length=40, unique=True, default=new_token, editable=False)
    position = models.PositiveIntegerField(help_text="1-based place in this clinician's queue.")
    position_seed = models.BigIntegerField(help_text="Seed that decided the left/right order.")
    left_is_a = models.BooleanField(help_text="Source A's response is shown on the left (as 'Response A').")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    draft = models.JSONField(default=dict, blank=True, help_text="Autosaved answers in screen terms (left/right).")
    draft_saved_at = models.DateTimeField(null=True, blank=True)
    first_shown_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    time_on_task_ms = models.PositiveBigIntegerField(default=0, help_text="Time the page was visible, over all visits.")

    class Meta:
        ordering = ["study", "clinician", "position"]
        constraints = [
            models.UniqueConstraint(fields=["item", "clinician"], name="assignment_item_clinician_unique"),
            models.UniqueConstraint(fields=["study", "clinician", "position"], name="assignment_position_unique"),
        ]
        indexes = [models.Index(fields=["study", "clinician", "status", "position"])]

    def __str__(self):
        return f"{self.clinician.get_username()}'s item {self.position} in study {self.study_id}"

    def source_of(self, side: str) -> str:
        """'left'/'right' -> 'a'/'b'."""
        return ("a" if self.left_is_a else "b") if side == "left" else ("b" if self.left_is_a else "a")

    def side_of(self, source: str) -> str:
        """'a'/'b' -> 'left'/'right'."""
        return ("left" if self.left_is_a else "right") if source == "a" else ("right" if self.left_is_a else "left")


class Judgment(models.Model):
    """A clinician's current answer for one item: saved once, changed in place,
    every version kept in JudgmentRevision."""

    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="judgment")
    study = models.ForeignKey(RatingStudy, on_delete=models.CASCADE, related_name="judgments")
    item = models.ForeignKey(RatingItem, on_delete=models.CASCADE, related_name="judgments")
    clinician = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="rating_judgments")
    left_is_a = models.BooleanField(help_text="The order the clinician saw (copied from the assignment).")
    unsafe_a = models.BooleanField(default=False, help_text="Source A's response was flagged unsafe.")
    unsafe_b = models.BooleanField(default=False, help_text="Source B's response was flagged unsafe.")
    comment = models.TextField(blank=True)
    time_on_task_ms = models.PositiveBigIntegerField(default=0)
    revision = models.PositiveIntegerField(default=1)
    submitted_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["study", "item", "clinician"]
        constraints = [models.UniqueConstraint(fields=["item", "clinician"], name="judgment_item_clinician_unique")]

    def __str__(self):
        return f"judgment on {self.item} by {self.clinician}"


class JudgmentChoice(models.Model):
    judgment = models.ForeignKey(Judgment, on_delete=models.CASCADE, related_name="choices")
    criterion = models.ForeignKey("core.Criterion", on_delete=models.PROTECT, related_name="+")
    choice = models.CharField(max_length=8, choices=Choice.choices)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["judgment", "criterion"], name="judgment_choice_unique")]


class JudgmentRevision(models.Model):
    """History: one row per submission, change or undo of an assignment's answer."""

    class Event(models.TextChoices):
        SUBMITTED = "submitted", "Submitted"
        CHANGED = "changed", "Changed"
        UNDONE = "undone", "Undone"

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    event = models.CharField(max_length=16, choices=Event.choices)
    answers = models.JSONField(help_text="{choices: {criterion: a|b|tie}, unsafe_a, unsafe_b, comment} in source terms.")
    left_is_a = models.BooleanField()
    time_on_task_ms = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["assignment", "number"]
        constraints = [models.UniqueConstraint(fields=["assignment", "number"], name="judgment_revision_unique")]
        verbose_name = "judgment revision"

    def __str__(self):
        return f"{self.assignment}: revision {self.number} ({self.get_event_display().lower()})"


class JudgeDecision(models.Model):
    """An automatic judge's decision on a study item, in source terms."""

    study = models.ForeignKey(RatingStudy, on_delete=models.CASCADE, related_name="judge_decisions")
    judge_name = models.CharField(max_length=200)
    item = models.ForeignKey(RatingItem, on_delete=models.CASCADE, related_name="judge_decisions")
    criterion = models.ForeignKey("core.Criterion", on_delete=models.PROTECT, related_name="+")
    choice = models.CharField(max_length=8, choices=Choice.choices)
    synthetic = models.BooleanField(default=False, help_text="Made by a synthetic (rubric) judge, for validation only.")
    imported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "judge_name", "item", "criterion"]
        constraints = [
            models.UniqueConstraint(fields=["study", "judge_name", "item", "criterion"], name="judge_decision_unique"),
        ]
        verbose_name = "automatic judge decision"

    def __str__(self):
        return f"{self.judge_name} on item {self.item_id}, {self.criterion.key}: {self.get_choice_display()}"
