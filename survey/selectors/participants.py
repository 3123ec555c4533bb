"""A participant's reads: by token or code, the study's criteria, the scenario plan and progress (kept on the
participant's row by every save, checkable against the saved answers), the answers of each page."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from django.db.models.expressions import RawSQL

from core.models import Criterion, Response

from .. import questions
from ..models import (
    Answer,
    ConsentRecord,
    ConsentVersion,
    CriteriaRanking,
    EligibilityQuestion,
    ImportanceRating,
    Participant,
    ResponseRanking,
    Study,
)
from ..ordering import build_scenario_plan, shuffled
from ..prepared import INTEGER, TEXT, PreparedLookup, PreparedRows
from .vocabulary import criterion_by_key, study_criteria


# --- Participants --------------------------------------------------------------


# What no participant page or save reads of the participant's row (Prolific session and study ids,
# start nonce, timestamps): left unloaded by the lookups every request makes.
PAGE_DEFERRED = ("prolific_session_hash", "prolific_study_id", "start_nonce", "created_at", "updated_at", "completed_at",
                 "screened_out_at", "withdrawn_at")
# order_by(): the token is unique; the model's default order (by study) would only add a join.
_BY_TOKEN = PreparedLookup(
    lambda token: Participant.objects.select_related("study").defer(*PAGE_DEFERRED).filter(token=token).order_by())


def participant_by_token(token: str) -> Participant | None:
    """The participant of a link, with their study (and their progress: steps_done)."""
    if not token or len(token) > 64:
        return None
    return _BY_TOKEN.first(token)


def participant_by_withdrawal_code(code: str) -> Participant | None:
    cleaned = "".join(ch for ch in (code or "").upper() if ch.isalnum())
    if len(cleaned) != 10:
        return None
    return Participant.objects.select_related("study").filter(withdrawal_code=f"{cleaned[:5]}-{cleaned[5:]}").first()


_STUDY_BY_SLUG = PreparedLookup(lambda slug: Study.objects.filter(slug=slug).order_by())  # the slug is unique


def study_for_entry(slug: str) -> Study | None:
    return _STUDY_BY_SLUG.first(slug) if slug and len(slug) <= 64 else None


def active_study() -> Study | None:
    """The study the home page links to: the newest active one."""
    return Study.objects.filter(is_active=True).order_by("-created_at", "-id").first()


_CONSENT_VERSION_CURRENT = PreparedLookup(
    lambda study_id: ConsentVersion.objects.filter(study_id=study_id).order_by("-version"), kinds=(INTEGER,))


def consent_version_current(study: Study) -> ConsentVersion | None:
    return _CONSENT_VERSION_CURRENT.first(study.pk)


# Ordered within the study: the model's default order starts with the study's (a join).
_ELIGIBILITY_QUESTIONS = PreparedLookup(
    lambda study_id: EligibilityQuestion.objects.filter(study_id=study_id).order_by("order", "id"), kinds=(INTEGER,), limit=None)


def study_eligibility_questions(study_id: int) -> list[EligibilityQuestion]:
    return _ELIGIBILITY_QUESTIONS.all(study_id)


def criteria_shown_order(participant: Participant, criteria: list[Criterion], purpose: str) -> list[Criterion]:
    return shuffled(criteria, participant.seed, "criteria", purpose)


_CANDIDATES = PreparedRows(lambda model_version_id: Response.objects.filter(model_version_id=model_version_id)
                           .values_list("scenario_id", "id"), kinds=(INTEGER,))


def scenario_candidates(study: Study) -> dict[int, list[int]]:
    """scenario id -> response ids of the study's model version, for scenarios with enough responses."""
    if study.model_version_id is None:
        return {}
    rows = _CANDIDATES.rows(study.model_version_id)
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

    def with_done(self, step: str) -> "Progress":
        """The progress once ``step`` is saved (every step's save completes it)."""
        return Progress(self.steps, self.done | {step})

    @classmethod
    def after(cls, steps: list[str], steps_done: int) -> "Progress":
        """The first ``steps_done`` steps done (steps are answered in order)."""
        return cls(steps, set(steps[:steps_done]))


_PROGRESS_COLUMNS = None
PROGRESS_COUNTS = ("has_consent", "background_n", "attitudes_n", "check_2", "ratings_n", "criteria_n", "has_ranking", "screens_n")


