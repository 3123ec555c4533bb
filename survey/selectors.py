"""Reads of the survey app.

The ones other parts of the platform call:

- ``dataset_version_withdrawal_problem(version) -> str | None`` — a message
  naming the version when a participant in it has withdrawn (orchestration
  refuses to start a job on it).
- ``weight_vector_latest(study=..., name=...)`` and ``weight_vectors_for_training``
  — survey weight vectors in the training plans' format (name -> {criterion: weight}).
- ``participant_progress(participant)`` — where a participant is, computed on
  the server from their saved answers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from django.db import connection
from django.db.models import Count, Max, Q

from core.models import Criterion, Response

from . import questions
from .models import (
    Answer,
    ConsentRecord,
    ConsentVersion,
    CriteriaRanking,
    CrisisFlag,
    DatasetVersion,
    ImportanceRating,
    Participant,
    ResponseRanking,
    Study,
    WeightVector,
)
from .ordering import build_scenario_plan, shuffled

# --- Participants --------------------------------------------------------------


def participant_by_token(token: str) -> Participant | None:
    if not token or len(token) > 64:
        return None
    return Participant.objects.select_related("study").filter(token=token).first()


def participant_by_withdrawal_code(code: str) -> Participant | None:
    cleaned = "".join(ch for ch in (code or "").upper() if ch.isalnum())
    if len(cleaned) != 10:
        return None
    return Participant.objects.select_related("study").filter(withdrawal_code=f"{cleaned[:5]}-{cleaned[5:]}").first()


def study_for_entry(slug: str) -> Study | None:
    return Study.objects.filter(slug=slug).first()


def active_study() -> Study | None:
    """The study the home page links to: the newest active one."""
    return Study.objects.filter(is_active=True).order_by("-created_at", "-id").first()


def consent_version_current(study: Study) -> ConsentVersion | None:
    return study.consent_versions.order_by("-version").first()


def study_criteria() -> list[Criterion]:
    """The criteria participants rate and rank: the therapeutic ones."""
    return list(Criterion.objects.filter(is_therapeutic=True).order_by("position", "key"))


def criteria_shown_order(participant: Participant, criteria: list[Criterion], purpose: str) -> list[Criterion]:
    return shuffled(criteria, participant.seed, "criteria", purpose)


def scenario_candidates(study: Study) -> dict[int, list[int]]:
    """scenario id -> response ids of the study's model version, for scenarios with enough responses."""
    if study.model_version_id is None:
        return {}
    rows = Response.objects.filter(model_version_id=study.model_version_id).values_list("scenario_id", "id")
    candidates: dict[int, list[int]] = {}
    for scenario_id, response_id in rows:
        candidates.setdefault(scenario_id, []).append(response_id)
    return {sid: ids for sid, ids in candidates.items() if len(ids) >= study.responses_per_scenario}


def scenario_plan_compute(participant: Participant, criteria: list[Criterion] | None = None) -> list[dict]:
    """The plan the participant would get now (survey.services fixes it on first use)."""
    study = participant.study
    criteria = criteria if criteria is not None else study_criteria()
    return build_scenario_plan(
        seed=participant.seed, sequence=participant.sequence, candidates=scenario_candidates(study),
        criteria_keys=[c.key for c in criteria], scenarios=study.scenarios_per_participant,
        responses=study.responses_per_scenario,
    )


FIXED_STEPS = ("consent", "eligibility", "background", "attitudes", "importance", "criteria-ranking")
STEP_TITLES = {
    "consent": "Information and consent",
    "eligibility": "Who can take part",
    "background": "About you",
    "attitudes": "AI in mental-health care",
    "importance": "What matters in a response",
    "criteria-ranking": "Putting them in order",
    "before-scenarios": "Before the examples",
    "closing": "Finishing",
}


def step_title(step: str, progress: "Progress") -> str:
    """A step's page title; each scenario screen is numbered among the screens."""
    if step.startswith("scenario-"):
        screens = sum(1 for s in progress.steps if s.startswith("scenario-"))
        return f"Message {step.split('-')[1]} of {screens}"
    return STEP_TITLES.get(step, "")


