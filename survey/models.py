"""The lived-experience survey: studies, participants and their answers,
personas, survey weight vectors and dataset versions.

Participants have no account. Each one is identified by an opaque random
``token`` that appears only in their own URLs (the resume link); exports use
the separate ``pseudonym``. No names or e-mail addresses are stored anywhere
in these tables; Prolific ids are stored only as keyed hashes (survey.prolific),
to resume a Prolific participant; on withdrawal or screen-out the hash moves to
ProlificExclusion (so the id cannot start again) and nothing else is kept.

Every answer table has a unique constraint on (participant, question), and
writes go through upserts (survey.services), so refresh, back button, double
submit and two tabs update one row instead of adding another.
"""
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

RESERVED_SLUGS = {"r", "manage", "withdraw", "api"}
# Codes a participant may have to type: no 0/O, 1/I/L.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def new_seed() -> int:
    return secrets.randbits(62)


def new_pseudonym() -> str:
    return "P" + secrets.token_hex(6)


def new_withdrawal_code() -> str:
    body = "".join(secrets.choice(CODE_ALPHABET) for _ in range(10))
    return f"{body[:5]}-{body[5:]}"


class Study(models.Model):
    slug = models.SlugField(max_length=64, unique=True, help_text="The study link is /study/<slug>/.")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, help_text="Shown on the study's first page.")
    is_active = models.BooleanField(default=True, help_text="Accepting new participants.")
    model_version = models.ForeignKey(
        "core.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Whose candidate responses participants rank (core.Response rows).",
    )
    scenarios_per_participant = models.PositiveSmallIntegerField(default=3)
    responses_per_scenario = models.PositiveSmallIntegerField(default=4)
    content_warning = models.TextField(
        default="The next message describes someone going through a hard time. It may mention distressing "
        "topics. You can skip any scenario, and you can pause or stop at any time.",
    )
    completion_code = models.CharField(max_length=64, blank=True, help_text="Prolific completion code, shown at the end.")
    screenout_code = models.CharField(max_length=64, blank=True, help_text="Prolific screen-out code for ineligible people.")
    persona_total = models.PositiveIntegerField(default=150, help_text="How many personas to select.")
    persona_train = models.PositiveIntegerField(default=100)
    persona_test = models.PositiveIntegerField(default=50)
    participant_counter = models.PositiveIntegerField(default=0, editable=False)
    # Withdrawn and screened-out participants' rows are deleted; the funnel counts them here.
    withdrawn_count = models.PositiveIntegerField(default=0, editable=False)
    screened_out_count = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "studies"
        constraints = [
            models.CheckConstraint(condition=models.Q(scenarios_per_participant__lte=20), name="study_scenarios_at_most_20"),
            models.CheckConstraint(condition=models.Q(responses_per_scenario__gte=2, responses_per_scenario__lte=8),
                                   name="study_responses_2_to_8"),
        ]

    def __str__(self):
        return self.title

    def clean(self):
        if self.slug in RESERVED_SLUGS:
            raise ValidationError({"slug": f"'{self.slug}' is used by the survey's own pages; pick another slug."})
        if self.persona_train + self.persona_test != self.persona_total:
            raise ValidationError({"persona_total": "Train plus test must equal the total."})


