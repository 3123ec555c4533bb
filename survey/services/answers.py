"""Participant answers, page by page, to the end of the survey.

Every save locks the participant's row, checks the
participant may answer that step, and upserts on the answer table's unique
key (INSERT ... ON CONFLICT UPDATE), so a refresh, the back button, a double
submit or a second tab updates the one row instead of adding another, and a
withdrawal can never interleave with a save. The step is then recorded as done
on the participant's row (steps_done) in the same transaction. Bad input raises
InvalidAnswer before anything is written. A page's POST locks the row with its
lookup and runs the save in that transaction (participant_atomic).
"""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from core.audit import AuditAction, audit_record

from .. import questions, selectors
from ..crisis import contains_crisis_language
from ..exceptions import InvalidAnswer
from ..models import Answer, CriteriaRanking, CrisisFlag, ImportanceRating, Participant, ResponseRanking
from .participants import (
    PARTICIPANT_ACTOR,
    participant_atomic,
    participant_audit_subject,
    participant_lock,
    participant_lock_row,
    participant_step_check,
    participant_step_saved,
)
from .personas import persona_build

MAX_TEXT = 2000


def _validate_choice(item: questions.ChoiceItem, value, text: str = "") -> tuple[object, str]:
    label = item.label
    if item.multiple:
        values = value if isinstance(value, list) else ([value] if value else [])
        if not values:
            raise InvalidAnswer({item.key: f"Please choose at least one answer (or “Prefer not to say”) for: {label}"})
        unknown = [v for v in values if v not in item.choice_keys]
        if unknown:
            raise InvalidAnswer({item.key: f"“{unknown[0]}” is not one of the options for: {label}"})
        if questions.PREFER_NOT in values and len(values) > 1:
            raise InvalidAnswer({item.key: f"“Prefer not to say” cannot be combined with other answers for: {label}"})
        cleaned = [k for k in item.choice_keys if k in values]  # option order, no duplicates
        keep_text = item.text_choice in cleaned
    else:
        if value in (None, ""):
            raise InvalidAnswer({item.key: f"Please choose an answer for: {label}"})
        if value not in item.choice_keys:
            raise InvalidAnswer({item.key: f"“{value}” is not one of the options for: {label}"})
        cleaned = value
        keep_text = value == item.text_choice
    text = (text or "").strip()
    if len(text) > MAX_TEXT:
        raise InvalidAnswer({f"{item.key}-text": f"Please keep this under {MAX_TEXT} characters."})
    return cleaned, text if keep_text else ""


def _upsert_answers(rows: list[Answer]):
    Answer.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["participant", "item_key"],
        update_fields=["value", "text", "shown_order", "updated_at"],
    )


def _crisis_check(participant: Participant, item_key: str, text: str) -> bool:
    """Flag crisis language for researchers (one flag per question) and say whether it matched."""
    if not contains_crisis_language(text):
        return False
    flag, created = CrisisFlag.objects.get_or_create(participant=participant, item_key=item_key)
    if created:
        audit_record(
            action=AuditAction.SURVEY_CRISIS_FLAG, actor_label=PARTICIPANT_ACTOR, target_type="survey.crisisflag",
            subject=participant_audit_subject(participant), details={"study": participant.study.slug, "item": item_key},
        )
    return True


def _save_choice_items(participant: Participant, items, data: dict, step: str) -> bool:
    """Validate and upsert a page of choice items; True if free text matched crisis language."""
    cleaned = []
    errors = {}
    for item in items:
        entry = data.get(item.key) or {}
        try:
            value, text = _validate_choice(item, entry.get("value"), entry.get("text", ""))
        except InvalidAnswer as exc:
            errors.update(exc.field_errors)
            continue
        if item in questions.ATTITUDES:
            value = int(value)
        # Crisis language is looked for in whatever was typed, even text the answer does not keep
        # (words in an "other" box whose option was not ticked).
        typed = str(entry.get("text") or "")
        cleaned.append((item, value, text, typed))
    unknown = set(data) - {i.key for i in items}
    if unknown:
        errors[""] = f"Unknown question: {', '.join(sorted(unknown))}."
    if errors:
        raise InvalidAnswer(errors)
    with participant_atomic(participant):
        locked = participant_lock(participant, step)
        _upsert_answers([Answer(participant=locked, item_key=item.key, value=value, text=text) for item, value, text, _ in cleaned])
        crisis = False
        for item, _, _, typed in cleaned:
            crisis = _crisis_check(locked, item.key, typed) or crisis
        # An attention check on the page: its failures are counted in the same UPDATE as the progress.
        participant_step_saved(participant, locked, step, attention=any(item.correct for item, _, _, _ in cleaned))
        return crisis