@dataclass
class Progress:
    steps: list[str]  # in order; scenario screens are "scenario-1", "scenario-2", ...
    done: set[str] = field(default_factory=set)

    @property
    def next_step(self) -> str:
        for step in self.steps:
            if step not in self.done:
                return step
        return "done"

    @property
    def done_count(self) -> int:
        return sum(1 for s in self.steps if s in self.done)

    @property
    def total(self) -> int:
        return len(self.steps)

    @property
    def percent(self) -> int:
        return round(100 * self.done_count / self.total) if self.total else 100

    def index(self, step: str) -> int:
        return self.steps.index(step) if step in self.steps else len(self.steps)

    def reachable(self, step: str) -> bool:
        """Done steps can be revisited; the next one can be answered; later ones wait."""
        return step in self.done or step == self.next_step


_PROGRESS_SQL = None


def _progress_sql() -> tuple[str, list]:
    """One statement with every count the progress needs. Written as SQL (portable:
    PostgreSQL and SQLite) because building it with the ORM cost more than running it."""
    global _PROGRESS_SQL
    if _PROGRESS_SQL is None:
        answer, rating, ranking = Answer._meta.db_table, ImportanceRating._meta.db_table, CriteriaRanking._meta.db_table
        background = [i.key for i in questions.BACKGROUND]
        attitudes = [i.key for i in questions.ATTITUDES] + ["attention.1"]

        def marks(items):
            return ", ".join(["%s"] * len(items))

        sql = (
            f"SELECT EXISTS(SELECT 1 FROM {ConsentRecord._meta.db_table} WHERE participant_id = %s), "
            f"(SELECT COUNT(*) FROM {answer} WHERE participant_id = %s AND item_key IN ({marks(background)})), "
            f"(SELECT COUNT(*) FROM {answer} WHERE participant_id = %s AND item_key IN ({marks(attitudes)})), "
            f"EXISTS(SELECT 1 FROM {answer} WHERE participant_id = %s AND item_key = %s), "
            f"(SELECT COUNT(*) FROM {rating} WHERE participant_id = %s), "
            f"(SELECT COUNT(*) FROM {Criterion._meta.db_table} WHERE is_therapeutic = %s), "
            f"EXISTS(SELECT 1 FROM {ranking} WHERE participant_id = %s), "
            f"(SELECT COUNT(*) FROM {ResponseRanking._meta.db_table} WHERE participant_id = %s)"
        )
        # None marks where the participant id goes.
        params = [None, None, *background, None, *attitudes, None, "attention.2", None, True, None, None]
        _PROGRESS_SQL = (sql, params, len(background), len(attitudes))
    return _PROGRESS_SQL


def participant_progress(participant: Participant) -> Progress:
    """Which steps are done, from the saved answers (never from the browser).
    One query: every participant request computes this, often twice."""
    if participant.scenario_plan is not None:
        screens = len(participant.scenario_plan)
    else:
        # The plan is fixed when the person passes eligibility; before that, the study's setting.
        screens = participant.study.scenarios_per_participant if participant.study.model_version_id else 0
    steps = list(FIXED_STEPS)
    if screens:
        steps += ["before-scenarios"] + [f"scenario-{n}" for n in range(1, screens + 1)]
    steps.append("closing")
    if participant.status == Participant.Status.COMPLETED:
        return Progress(steps, set(steps))
    sql, params, background_n, attitudes_n = _progress_sql()
    with connection.cursor() as cursor:
        cursor.execute(sql, [participant.pk if p is None else p for p in params])
        values = cursor.fetchone()
    row = dict(zip(("has_consent", "background_n", "attitudes_n", "check_2", "ratings_n", "criteria_n", "has_ranking", "screens_n"),
                   values))
    done: set[str] = set()
    if row["has_consent"]:
        done.add("consent")
    if participant.eligible_at:
        done.add("eligibility")
    if row["background_n"] >= background_n:
        done.add("background")
    if row["attitudes_n"] >= attitudes_n:
        done.add("attitudes")
    if row["check_2"] and row["ratings_n"] >= row["criteria_n"]:
        done.add("importance")
    if row["has_ranking"]:
        done.add("criteria-ranking")
    if participant.scenarios_intro_at:
        done.add("before-scenarios")
    # Screens are answered in order (only the next one is open), so the count says which.
    done.update(f"scenario-{n}" for n in range(1, row["screens_n"] + 1))
    return Progress(steps, done)