class ConsentVersion(models.Model):
    """One immutable version of the information sheet and consent statements.
    Editing the text in the admin publishes a new version; consent records keep
    pointing at the version the person saw."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="consent_versions")
    version = models.PositiveIntegerField()
    information_sheet = models.TextField()
    statements = models.TextField(help_text="One statement per line; the participant ticks each one.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "-version"]
        constraints = [models.UniqueConstraint(fields=["study", "version"], name="consent_version_unique")]

    def __str__(self):
        return f"{self.study.slug} consent v{self.version}"

    @property
    def statement_list(self) -> list[str]:
        return [line.strip() for line in self.statements.splitlines() if line.strip()]


class EligibilityQuestion(models.Model):
    class Answer(models.TextChoices):
        YES = "yes", "Yes"
        NO = "no", "No"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="eligibility_questions")
    key = models.SlugField(max_length=64)
    text = models.CharField(max_length=300)
    eligible_answer = models.CharField(max_length=8, choices=Answer.choices, default=Answer.YES)
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["study", "order", "id"]
        constraints = [models.UniqueConstraint(fields=["study", "key"], name="eligibility_question_unique")]

    def __str__(self):
        return self.text


class Participant(models.Model):
    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress", "In progress"
        SCREENED_OUT = "screened_out", "Screened out"
        COMPLETED = "completed", "Completed"
        WITHDRAWN = "withdrawn", "Withdrawn"

    class Source(models.TextChoices):
        PROLIFIC = "prolific", "Prolific"
        UNIVERSITY = "university", "University"
        DIRECT = "direct", "Direct link"

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="participants")
    # Audit rows about this participant carry the subject's random key, never the ids below.
    audit_subject = models.OneToOneField("core.AuditSubject", null=True, blank=True, on_delete=models.PROTECT,
                                         related_name="+", editable=False)
    token = models.CharField(max_length=64, unique=True, default=new_token, editable=False)
    pseudonym = models.CharField(max_length=20, unique=True, default=new_pseudonym, editable=False)
    withdrawal_code = models.CharField(max_length=16, unique=True, default=new_withdrawal_code, editable=False)
    sequence = models.PositiveIntegerField(help_text="Order of arrival in the study; rotates the criteria of the ranking screens.")
    seed = models.BigIntegerField(default=new_seed, help_text="Seeds every random order this participant sees.")
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.DIRECT)
    start_nonce = models.CharField(max_length=64, blank=True, editable=False)
    # Keyed hashes (survey.prolific), never the ids themselves.
    prolific_pid_hash = models.CharField(max_length=64, blank=True, editable=False)
    prolific_study_id = models.CharField(max_length=64, blank=True)
    prolific_session_hash = models.CharField(max_length=64, blank=True, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IN_PROGRESS)
    eligible_at = models.DateTimeField(null=True, blank=True)
    scenarios_intro_at = models.DateTimeField(null=True, blank=True)
    scenario_plan = models.JSONField(null=True, blank=True, editable=False,
                                     help_text="Scenarios, responses and criteria of the ranking screens, fixed on first use.")
    # Where the person is: how many steps of their survey are done, in order (only the next step
    # can be answered, so the done steps are always the first ones). Written by each save in the
    # transaction that saves the answer, under the row lock, so a page reads it instead of counting
    # answers (selectors.participant_progress_counted recounts them).
    steps_done = models.PositiveSmallIntegerField(default=0, editable=False,
                                                  help_text="Steps done, in survey order; the next step is the one after them.")
    attention_failures = models.PositiveSmallIntegerField(default=0)
    attention_flagged = models.BooleanField(default=False, help_text="Failed two attention checks; marked, not dropped.")
    synthetic = models.BooleanField(default=False, editable=False,
                                    help_text="Simulated by the demo (survey.demo), not a person; left out of exports unless asked.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    screened_out_at = models.DateTimeField(null=True, blank=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["study", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["study", "sequence"], name="participant_study_sequence_unique"),
            models.UniqueConstraint(fields=["study", "start_nonce"], condition=~models.Q(start_nonce=""),
                                    name="participant_start_nonce_unique"),
            models.UniqueConstraint(fields=["study", "prolific_pid_hash"], condition=~models.Q(prolific_pid_hash=""),
                                    name="participant_prolific_pid_hash_unique"),
        ]
        indexes = [models.Index(fields=["study", "status"])]

    def __str__(self):
        return f"{self.pseudonym} (synthetic)" if self.synthetic else self.pseudonym

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.IN_PROGRESS

    @property
    def arrived_from_prolific(self) -> bool:
        """Started with a Prolific id (source is set to Prolific only then): the
        Prolific completion and screen-out codes are for these participants only."""
        return self.source == self.Source.PROLIFIC


class ProlificExclusion(models.Model):
    """A Prolific id that may not start the study again (screened out or
    withdrawn). The keyed hash is the whole record: no date, no reason, no
    link to a participant."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="+")
    prolific_pid_hash = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "prolific_pid_hash"], name="prolific_exclusion_unique")]


class ConsentRecord(models.Model):
    participant = models.OneToOneField(Participant, on_delete=models.CASCADE, related_name="consent")
    consent_version = models.ForeignKey(ConsentVersion, on_delete=models.PROTECT, related_name="records")
    statements_agreed = models.JSONField(help_text="The statements ticked, as shown.")
    consented_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.participant} consented to v{self.consent_version.version}"