def progress_columns() -> dict[str, RawSQL]:
    """Every count the progress needs, as expressions on the participant's own row
    (``Participant.objects.annotate(**progress_columns())``), so the progress comes with
    the query that loads (or locks) the participant. Written as SQL (portable: PostgreSQL
    and SQLite) because building it with the ORM cost more than running it."""
    global _PROGRESS_COLUMNS
    if _PROGRESS_COLUMNS is None:
        answer, rating, ranking = Answer._meta.db_table, ImportanceRating._meta.db_table, CriteriaRanking._meta.db_table
        me = f'"{Participant._meta.db_table}"."id"'
        background = [i.key for i in questions.BACKGROUND]
        attitudes = [i.key for i in questions.ATTITUDES] + ["attention.1"]

        def marks(items):
            return ", ".join(["%s"] * len(items))

        _PROGRESS_COLUMNS = {
            "has_consent": (f"EXISTS(SELECT 1 FROM {ConsentRecord._meta.db_table} WHERE participant_id = {me})", []),
            "background_n": (f"(SELECT COUNT(*) FROM {answer} WHERE participant_id = {me} AND item_key IN ({marks(background)}))",
                             background),
            "attitudes_n": (f"(SELECT COUNT(*) FROM {answer} WHERE participant_id = {me} AND item_key IN ({marks(attitudes)}))",
                            attitudes),
            "check_2": (f"EXISTS(SELECT 1 FROM {answer} WHERE participant_id = {me} AND item_key = %s)", ["attention.2"]),
            "ratings_n": (f"(SELECT COUNT(*) FROM {rating} WHERE participant_id = {me})", []),
            "criteria_n": (f"(SELECT COUNT(*) FROM {Criterion._meta.db_table} WHERE is_therapeutic = %s)", [True]),
            "has_ranking": (f"EXISTS(SELECT 1 FROM {ranking} WHERE participant_id = {me})", []),
            "screens_n": (f"(SELECT COUNT(*) FROM {ResponseRanking._meta.db_table} WHERE participant_id = {me})", []),
        }
        _PROGRESS_COLUMNS["_background_total"] = len(background)
        _PROGRESS_COLUMNS["_attitudes_total"] = len(attitudes)
    return {name: RawSQL(sql, params) for name, (sql, params) in
            ((k, v) for k, v in _PROGRESS_COLUMNS.items() if not k.startswith("_"))}


def participant_with_progress(queryset) -> Participant | None:
    """The first participant of ``queryset`` with its progress counts, in one query."""
    return queryset.annotate(**progress_columns()).first()


def participant_steps(participant: Participant) -> list[str]:
    """The participant's steps in order (the scenario screens are fixed with the plan)."""
    if participant.scenario_plan is not None:
        screens = len(participant.scenario_plan)
    else:
        # The plan is fixed when the person passes eligibility; before that, the study's setting.
        screens = participant.study.scenarios_per_participant if participant.study.model_version_id else 0
    steps = list(FIXED_STEPS)
    if screens:
        steps += ["before-scenarios"] + [f"scenario-{n}" for n in range(1, screens + 1)]
    steps.append("closing")
    return steps


def participant_progress(participant: Participant) -> Progress:
    """Which steps are done: the count every save keeps on the participant's row, under its
    lock, in the answer's transaction (never from the browser). No query."""
    steps = participant_steps(participant)
    if participant.status == Participant.Status.COMPLETED:
        return Progress(steps, set(steps))
    return Progress.after(steps, participant.steps_done)


def participant_progress_counted(participant: Participant) -> Progress:
    """The progress as the saved answers say it is (one query): what ``steps_done`` must agree
    with, and what filled it for rows saved before it existed (migration 0008)."""
    steps = participant_steps(participant)
    if participant.status == Participant.Status.COMPLETED:
        return Progress(steps, set(steps))
    fresh = participant_with_progress(Participant.objects.filter(pk=participant.pk).only("pk"))
    row = {name: getattr(fresh, name) if fresh else 0 for name in PROGRESS_COUNTS}
    return _progress(participant, steps, row)


def _progress(participant: Participant, steps: list[str], row: dict) -> Progress:
    background_n, attitudes_n = _PROGRESS_COLUMNS["_background_total"], _PROGRESS_COLUMNS["_attitudes_total"]
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