def participant_consent(participant: Participant) -> ConsentRecord | None:
    return ConsentRecord.objects.select_related("consent_version").filter(participant=participant).first()


def participant_answers(participant: Participant) -> dict:
    return {a.item_key: a for a in participant.answers.all()}


def participant_importance(participant: Participant) -> dict[str, int]:
    return dict(participant.importance_ratings.values_list("criterion__key", "rating"))


def participant_criteria_ranking(participant: Participant) -> CriteriaRanking | None:
    return CriteriaRanking.objects.filter(participant=participant).first()


def response_screen(participant: Participant, number: int) -> dict | None:
    """Screen ``number`` (from 1) of the fixed plan: scenario, criterion, responses in shown order."""
    plan = participant.scenario_plan or []
    if not 1 <= number <= len(plan):
        return None
    entry = plan[number - 1]
    from core.models import Scenario

    responses = {r.pk: r for r in Response.objects.filter(pk__in=entry["responses"])}
    return {
        "number": number,
        "position": number - 1,
        "scenario": Scenario.objects.get(pk=entry["scenario"]),
        "criterion": Criterion.objects.get(key=entry["criterion"]),
        "responses": [responses[pk] for pk in entry["responses"] if pk in responses],
        "saved": ResponseRanking.objects.filter(participant=participant, position=number - 1).first(),
    }


# --- Datasets -----------------------------------------------------------------


def dataset_version_withdrawal_problem(version: DatasetVersion | None) -> str | None:
    """None when the version may be used; otherwise why not, naming the version."""
    if version is None:
        return "the dataset version does not exist"
    version.refresh_from_db(fields=["affected_by_withdrawal_at"])
    if version.affected_by_withdrawal_at is None:
        return None
    return (
        f"{version.label} contains data from a participant who withdrew from the study on "
        f"{version.affected_by_withdrawal_at:%Y-%m-%d %H:%M} UTC; it must not be used. "
        "Build a new version (later exports leave withdrawn participants out)."
    )


def dataset_versions_containing(participant: Participant):
    return DatasetVersion.objects.filter(members__participant=participant)


# --- Cohorts, weight vectors ---------------------------------------------------

COHORT_FIELDS = {
    "age_group": "background.age_group",
    "gender": "background.gender",
    "ethnicity": "background.ethnicity",
    "diagnoses": "background.diagnoses",
    "severity": "background.severity",
    "treatment": "background.treatment",
    "ai_use": "background.ai_use",
}


def cohort_validate(cohort: dict) -> dict:
    """Check a cohort filter: {field: choice key} with field among COHORT_FIELDS or "source"."""
    from .exceptions import InvalidAnswer

    cohort = dict(cohort or {})
    for name, value in cohort.items():
        if name == "source":
            allowed = Participant.Source.values
        elif name in COHORT_FIELDS:
            allowed = questions.ALL_CHOICE_ITEMS[COHORT_FIELDS[name]].choice_keys
        else:
            raise InvalidAnswer({"cohort": f"unknown cohort field {name!r}; use one of: source, {', '.join(COHORT_FIELDS)}"})
        if value not in allowed:
            raise InvalidAnswer({"cohort": f"{value!r} is not a value of {name!r} (choose from {', '.join(allowed)})"})
    return cohort