class Answer(models.Model):
    """One answer to one simple question (background, attitudes, attention
    checks, closing feedback). ``value`` is the choice key (or list of keys);
    ``text`` holds free text ("other", self-description, feedback)."""

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="answers")
    item_key = models.CharField(max_length=64)
    value = models.JSONField(null=True, blank=True)
    text = models.TextField(blank=True)
    shown_order = models.JSONField(default=list, blank=True, help_text="Option or item order shown, when randomised.")
    answered_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["participant", "item_key"]
        constraints = [models.UniqueConstraint(fields=["participant", "item_key"], name="answer_one_per_item")]

    def __str__(self):
        return f"{self.participant} {self.item_key}"


class ImportanceRating(models.Model):
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="importance_ratings")
    criterion = models.ForeignKey("core.Criterion", on_delete=models.PROTECT, related_name="+")
    rating = models.PositiveSmallIntegerField()
    shown_order = models.JSONField(default=list, help_text="Criterion keys in the order they were shown.")
    answered_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["participant", "criterion__position"]
        constraints = [
            models.UniqueConstraint(fields=["participant", "criterion"], name="importance_one_per_criterion"),
            models.CheckConstraint(condition=models.Q(rating__gte=1, rating__lte=5), name="importance_rating_1_to_5"),
        ]


class CriteriaRanking(models.Model):
    class Basis(models.TextChoices):
        """Why the ranking counts as the participant's own: an untouched, pre-filled order does not."""

        REORDERED = "reordered", "The participant changed the shown order"
        CONFIRMED = "confirmed", "The participant confirmed the shown order"
        UNRECORDED = "", "Not recorded (saved before this was asked)"

    participant = models.OneToOneField(Participant, on_delete=models.CASCADE, related_name="criteria_ranking")
    ranking = models.JSONField(help_text="Criterion keys, most important first.")
    shown_order = models.JSONField(help_text="Criterion keys in the order first shown.")
    basis = models.CharField(max_length=16, choices=Basis.choices, default=Basis.UNRECORDED, blank=True)
    answered_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)


class ResponseRanking(models.Model):
    """A participant's ranking of one scenario's candidate responses on one
    criterion (one screen), or a skip."""

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="response_rankings")
    position = models.PositiveSmallIntegerField(help_text="Screen number, from 0.")
    scenario = models.ForeignKey("core.Scenario", on_delete=models.PROTECT, related_name="+")
    criterion = models.ForeignKey("core.Criterion", on_delete=models.PROTECT, related_name="+")
    shown_order = models.JSONField(help_text="core.Response ids in the order shown.")
    ranking = models.JSONField(default=list, blank=True, help_text="core.Response ids, best first; empty when skipped.")
    skipped = models.BooleanField(default=False)
    answered_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["participant", "position"]
        constraints = [models.UniqueConstraint(fields=["participant", "position"], name="response_ranking_one_per_screen")]


class CrisisFlag(models.Model):
    """Free text that matched crisis language. Researchers see it on the
    dashboard; the text itself stays in the answer, not here."""

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="crisis_flags")
    item_key = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["participant", "item_key"], name="crisis_flag_one_per_item")]
        verbose_name = "crisis flag"

    def __str__(self):
        from .questions import item_label

        return f"Crisis language from {self.participant.pseudonym} in “{item_label(self.item_key)}”"