def background_save(*, participant: Participant, data: dict) -> bool:
    """data: {item_key: {"value": key or [keys], "text": str}}. Returns True if free text needs the helplines shown."""
    return _save_choice_items(participant, questions.BACKGROUND, data, "background")


def attitudes_save(*, participant: Participant, data: dict) -> bool:
    """The five attitude items (values "1".."5") and the first attention check."""
    return _save_choice_items(participant, (*questions.ATTITUDES, questions.ATTENTION_CHECKS[0]), data, "attitudes")


def importance_save(*, participant: Participant, ratings: dict, attention: str) -> None:
    """ratings: {criterion key: "1".."5"} for every therapeutic criterion; attention: the second check's answer."""
    criteria = selectors.study_criteria()
    keys = [c.key for c in criteria]
    errors = {}
    unknown = sorted(set(ratings) - set(keys))
    if unknown:
        errors[""] = f"Unknown criterion: {', '.join(unknown)}."
    clean = {}
    for criterion in criteria:
        value = ratings.get(criterion.key)
        if value in (None, ""):
            errors[f"importance-{criterion.key}"] = f"Please rate how important {criterion.name.lower()} is to you."
        elif str(value) not in {"1", "2", "3", "4", "5"}:
            errors[f"importance-{criterion.key}"] = f"The rating for {criterion.name.lower()} must be a whole number from 1 to 5."
        else:
            clean[criterion] = int(value)
    check = questions.ATTENTION_CHECKS[1]
    try:
        attention_value, _ = _validate_choice(check, attention)
    except InvalidAnswer as exc:
        errors.update(exc.field_errors)
    if errors:
        raise InvalidAnswer(errors)
    shown = [c.key for c in selectors.criteria_shown_order(participant, criteria, "importance")]
    with participant_atomic(participant):
        locked = participant_lock(participant, "importance")
        ImportanceRating.objects.bulk_create(
            [ImportanceRating(participant=locked, criterion_id=c.pk, rating=r, shown_order=shown) for c, r in clean.items()],
            update_conflicts=True, unique_fields=["participant", "criterion"], update_fields=["rating", "shown_order", "updated_at"],
        )
        _upsert_answers([Answer(participant=locked, item_key=check.key, value=attention_value)])
        participant_step_saved(participant, locked, "importance", attention=True)


def _ranking_from_ranks(ranks: dict, expected: list[str], what: str, names: dict[str, str]) -> list[str]:
    """{item: "rank"} -> items best first; the ranks must be a permutation of 1..n."""
    unknown = sorted(set(ranks) - set(expected))
    if unknown:
        raise InvalidAnswer(f"Unknown {what}: {', '.join(map(str, unknown))}. Please reload the page.")
    missing = [k for k in expected if k not in ranks or ranks[k] in (None, "")]
    if missing:
        raise InvalidAnswer({"ranking": f"Please give a rank to every {what} (missing: {', '.join(names.get(k, k) for k in missing)})."})
    n = len(expected)
    try:
        numbers = {k: int(ranks[k]) for k in expected}
    except (TypeError, ValueError):
        raise InvalidAnswer({"ranking": f"Ranks must be whole numbers from 1 to {n}."}) from None
    if sorted(numbers.values()) != list(range(1, n + 1)):
        if any(not 1 <= v <= n for v in numbers.values()):
            raise InvalidAnswer({"ranking": f"Ranks must be whole numbers from 1 to {n}."})
        repeated = sorted({v for v in numbers.values() if list(numbers.values()).count(v) > 1})
        raise InvalidAnswer({"ranking": f"Each rank from 1 to {n} must be used exactly once (rank {repeated[0]} is used more than once)."})
    return sorted(expected, key=lambda k: numbers[k])


ORDER_NOT_CONFIRMED = ("The qualities are still in the order they were shown in. Please put them in your order, "
                       "or tick “This order is right” if it already is.")


def criteria_ranking_save(*, participant: Participant, ranks: dict, order_confirmed: bool = False) -> CriteriaRanking:
    """ranks: {criterion key: "1".."k"}, a full ranking of the therapeutic criteria.
    The order first shown (random) counts only when the participant confirms it;
    which of the two it was is stored with the ranking. Returns the row as saved (its
    pk set; answered_at is the table's on a first save only)."""
    criteria = selectors.study_criteria()
    ranking = _ranking_from_ranks(ranks, [c.key for c in criteria], "criterion", {c.key: c.name for c in criteria})
    shown = [c.key for c in selectors.criteria_shown_order(participant, criteria, "ranking")]
    if ranking != shown:
        basis = CriteriaRanking.Basis.REORDERED
    elif order_confirmed:
        basis = CriteriaRanking.Basis.CONFIRMED
    else:
        raise InvalidAnswer({"ranking": ORDER_NOT_CONFIRMED})
    with participant_atomic(participant):
        locked = participant_lock(participant, "criteria-ranking")
        row = CriteriaRanking(participant=locked, ranking=ranking, shown_order=shown, basis=basis)
        CriteriaRanking.objects.bulk_create(
            [row], update_conflicts=True, unique_fields=["participant"], update_fields=["ranking", "basis", "updated_at"],
        )
        participant_step_saved(participant, locked, "criteria-ranking")
        return row