def cohort_participants(study: Study, cohort: dict | None = None, *, exclude_flagged: bool = False) -> list[Participant]:
    """Completed participants (withdrawn ones are never included) matching a cohort filter."""
    cohort = cohort_validate(cohort or {})
    participants = Participant.objects.filter(study=study, status=Participant.Status.COMPLETED).order_by("sequence")
    if exclude_flagged:
        participants = participants.filter(attention_flagged=False)
    participants = list(participants.prefetch_related("answers"))
    if not cohort:
        return participants
    selected = []
    for participant in participants:
        answers = {a.item_key: a.value for a in participant.answers.all()}
        if all(_matches(name, value, participant, answers) for name, value in cohort.items()):
            selected.append(participant)
    return selected


def _matches(name, value, participant, answers) -> bool:
    if name == "source":
        return participant.source == value
    given = answers.get(COHORT_FIELDS[name])
    return value in given if isinstance(given, list) else given == value


def weight_vector_latest(*, study: Study, name: str) -> WeightVector | None:
    return WeightVector.objects.filter(study=study, name=name).order_by("-version").first()


def weight_vector_problem(vector: WeightVector) -> str | None:
    if vector.dataset_version_id is None:
        return None
    return dataset_version_withdrawal_problem(vector.dataset_version)


def weight_vectors_for_training(*, study: Study, names: list[str] | None = None) -> dict[str, dict[str, float]]:
    """{name: {criterion: weight}} from the newest version of each named vector,
    in the training plans' ``weight_vectors`` format. Raises ValueError when a
    vector is missing or built from a withdrawn participant's data."""
    vectors = {}
    all_names = names if names is not None else sorted(set(study.weight_vectors.values_list("name", flat=True)))
    for name in all_names:
        vector = weight_vector_latest(study=study, name=name)
        if vector is None:
            raise ValueError(f"no weight vector named {name!r} in study {study.slug!r}")
        problem = weight_vector_problem(vector)
        if problem:
            raise ValueError(f"weight vector {name!r} v{vector.version}: {problem}")
        vectors[name] = dict(vector.weights)
    return vectors


# --- Dashboard ------------------------------------------------------------------


def study_funnel(study: Study) -> dict[str, int]:
    statuses = Participant.Status
    counts = Participant.objects.filter(study=study).aggregate(
        started=Count("id"),
        consented=Count("id", filter=Q(consent__isnull=False) | Q(status=statuses.COMPLETED)),
        eligible=Count("id", filter=Q(eligible_at__isnull=False)),
        screened_out=Count("id", filter=Q(status=statuses.SCREENED_OUT)),  # rows from before they were deleted
        completed=Count("id", filter=Q(status=statuses.COMPLETED)),
        attention_flagged=Count("id", filter=Q(attention_flagged=True)),
    )
    # Withdrawn and screened-out participants' rows are deleted; the study counts them.
    withdrawn, screened_out = Study.objects.values_list("withdrawn_count", "screened_out_count").get(pk=study.pk)
    counts["withdrawn"] = withdrawn
    counts["screened_out"] += screened_out
    counts["started"] += withdrawn + screened_out
    counts["crisis_flagged"] = Participant.objects.filter(study=study, crisis_flags__isnull=False).distinct().count()
    return counts


def crisis_flags_open(study: Study):
    return CrisisFlag.objects.filter(participant__study=study, reviewed_at__isnull=True).select_related("participant")


def cohort_matrices(participants: list[Participant], criteria: list[Criterion]):
    """(ratings n×k with NaN for missing, rankings as index lists best first) of complete answers."""
    import numpy as np

    index = {c.key: i for i, c in enumerate(criteria)}
    ids = [p.pk for p in participants]
    ratings = np.full((len(ids), len(criteria)), np.nan)
    row = {pk: i for i, pk in enumerate(ids)}
    for pid, key, rating in ImportanceRating.objects.filter(participant_id__in=ids).values_list(
        "participant_id", "criterion__key", "rating"
    ):
        if key in index:
            ratings[row[pid], index[key]] = rating
    rankings = {}
    for pid, ranking in CriteriaRanking.objects.filter(participant_id__in=ids).values_list("participant_id", "ranking"):
        if set(ranking) == set(index):
            rankings[pid] = [index[k] for k in ranking]
    return ratings, [rankings.get(pk) for pk in ids]