class Persona(models.Model):
    class Split(models.TextChoices):
        TRAIN = "train", "Train"
        TEST = "test", "Test"
        NONE = "", "Not selected"

    participant = models.OneToOneField(Participant, on_delete=models.CASCADE, related_name="persona")
    text = models.TextField()
    edited = models.BooleanField(default=False, help_text="Edited by a researcher; rebuilding keeps the edit.")
    weights = models.JSONField(default=dict, help_text="Criterion key -> weight (importance ratings, normalised to sum 1).")
    completeness = models.FloatField(default=0.0)
    consistency = models.FloatField(default=0.0)
    quality = models.FloatField(default=0.0)
    selected = models.BooleanField(default=False)
    split = models.CharField(max_length=8, choices=Split.choices, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["participant__study", "participant__sequence"]

    def __str__(self):
        return f"persona of {self.participant.pseudonym}"

    @property
    def persona_id(self) -> str:
        return f"survey-{self.participant.pseudonym}"


class PersonaSelection(models.Model):
    """A record of one run of persona selection (its parameters and outcome)."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="persona_selections")
    seed = models.BigIntegerField()
    total = models.PositiveIntegerField()
    train = models.PositiveIntegerField()
    test = models.PositiveIntegerField()
    min_quality = models.FloatField()
    candidates = models.PositiveIntegerField()
    details = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "persona selection"

    def __str__(self):
        return f"Persona selection for {self.study.slug}, {self.created_at:%Y-%m-%d %H:%M} (seed {self.seed})"


class DatasetVersion(models.Model):
    """One exported or derived dataset built from participants' data.

    Every export creates one; the participants it contains are listed in
    ``DatasetVersionMember``. When one of them withdraws, the version is marked
    ``affected_by_withdrawal_at`` (it must not be downloaded or trained on again:
    survey.selectors.dataset_version_withdrawal_problem), its files are deleted
    from disk (``files_deleted_at``; paths and hashes stay as the record) and the
    withdrawn person's membership row goes with them."""

    class Kind(models.TextChoices):
        SURVEY_ANSWERS = "survey_answers", "Survey answers (CSV)"
        CRITERIA_RANKINGS = "criteria_rankings", "Criteria rankings (CSV)"
        RESPONSE_RANKINGS = "response_rankings", "Human response rankings (JSONL)"
        PERSONAS = "personas", "Personas (JSONL)"
        WEIGHT_VECTOR = "weight_vector", "Survey weight vector"
        TRAINING = "training", "Training dataset"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    study = models.ForeignKey(Study, null=True, blank=True, on_delete=models.PROTECT, related_name="dataset_versions")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    files = models.JSONField(default=list, blank=True, help_text="[{path, sha256, bytes}] for every file.")
    sha256 = models.CharField(max_length=64, blank=True, help_text="Of the one file, or of the sorted file digests.")
    participant_count = models.PositiveIntegerField(default=0)
    participants = models.ManyToManyField(Participant, through="DatasetVersionMember", related_name="dataset_versions")
    affected_by_withdrawal_at = models.DateTimeField(null=True, blank=True)
    files_deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="When the files were deleted from disk because a participant in them withdrew; "
        "their paths and sha256 stay in `files` as the record.")
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"dataset version #{self.pk} ({self.get_kind_display()})"

    @property
    def label(self) -> str:
        return f"dataset version #{self.pk} ({self.kind}, {self.created_at:%Y-%m-%d %H:%M} UTC)"


class DatasetVersionMember(models.Model):
    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="members")
    # PROTECT: only withdrawal deletes a participant, and it removes these links itself
    # after marking the versions (survey.services.participant_withdraw).
    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="dataset_memberships")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset_version", "participant"], name="dataset_member_unique")]


class WeightVector(models.Model):
    """A named, versioned weight vector over the criteria, computed from a
    cohort of the survey (see survey.statistics.plackett_luce_weights)."""

    class Method(models.TextChoices):
        PLACKETT_LUCE = "plackett_luce", "Plackett–Luce weights from the criteria rankings"
        IMPORTANCE = "importance", "Mean importance ratings, normalised"

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="weight_vectors")
    name = models.SlugField(max_length=64)
    version = models.PositiveIntegerField()
    cohort = models.JSONField(default=dict, blank=True, help_text="The subgroup filter, e.g. {\"diagnoses\": \"depression\"}; {} is everyone.")
    method = models.CharField(max_length=32, choices=Method.choices, default=Method.PLACKETT_LUCE)
    weights = models.JSONField(help_text="Criterion key -> weight; the weights sum to 1.")
    intervals = models.JSONField(default=dict, blank=True, help_text="Criterion key -> [low, high] bootstrap 95% interval.")
    participant_count = models.PositiveIntegerField()
    dataset_version = models.ForeignKey(DatasetVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "name", "-version"]
        constraints = [models.UniqueConstraint(fields=["study", "name", "version"], name="weight_vector_version_unique")]

    def __str__(self):
        return f"{self.name} v{self.version}"