def scenarios_begin(*, participant: Participant) -> list[dict]:
    """Fix the participant's ranking screens (scenarios, responses, criteria) and mark the support note read."""
    with participant_atomic(participant):
        locked = participant_lock(participant, "before-scenarios")
        fields = {}
        if locked.scenario_plan is None:
            fields["scenario_plan"] = selectors.scenario_plan_compute(locked)
        if locked.scenarios_intro_at is None:
            fields["scenarios_intro_at"] = timezone.now()
        participant_step_saved(participant, locked, "before-scenarios", **fields)
        return locked.scenario_plan


def scenario_plan_fix(participant: Participant) -> Participant:
    """Fix the plan without marking the note read (so progress counts the right number of screens)."""
    if participant.scenario_plan is not None:
        return participant
    with transaction.atomic():
        locked = participant_lock_row(participant)
        if locked.scenario_plan is None and locked.is_active:
            locked.scenario_plan = selectors.scenario_plan_compute(locked)
            locked.save(update_fields=["scenario_plan", "updated_at"])
        return locked


def response_ranking_save(*, participant: Participant, number: int, ranks: dict | None, skip: bool = False) -> ResponseRanking:
    """Screen ``number`` (from 1): ranks {response id: "1".."K"}, or skip=True. Returns the row
    as saved (its pk set; answered_at is the table's on a first save only)."""
    plan = participant.scenario_plan or []
    if not 1 <= number <= len(plan):
        raise InvalidAnswer("There is no such scenario screen for you. Please use your link to continue.")
    entry = plan[number - 1]
    expected = [str(pk) for pk in entry["responses"]]
    if skip:
        ranking = []
    else:
        labels = {str(pk): f"Response {chr(65 + i)}" for i, pk in enumerate(entry["responses"])}
        ranking = [int(k) for k in _ranking_from_ranks(ranks or {}, expected, "response", labels)]
    criterion = selectors.criterion_by_key(entry["criterion"])
    with participant_atomic(participant):
        locked = participant_lock(participant, f"scenario-{number}")
        row = ResponseRanking(participant=locked, position=number - 1, scenario_id=entry["scenario"], criterion_id=criterion.pk,
                              shown_order=entry["responses"], ranking=ranking, skipped=skip)
        ResponseRanking.objects.bulk_create(
            [row], update_conflicts=True, unique_fields=["participant", "position"], update_fields=["ranking", "skipped", "updated_at"],
        )
        participant_step_saved(participant, locked, f"scenario-{number}")
        return row


def participant_complete(*, participant: Participant, feedback: str = "") -> bool:
    """Finish: store the closing feedback, mark completed and build the persona.
    Returns True if the feedback needs the helplines shown. Idempotent."""
    feedback = (feedback or "").strip()
    if len(feedback) > MAX_TEXT:
        raise InvalidAnswer({"feedback": f"Please keep this under {MAX_TEXT} characters."})
    with participant_atomic(participant):
        locked = participant_lock_row(participant)
        if locked.status == Participant.Status.COMPLETED:
            return False
        participant_step_check(participant, locked, "closing")
        _upsert_answers([Answer(participant=locked, item_key=questions.FEEDBACK_KEY, value=None, text=feedback)])
        crisis = _crisis_check(locked, questions.FEEDBACK_KEY, feedback)
        participant_step_saved(participant, locked, "closing", status=Participant.Status.COMPLETED, completed_at=timezone.now())
        persona_build(participant=locked, new=True)
        return crisis


@transaction.atomic
def crisis_flag_review(*, flag: CrisisFlag, actor) -> CrisisFlag:
    flag = CrisisFlag.objects.select_for_update().select_related("participant").get(pk=flag.pk)
    if flag.reviewed_at is None:
        flag.reviewed_at = timezone.now()
        flag.reviewed_by = actor
        flag.save(update_fields=["reviewed_at", "reviewed_by"])
        audit_record(actor=actor, action=AuditAction.SURVEY_CRISIS_FLAG_REVIEW, target_type="survey.crisisflag",
                     subject=participant_audit_subject(flag.participant), details={"item": flag.item_key})
    return flag