def _report_fingerprint(study: Study) -> str:
    stats = Participant.objects.filter(study=study).aggregate(
        completed=Count("id", filter=Q(status=Participant.Status.COMPLETED)),
        last=Max("completed_at"),
    )
    withdrawn = Study.objects.values_list("withdrawn_count", flat=True).get(pk=study.pk)
    return f"{stats['completed']}-{withdrawn}-{stats['last'].timestamp() if stats['last'] else 0}"


def _report_cache_key(study: Study) -> str:
    # created_at in the key: another database (a test run, a restore) can reuse the study id.
    return f"survey:report:{study.pk}:{study.created_at.timestamp()}"


def study_report_forget(study: Study) -> None:
    """Drop the study's cached report (a withdrawal: no cache entry may hold their data)."""
    from django.core.cache import cache

    cache.delete(_report_cache_key(study))


def study_report(study: Study, *, n_boot_means: int = 1000, n_boot_pl: int = 200, seed: int = 0) -> dict:
    """The dashboard's statistics over completed participants (cached until the data changes):
    mean importance with bootstrap 95% intervals, top-rated and first-ranked shares,
    normalised Plackett–Luce weights with intervals, rating/ranking agreement."""
    from django.core.cache import cache

    # One entry per study (so a withdrawal can drop it), valid while the fingerprint matches.
    key = _report_cache_key(study)
    fingerprint = f"{_report_fingerprint(study)}:{n_boot_means}:{n_boot_pl}:{seed}"
    cached = cache.get(key)
    if cached is not None and cached.get("fingerprint") == fingerprint:
        return cached["report"]
    from . import statistics

    criteria = study_criteria()
    participants = cohort_participants(study)
    ratings, rankings = cohort_matrices(participants, criteria)
    complete_rankings = [r for r in rankings if r is not None]
    k = len(criteria)
    means = statistics.bootstrap_mean(ratings, n_boot=n_boot_means, seed=seed) if participants else None
    top = statistics.top_rated_shares(ratings) if participants else [0.0] * k
    first = statistics.first_ranked_shares(complete_rankings, k)
    pl = statistics.plackett_luce_weights(complete_rankings, k, n_boot=n_boot_pl, seed=seed) if complete_rankings else None
    agreement = statistics.rating_ranking_agreement(ratings, rankings)
    rows = []
    for i, criterion in enumerate(criteria):
        rows.append({
            "key": criterion.key, "name": criterion.name,
            "mean": _num(means.value[i]) if means else None,
            "mean_low": _num(means.low[i]) if means else None,
            "mean_high": _num(means.high[i]) if means else None,
            "top_share": float(top[i]), "first_share": float(first[i]),
            "pl": float(pl.value[i]) if pl else None,
            "pl_low": float(pl.low[i]) if pl else None,
            "pl_high": float(pl.high[i]) if pl else None,
        })
    report = {
        "n": len(participants), "n_rankings": len(complete_rankings), "rows": rows,
        "agreement": {"n": agreement.n, "n_undefined": agreement.n_undefined, "mean": agreement.mean,
                      "median": agreement.median, "share_positive": agreement.share_positive,
                      "taus": [t for t in agreement.taus if t is not None]},
    }
    cache.set(key, {"fingerprint": fingerprint, "report": report}, timeout=600)
    return report


def _num(value) -> float | None:
    import math

    value = float(value)
    return None if math.isnan(value) else value


def crisis_flag_text(flag: CrisisFlag) -> str:
    """The words that matched: the free text of the flagged answer (the flag keeps no copy)."""
    answer = Answer.objects.filter(participant_id=flag.participant_id, item_key=flag.item_key).only("text").first()
    return answer.text if answer else ""
