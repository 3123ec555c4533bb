"""The questionnaire pages: consent, eligibility, background, attitudes, importance, the
criteria ranking and the closing page, and the crisis flags their free text raises. Each
saves through the protocol in ``answers`` (row lock, step check, upsert, progress)."""
from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.audit import AuditAction, audit_record

from .. import questions, selectors
from ..crisis import contains_crisis_language
from ..exceptions import InvalidAnswer
from ..models import (
    Answer,
    ConsentRecord,
    ConsentVersion,
    CriteriaRanking,
    CrisisFlag,
    EligibilityQuestion,
    ImportanceRating,
    Participant,
    Study,
)
from .answers import _ranking_from_ranks, participant_atomic, participant_lock, participant_lock_row, participant_step_check, participant_step_saved
from .participants import PARTICIPANT_ACTOR, participant_audit_subject, participant_erase, prolific_exclude
from .personas import persona_build
from ..prepared import PreparedInsert, PreparedUpsert


_CONSENT_INSERT = PreparedInsert(ConsentRecord)


def consent_give(*, participant: Participant, consent_version_id, agreed: Iterable) -> ConsentRecord:
    """Record consent to the version the person saw; every statement must be ticked.
    Consent is given once: a resubmitted form returns the record and changes nothing."""
    with participant_atomic(participant):
        locked = participant_lock(participant, "consent")
        if "consent" in selectors.participant_progress(locked).done:
            return ConsentRecord.objects.get(participant_id=locked.pk)
        current = selectors.consent_version_current(participant.study)
        try:
            version_id = int(consent_version_id)
        except (TypeError, ValueError):
            version_id = None
        if current is None or version_id != current.pk:
            if version_id is None or not ConsentVersion.objects.filter(pk=version_id, study_id=participant.study_id).exists():
                raise InvalidAnswer("This consent form does not belong to this study; please reload the page.")
            # Consent counts only for the text the study asks people to agree to now.
            raise InvalidAnswer("The information and consent form has been updated since this page was opened. "
                                "Please reload the page, read the current version and tick the statements again. Nothing was saved.")
        statements = current.statement_list
        try:
            ticked = sorted({int(i) for i in agreed})
        except (TypeError, ValueError):
            raise InvalidAnswer("The consent answers were not understood; please tick the boxes again.") from None
        if ticked != list(range(len(statements))):
            if any(i < 0 or i >= len(statements) for i in ticked):
                raise InvalidAnswer("The consent answers do not match this consent form; please reload the page.")
            raise InvalidAnswer({"statements": "To take part, please tick every statement. If you would rather not, you can simply close this page."})
        [record] = _CONSENT_INSERT.save(
            [ConsentRecord(participant=locked, consent_version=current, statements_agreed=[statements[i] for i in ticked])])
        participant_step_saved(participant, locked, "consent")
        return record


def eligibility_submit(*, participant: Participant, answers: dict) -> bool:
    """True if eligible. Otherwise the person is screened out: their row and
    everything they answered are deleted; the study counts them, and a Prolific
    id is kept only as its exclusion hash (so it cannot start again)."""
    study_questions = selectors.study_eligibility_questions(participant.study_id)
    errors = {}
    for question in study_questions:
        value = answers.get(question.key)
        if value in (None, ""):
            errors[f"eligibility-{question.key}"] = f"Please answer: {question.text}"
        elif value not in EligibilityQuestion.Answer.values:
            errors[f"eligibility-{question.key}"] = f"Please answer yes or no: {question.text}"
    unknown = set(answers) - {q.key for q in study_questions}
    if unknown:
        errors[""] = f"Unknown eligibility question: {', '.join(sorted(unknown))}."
    if errors:
        raise InvalidAnswer(errors)
    eligible = all(answers[q.key] == q.eligible_answer for q in study_questions)
    with participant_atomic(participant):
        locked = participant_lock(participant, "eligibility")
        if locked.eligible_at is not None:
            return True  # already through; a resubmitted old page changes nothing
        if eligible:
            # The ranking screens are fixed now, so progress counts them from here on.
            participant_step_saved(participant, locked, "eligibility", eligible_at=timezone.now(),
                                   scenario_plan=selectors.scenario_plan_compute(locked))
            return True
        prolific_exclude(locked)
        participant_erase(locked)
        Study.objects.filter(pk=locked.study_id).update(screened_out_count=F("screened_out_count") + 1)
        return False


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


_ANSWERS_UPSERT = PreparedUpsert(Answer, unique_fields=["participant", "item_key"],
                                 update_fields=["value", "text", "shown_order", "updated_at"])
_RATINGS_UPSERT = PreparedUpsert(ImportanceRating, unique_fields=["participant", "criterion"],
                                 update_fields=["rating", "shown_order", "updated_at"])
_CRITERIA_RANKING_UPSERT = PreparedUpsert(CriteriaRanking, unique_fields=["participant"], update_fields=["ranking", "basis", "updated_at"])


def _upsert_answers(rows: list[Answer]):
    _ANSWERS_UPSERT.save(rows)


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
        _RATINGS_UPSERT.save(
            [ImportanceRating(participant=locked, criterion_id=c.pk, rating=r, shown_order=shown) for c, r in clean.items()])
        _upsert_answers([Answer(participant=locked, item_key=check.key, value=attention_value)])
        participant_step_saved(participant, locked, "importance", attention=True)


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
        _CRITERIA_RANKING_UPSERT.save([row])
        participant_step_saved(participant, locked, "criteria-ranking")
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