# order_by() in these reads: the models' default orders (by participant, then study...) would add joins.
_ANSWERS = PreparedLookup(lambda participant_id: Answer.objects.filter(participant_id=participant_id).order_by(),
                          kinds=(INTEGER,), limit=None)
_ANSWER = PreparedLookup(lambda participant_id, item_key: Answer.objects.filter(participant_id=participant_id, item_key=item_key)
                         .order_by(), kinds=(INTEGER, TEXT))
_ANSWER_VALUES = PreparedRows(lambda participant_id: Answer.objects.filter(participant_id=participant_id).order_by()
                              .values_list("item_key", "value"), kinds=(INTEGER,))
# In the criteria's order (the join to the criterion is there for its key anyway).
_IMPORTANCE = PreparedRows(lambda participant_id: ImportanceRating.objects.filter(participant_id=participant_id)
                           .order_by("criterion__position").values_list("criterion__key", "rating"), kinds=(INTEGER,))
_CRITERIA_RANKING = PreparedLookup(lambda participant_id: CriteriaRanking.objects.filter(participant_id=participant_id).order_by(),
                                   kinds=(INTEGER,))  # one per participant


def participant_answers(participant: Participant) -> dict:
    return {a.item_key: a for a in _ANSWERS.all(participant.pk)}


def participant_answer(participant: Participant, item_key: str) -> Answer | None:
    """The saved answer to one question (None when not answered): for a page that shows a single saved answer."""
    return _ANSWER.first(participant.pk, item_key)


def participant_answer_values(participant: Participant) -> dict:
    """{question key: saved value} of every answered question (their texts left out)."""
    return dict(_ANSWER_VALUES.rows(participant.pk))


def participant_importance(participant: Participant) -> dict[str, int]:
    """{criterion key: rating}, in the criteria's order."""
    return dict(_IMPORTANCE.rows(participant.pk))


def participant_criteria_ranking(participant: Participant) -> CriteriaRanking | None:
    return _CRITERIA_RANKING.first(participant.pk)


_SAVED_RANKING = PreparedRows(lambda participant_id, position: ResponseRanking.objects.filter(
    participant_id=participant_id, position=position).order_by().values_list("ranking"), kinds=(INTEGER, INTEGER), limit=1)
_SHOWN_RESPONSES: dict[int, PreparedRows] = {}


def _shown_responses(pks: list[int]) -> list[tuple]:
    """(pk, text, scenario id, scenario text) of a screen's responses; the query compiled once per count."""
    if not pks:
        return []
    prepared = _SHOWN_RESPONSES.get(len(pks))
    if prepared is None:
        prepared = _SHOWN_RESPONSES.setdefault(len(pks), PreparedRows(
            lambda *ids: Response.objects.filter(pk__in=ids).order_by().values_list("pk", "text", "scenario_id", "scenario__text"),
            kinds=(INTEGER,) * len(pks)))
    return prepared.rows(*pks)


class ShownText(NamedTuple):
    """A scenario or a response as a ranking screen shows it."""
    pk: int
    text: str


def response_screen(participant: Participant, number: int) -> dict | None:
    """Screen ``number`` (from 1) of the fixed plan: scenario, criterion, responses in shown order,
    and the saved ranking (response ids, best first; empty when skipped, None when not saved). Plain
    values: the page shows texts only."""
    plan = participant.scenario_plan or []
    if not 1 <= number <= len(plan):
        return None
    entry = plan[number - 1]
    from core.models import Scenario

    # The responses are the scenario's, so the scenario's text comes with them (one query for both).
    rows = _shown_responses(entry["responses"])
    responses = {pk: ShownText(pk, text) for pk, text, _scenario, _scenario_text in rows}
    scenario_text = next((text for _pk, _text, scenario, text in rows if scenario == entry["scenario"]), None)
    if scenario_text is None:
        scenario_text = Scenario.objects.values_list("text", flat=True).get(pk=entry["scenario"])
    saved = [ranking for (ranking,) in _SAVED_RANKING.rows(participant.pk, number - 1)]
    return {
        "number": number,
        "position": number - 1,
        "scenario": ShownText(entry["scenario"], scenario_text),
        "criterion": criterion_by_key(entry["criterion"]),
        "responses": [responses[pk] for pk in entry["responses"] if pk in responses],
        "saved_ranking": saved[0] if saved else None,
    }
