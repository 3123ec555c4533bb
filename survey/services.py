"""Writes of the survey app.

Participant answers: every save locks the participant's row, checks the
participant may answer that step, and upserts on the answer table's unique
key (INSERT ... ON CONFLICT UPDATE), so a refresh, the back button, a double
submit or a second tab updates the one row instead of adding another, and a
withdrawal can never interleave with a save. Bad input raises InvalidAnswer
before anything is written.

The services other parts of the platform call:

- ``dataset_version_create(*, kind, participants, files, actor, study=None, note="")``
  records a dataset built from participants' data; a later withdrawal of any
  of them marks it affected (see selectors.dataset_version_withdrawal_problem).
- ``personas_export_jsonl(*, path, ...)`` / ``personas_export_dataset(*, path, actor)``
  write the selected personas in the training pipeline's persona format and
  return the DatasetVersion.
- ``weight_vector_create(*, study, name, cohort, ...)`` computes and stores a
  survey weight vector (normalised Plackett–Luce weights; survey.statistics).
- ``participant_withdraw(*, participant, via, actor=None)``.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import tempfile
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Max
from django.utils import timezone

from core.models import Criterion, Response
from core.services import audit_record, audit_subject_create, audit_subject_erase
from core.spreadsheet import safe_csv_writer

from . import questions, selectors
from .crisis import contains_crisis_language
from .exceptions import AlreadyStarted, InvalidAnswer, ProlificExcluded, StepNotAvailable, SurveyError
from .models import (
    Answer,
    ConsentRecord,
    ConsentVersion,
    CriteriaRanking,
    CrisisFlag,
    DatasetVersion,
    DatasetVersionMember,
    EligibilityQuestion,
    ImportanceRating,
    Participant,
    Persona,
    PersonaSelection,
    ProlificExclusion,
    ResponseRanking,
    Study,
    WeightVector,
)
from .personas import persona_scores, persona_text, persona_weights, select_diverse, split_balanced
from .prolific import prolific_id_hash, prolific_session_hash
from .signals import dataset_versions_withdrawn
from .statistics import importance_weights, plackett_luce_weights, rating_ranking_agreement

PARTICIPANT_ACTOR = "participant"
MAX_TEXT = 2000
PROLIFIC_ID_MAX = 64

# --- Study setup ------------------------------------------------------------------


@transaction.atomic
def consent_version_publish(*, study: Study, information_sheet: str, statements: str, actor=None) -> ConsentVersion:
    """A new version of the study's consent text (versions are never edited in place)."""
    if not information_sheet.strip() or not [s for s in statements.splitlines() if s.strip()]:
        raise InvalidAnswer("The information sheet and at least one consent statement are required.")
    Study.objects.select_for_update().get(pk=study.pk)  # serialise version numbers
    number = (study.consent_versions.aggregate(n=Max("version"))["n"] or 0) + 1
    version = ConsentVersion.objects.create(
        study=study, version=number, information_sheet=information_sheet.strip(), statements=statements.strip(),
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )
    audit_record(actor=actor, action="survey.consent_publish", target=version, details={"study": study.slug, "version": number})
    return version


@transaction.atomic
def study_save(*, study: Study, actor=None, changed: Iterable[str] = ()) -> Study:
    """Create or change a study (the admin calls this), with its audit row."""
    study.full_clean()
    created = study.pk is None
    study.save()
    audit_record(actor=actor, action="survey.study_create" if created else "survey.study_change", target=study,
                 details={"slug": study.slug, "changed": sorted(changed)})
    return study


# --- Participant flow --------------------------------------------------------------


def _clean_prolific(value) -> str:
    value = (value or "").strip()
    return value[:PROLIFIC_ID_MAX] if all(ch.isalnum() or ch in "-_" for ch in value) else ""


def participant_start(*, study: Study, nonce: str = "", prolific: dict | None = None, source: str = "") -> Participant:
    """Issue a participant (token, pseudonym, seed) for the study.

    Idempotent: the same start nonce (a double-clicked Start button) or the
    same Prolific submission (PROLIFIC_PID + SESSION_ID) returns the same
    participant."""
    prolific = prolific or {}
    pid = prolific_id_hash(study_id=study.pk, prolific_id=_clean_prolific(prolific.get("PROLIFIC_PID")))
    session_id = prolific_session_hash(study_id=study.pk, session_id=_clean_prolific(prolific.get("SESSION_ID")))
    if pid and ProlificExclusion.objects.filter(study=study, prolific_pid_hash=pid).exists():
        raise ProlificExcluded("This Prolific account has already taken part in this study and cannot start it again.")
    existing = _participant_existing(study, nonce, pid, session_id)
    if existing is not None:
        return existing
    if not study.is_active:
        raise SurveyError("This study is not taking new participants at the moment.")
    if pid:
        source = Participant.Source.PROLIFIC
    elif source not in Participant.Source.values or source == Participant.Source.PROLIFIC:
        # Only a Prolific id makes a Prolific participant (and earns the completion code);
        # a "source=prolific" parameter on its own does not.
        source = Participant.Source.DIRECT
    try:
        with transaction.atomic():
            # The row lock on the study hands out consecutive sequence numbers.
            Study.objects.filter(pk=study.pk).update(participant_counter=F("participant_counter") + 1)
            sequence = Study.objects.values_list("participant_counter", flat=True).get(pk=study.pk)
            return Participant.objects.create(
                study=study, sequence=sequence, source=source, start_nonce=nonce[:64], audit_subject=audit_subject_create(),
                prolific_pid_hash=pid, prolific_study_id=_clean_prolific(prolific.get("STUDY_ID")), prolific_session_hash=session_id,
            )
    except IntegrityError:
        existing = _participant_existing(study, nonce, pid, session_id)
        if existing is None:
            raise
        return existing


def _participant_existing(study, nonce, pid_hash, session_hash=""):
    if nonce:
        found = Participant.objects.filter(study=study, start_nonce=nonce[:64]).first()
        if found:
            return found
    if pid_hash:
        found = Participant.objects.filter(study=study, prolific_pid_hash=pid_hash).first()
        if found is None:
            if ProlificExclusion.objects.filter(study=study, prolific_pid_hash=pid_hash).exists():
                raise ProlificExcluded("This Prolific account has already taken part in this study and cannot start it again.")
            return None
        # The Prolific id alone is not a secret: hand back the participant only for the same submission.
        if session_hash and found.prolific_session_hash == session_hash:
            return found
        raise AlreadyStarted("This Prolific account has already started this study.")
    return None


def _lock_row(participant: Participant) -> Participant:
    locked = Participant.objects.select_for_update().select_related("study").filter(pk=participant.pk).first()
    if locked is None:
        raise StepNotAvailable("this participant has withdrawn")  # their row is gone
    return locked


def _lock(participant: Participant, step: str | None = None) -> Participant:
    """Lock the participant's row for this transaction and check they may answer ``step``."""
    locked = _lock_row(participant)
    if locked.status != Participant.Status.IN_PROGRESS:
        raise StepNotAvailable(f"this participant is {locked.get_status_display().lower()}")
    if step is not None and not selectors.participant_progress(locked).reachable(step):
        raise StepNotAvailable(f"the step {step!r} is not open yet")
    return locked


def consent_give(*, participant: Participant, consent_version_id, agreed: Iterable) -> ConsentRecord:
    """Record consent to the version the person saw; every statement must be ticked."""
    try:
        version = ConsentVersion.objects.get(pk=int(consent_version_id), study_id=participant.study_id)
    except (TypeError, ValueError, ConsentVersion.DoesNotExist):
        raise InvalidAnswer("This consent form does not belong to this study; please reload the page.") from None
    current = selectors.consent_version_current(participant.study)
    if current is None or version.pk != current.pk:
        # Consent counts only for the text the study asks people to agree to now.
        raise InvalidAnswer("The information and consent form has been updated since this page was opened. "
                            "Please reload the page, read the current version and tick the statements again. Nothing was saved.")
    statements = version.statement_list
    try:
        ticked = sorted({int(i) for i in agreed})
    except (TypeError, ValueError):
        raise InvalidAnswer("The consent answers were not understood; please tick the boxes again.") from None
    if ticked != list(range(len(statements))):
        if any(i < 0 or i >= len(statements) for i in ticked):
            raise InvalidAnswer("The consent answers do not match this consent form; please reload the page.")
        raise InvalidAnswer({"statements": "To take part, please tick every statement. If you would rather not, you can simply close this page."})
    with transaction.atomic():
        locked = _lock(participant)
        record = ConsentRecord.objects.filter(participant=locked).first()
        if record is not None:
            return record  # consent is given once; a resubmitted form changes nothing
        return ConsentRecord.objects.create(
            participant=locked, consent_version=version, statements_agreed=[statements[i] for i in ticked]
        )


def eligibility_submit(*, participant: Participant, answers: dict) -> bool:
    """True if eligible. Otherwise the person is screened out: their row and
    everything they answered are deleted; the study counts them, and a Prolific
    id is kept only as its exclusion hash (so it cannot start again)."""
    study_questions = list(EligibilityQuestion.objects.filter(study_id=participant.study_id))
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
    with transaction.atomic():
        locked = _lock(participant, "eligibility")
        if locked.eligible_at is not None:
            return True  # already through; a resubmitted old page changes nothing
        if eligible:
            locked.eligible_at = timezone.now()
            # The ranking screens are fixed now, so progress counts them from here on.
            locked.scenario_plan = selectors.scenario_plan_compute(locked)
            locked.save(update_fields=["eligible_at", "scenario_plan", "updated_at"])
            return True
        _prolific_exclude(locked)
        _participant_delete(locked)
        Study.objects.filter(pk=locked.study_id).update(screened_out_count=F("screened_out_count") + 1)
        return False


def _participant_delete(participant: Participant):
    """Delete the participant's row and everything that hangs off it, and their audit subject."""
    subject = participant.audit_subject if participant.audit_subject_id else None
    _admin_history_delete(participant)
    DatasetVersionMember.objects.filter(participant=participant).delete()
    _delete_answers(participant)
    Participant.objects.filter(pk=participant.pk).delete()
    audit_subject_erase(subject=subject)


def _prolific_exclude(participant: Participant):
    """Keep only the keyed hash of the Prolific id, apart from the participant, so it cannot start again."""
    if participant.prolific_pid_hash:
        ProlificExclusion.objects.get_or_create(study_id=participant.study_id, prolific_pid_hash=participant.prolific_pid_hash)
    participant.prolific_pid_hash = participant.prolific_session_hash = participant.prolific_study_id = ""


def _delete_answers(participant: Participant):
    for model in (Answer, ImportanceRating, ResponseRanking, CrisisFlag, CriteriaRanking, ConsentRecord, Persona):
        model.objects.filter(participant=participant).delete()


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
            action="survey.crisis_flag", actor_label=PARTICIPANT_ACTOR, target_type="survey.crisisflag",
            subject=_audit_subject(participant), details={"study": participant.study.slug, "item": item_key},
        )
    return True


def _audit_subject(participant: Participant):
    """The participant's audit subject (made on first use for rows from before subjects existed)."""
    if participant.audit_subject_id is None:
        participant.audit_subject = audit_subject_create()
        Participant.objects.filter(pk=participant.pk).update(audit_subject=participant.audit_subject)
    return participant.audit_subject


def _save_choice_items(participant: Participant, items, data: dict, step: str) -> bool:
    """Validate and upsert a page of choice items; True if free text matched crisis language."""
    cleaned = []
    errors = {}
    for item in items:
        entry = data.get(item.key) or {}
        try:
            value, text = _validate_choice(item, entry.get("value"), entry.get("text", ""))
        except InvalidAnswer as exc:
            errors.update(exc.errors)
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
    with transaction.atomic():
        locked = _lock(participant, step)
        _upsert_answers([Answer(participant=locked, item_key=item.key, value=value, text=text) for item, value, text, _ in cleaned])
        crisis = False
        for item, _, _, typed in cleaned:
            crisis = _crisis_check(locked, item.key, typed) or crisis
        if any(item.correct for item, _, _, _ in cleaned):
            _attention_update(locked)
        return crisis


def background_save(*, participant: Participant, data: dict) -> bool:
    """data: {item_key: {"value": key or [keys], "text": str}}. Returns True if free text needs the helplines shown."""
    return _save_choice_items(participant, questions.BACKGROUND, data, "background")


def attitudes_save(*, participant: Participant, data: dict) -> bool:
    """The five attitude items (values "1".."5") and the first attention check."""
    return _save_choice_items(participant, (*questions.ATTITUDES, questions.ATTENTION_CHECKS[0]), data, "attitudes")


def _attention_update(participant: Participant):
    given = dict(participant.answers.filter(item_key__startswith="attention.").values_list("item_key", "value"))
    failures = sum(1 for item in questions.ATTENTION_CHECKS if item.key in given and given[item.key] != item.correct)
    Participant.objects.filter(pk=participant.pk).update(
        attention_failures=failures, attention_flagged=failures >= questions.ATTENTION_FLAG_AFTER
    )


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
        errors.update(exc.errors)
    if errors:
        raise InvalidAnswer(errors)
    shown = [c.key for c in selectors.criteria_shown_order(participant, criteria, "importance")]
    with transaction.atomic():
        locked = _lock(participant, "importance")
        ImportanceRating.objects.bulk_create(
            [ImportanceRating(participant=locked, criterion=c, rating=r, shown_order=shown) for c, r in clean.items()],
            update_conflicts=True, unique_fields=["participant", "criterion"], update_fields=["rating", "shown_order", "updated_at"],
        )
        _upsert_answers([Answer(participant=locked, item_key=check.key, value=attention_value)])
        _attention_update(locked)


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


def criteria_ranking_save(*, participant: Participant, ranks: dict) -> CriteriaRanking:
    """ranks: {criterion key: "1".."k"}, a full ranking of the therapeutic criteria."""
    criteria = selectors.study_criteria()
    ranking = _ranking_from_ranks(ranks, [c.key for c in criteria], "criterion", {c.key: c.name for c in criteria})
    shown = [c.key for c in selectors.criteria_shown_order(participant, criteria, "ranking")]
    with transaction.atomic():
        locked = _lock(participant, "criteria-ranking")
        CriteriaRanking.objects.bulk_create(
            [CriteriaRanking(participant=locked, ranking=ranking, shown_order=shown)],
            update_conflicts=True, unique_fields=["participant"], update_fields=["ranking", "updated_at"],
        )
        return CriteriaRanking.objects.get(participant=locked)


def scenarios_begin(*, participant: Participant) -> list[dict]:
    """Fix the participant's ranking screens (scenarios, responses, criteria) and mark the support note read."""
    with transaction.atomic():
        locked = _lock(participant)
        progress = selectors.participant_progress(locked)
        if not progress.reachable("before-scenarios"):
            raise StepNotAvailable("the scenario section is not open yet")
        fields = []
        if locked.scenario_plan is None:
            locked.scenario_plan = selectors.scenario_plan_compute(locked)
            fields.append("scenario_plan")
        if locked.scenarios_intro_at is None:
            locked.scenarios_intro_at = timezone.now()
            fields.append("scenarios_intro_at")
        if fields:
            locked.save(update_fields=[*fields, "updated_at"])
        return locked.scenario_plan


def scenario_plan_fix(participant: Participant) -> Participant:
    """Fix the plan without marking the note read (so progress counts the right number of screens)."""
    if participant.scenario_plan is not None:
        return participant
    with transaction.atomic():
        locked = _lock_row(participant)
        if locked.scenario_plan is None and locked.is_active:
            locked.scenario_plan = selectors.scenario_plan_compute(locked)
            locked.save(update_fields=["scenario_plan", "updated_at"])
        return locked


def response_ranking_save(*, participant: Participant, number: int, ranks: dict | None, skip: bool = False) -> ResponseRanking:
    """Screen ``number`` (from 1): ranks {response id: "1".."K"}, or skip=True."""
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
    criterion = Criterion.objects.get(key=entry["criterion"])
    with transaction.atomic():
        locked = _lock(participant, f"scenario-{number}")
        ResponseRanking.objects.bulk_create(
            [ResponseRanking(participant=locked, position=number - 1, scenario_id=entry["scenario"], criterion=criterion,
                             shown_order=entry["responses"], ranking=ranking, skipped=skip)],
            update_conflicts=True, unique_fields=["participant", "position"], update_fields=["ranking", "skipped", "updated_at"],
        )
        return ResponseRanking.objects.get(participant=locked, position=number - 1)


def participant_complete(*, participant: Participant, feedback: str = "") -> bool:
    """Finish: store the closing feedback, mark completed and build the persona.
    Returns True if the feedback needs the helplines shown. Idempotent."""
    feedback = (feedback or "").strip()
    if len(feedback) > MAX_TEXT:
        raise InvalidAnswer({"feedback": f"Please keep this under {MAX_TEXT} characters."})
    with transaction.atomic():
        locked = _lock_row(participant)
        if locked.status == Participant.Status.COMPLETED:
            return False
        locked = _lock(participant, "closing")
        _upsert_answers([Answer(participant=locked, item_key=questions.FEEDBACK_KEY, value=None, text=feedback)])
        crisis = _crisis_check(locked, questions.FEEDBACK_KEY, feedback)
        locked.status = Participant.Status.COMPLETED
        locked.completed_at = timezone.now()
        locked.save(update_fields=["status", "completed_at", "updated_at"])
        persona_build(participant=locked)
        return crisis


# --- Withdrawal ---------------------------------------------------------------------


def participant_withdraw(*, participant: Participant, via: str, actor=None) -> list[int]:
    """Withdraw a participant at any stage, leaving nothing that links back to them.

    In one transaction: mark every dataset version that contained them
    (``affected_by_withdrawal_at``), delete those versions' files from disk
    (``files_deleted_at``; the rows keep the paths and hashes), turn a Prolific
    id into an exclusion hash, delete the participant's row with everything
    that hangs off it (answers, consent, flags, persona, dataset memberships,
    admin history) and their audit subject, and write the audit row under that
    subject's key, which then leads nowhere. Receivers of
    ``survey.signals.dataset_versions_withdrawn`` (training) mark what was built
    from the versions. After commit the study's cached report is dropped.
    Returns the ids of the versions newly marked. Idempotent: a participant
    already gone returns []."""
    with transaction.atomic():
        locked = Participant.objects.select_for_update().select_related("study").filter(pk=participant.pk).first()
        if locked is None or locked.status == Participant.Status.WITHDRAWN:
            return []
        now = timezone.now()
        study = locked.study
        containing = list(DatasetVersion.objects.filter(pk__in=DatasetVersionMember.objects.filter(participant=locked)
                                                        .values("dataset_version_id")).order_by("pk"))
        affected = [v.pk for v in containing if v.affected_by_withdrawal_at is None]
        DatasetVersion.objects.filter(pk__in=affected).update(affected_by_withdrawal_at=now)
        files_deleted = _dataset_files_delete([v for v in containing if v.files_deleted_at is None], now)
        dataset_versions_withdrawn.send(sender=Participant, version_ids=[v.pk for v in containing], at=now,
                                        texts=_participant_identifiers(locked))
        previous_status = locked.status
        subject = _audit_subject(locked)
        _prolific_exclude(locked)
        _participant_delete(locked)
        Study.objects.filter(pk=study.pk).update(withdrawn_count=F("withdrawn_count") + 1)
        audit_record(
            actor=actor, actor_label="" if actor is not None else PARTICIPANT_ACTOR,
            action="survey.participant_withdraw", target_type="survey.participant", subject=subject,
            details={"study": study.slug, "via": via, "previous_status": previous_status,
                     "dataset_versions_marked": affected, "files_deleted": files_deleted},
        )
        selectors.study_report_forget(study)
        transaction.on_commit(lambda: selectors.study_report_forget(study))
        return affected


def _participant_identifiers(participant: Participant) -> list[str]:
    """What would link a file back to this participant: for receivers that scrub derived files."""
    return [participant.pseudonym, f"survey-{participant.pseudonym}", participant.token, participant.withdrawal_code]


def _dataset_files_delete(versions: list[DatasetVersion], now) -> int:
    """Delete the versions' files from disk (the rows keep paths and hashes as the record)."""
    deleted = 0
    for version in versions:
        for entry in version.files:
            path = Path(entry["path"])
            if path.is_file():
                path.unlink(missing_ok=True)
                deleted += 1
        DatasetVersion.objects.filter(pk=version.pk).update(files_deleted_at=now)
    return deleted


def _admin_history_delete(participant: Participant):
    """Django admin's change history names objects (a persona's name carries the pseudonym);
    the entries about this participant's rows go with them."""
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    objects = {Participant: [participant.pk],
               Persona: list(Persona.objects.filter(participant=participant).values_list("pk", flat=True)),
               CrisisFlag: list(CrisisFlag.objects.filter(participant=participant).values_list("pk", flat=True))}
    for model, pks in objects.items():
        if pks:
            LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(model),
                                    object_id__in=[str(pk) for pk in pks]).delete()


@transaction.atomic
def crisis_flag_review(*, flag: CrisisFlag, actor) -> CrisisFlag:
    flag = CrisisFlag.objects.select_for_update().select_related("participant").get(pk=flag.pk)
    if flag.reviewed_at is None:
        flag.reviewed_at = timezone.now()
        flag.reviewed_by = actor
        flag.save(update_fields=["reviewed_at", "reviewed_by"])
        audit_record(actor=actor, action="survey.crisis_flag_review", target_type="survey.crisisflag",
                     subject=_audit_subject(flag.participant), details={"item": flag.item_key})
    return flag


# --- Dataset versions -------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _participant_ids(participants) -> list[int]:
    ids, pseudonyms = set(), set()
    for item in participants:
        if isinstance(item, Participant):
            ids.add(item.pk)
        elif isinstance(item, int):
            ids.add(item)
        elif isinstance(item, str):
            pseudonyms.add(item.removeprefix("survey-"))
        else:
            raise SurveyError(f"participants must be Participant objects, ids or pseudonyms, not {type(item).__name__}")
    if pseudonyms:
        found = dict(Participant.objects.filter(pseudonym__in=pseudonyms).values_list("pseudonym", "pk"))
        unknown = pseudonyms - set(found)
        if unknown:
            raise SurveyError(f"unknown participant pseudonyms: {', '.join(sorted(unknown)[:5])} "
                              "(a participant who has withdrawn is gone; build the dataset without them)")
        ids |= set(found.values())
    return sorted(ids)


def dataset_version_create(*, kind: str, participants, files, actor=None, study: Study | None = None, note: str = "") -> DatasetVersion:
    """Record a dataset built from these participants' data (files already written).

    Refuses (SurveyError) if any of them has withdrawn; the check and the
    membership rows are written under the participants' row locks, so a
    withdrawal either happens before (and is refused here) or after (and
    marks this version)."""
    if kind not in DatasetVersion.Kind.values:
        raise SurveyError(f"unknown dataset kind {kind!r}; use one of {', '.join(DatasetVersion.Kind.values)}")
    paths = [Path(p) for p in files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SurveyError(f"dataset files not found: {', '.join(missing)}")
    file_info = [{"path": str(p), "sha256": _sha256_file(p), "bytes": p.stat().st_size} for p in paths]
    if len(file_info) == 1:
        digest = file_info[0]["sha256"]
    else:
        digest = hashlib.sha256("\n".join(sorted(f"{f['sha256']}  {Path(f['path']).name}" for f in file_info)).encode()).hexdigest()
    ids = _participant_ids(participants)
    with transaction.atomic():
        rows = list(Participant.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", "status"))
        unknown = set(ids) - {pk for pk, _ in rows}
        if unknown:
            raise SurveyError(f"unknown participant ids: {', '.join(map(str, sorted(unknown)[:5]))} "
                              "(a participant who has withdrawn is gone; build the dataset without them)")
        withdrawn = [pk for pk, status in rows if status == Participant.Status.WITHDRAWN]
        if withdrawn:
            raise SurveyError(f"{len(withdrawn)} of these participants have withdrawn; build the dataset without them")
        version = DatasetVersion.objects.create(
            kind=kind, study=study, created_by=actor if actor is not None and actor.is_authenticated else None,
            files=file_info, sha256=digest, participant_count=len(ids), note=note,
        )
        DatasetVersionMember.objects.bulk_create(DatasetVersionMember(dataset_version=version, participant_id=pk) for pk in ids)
        audit_record(
            actor=actor, action="survey.dataset_version_create", target=version,
            details={"kind": kind, "study": study.slug if study else None, "files": [Path(f["path"]).name for f in file_info],
                     "sha256": digest, "participants": len(ids), "note": note},
        )
    return version


def export_path(study: Study | None, kind: str, suffix: str) -> Path:
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
    folder = Path(settings.ARTIFACT_ROOT) / "survey" / (study.slug if study else "all")
    return folder / f"{kind}-{stamp}-{secrets.token_hex(3)}{suffix}"


def _write_atomic(path: Path, content: str):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _dataset_from_file(*, path, content, kind, participants, actor, study, note) -> DatasetVersion:
    _write_atomic(path, content)
    try:
        return dataset_version_create(kind=kind, participants=participants, files=[path], actor=actor, study=study, note=note)
    except SurveyError:
        Path(path).unlink(missing_ok=True)  # a participant withdrew while the file was written
        raise


def _exportable(study: Study):
    """Participants whose answers may be exported: consented, not screened out, not withdrawn."""
    return (Participant.objects.filter(study=study, status__in=[Participant.Status.IN_PROGRESS, Participant.Status.COMPLETED],
                                       consent__isnull=False)
            .select_related("consent__consent_version").prefetch_related("answers", "importance_ratings__criterion")
            .order_by("sequence"))


def survey_answers_export(*, study: Study, actor=None, include_free_text: bool = False, path=None) -> DatasetVersion:
    """CSV, one row per participant under their pseudonym; free text only when asked."""
    criteria = selectors.study_criteria()
    participants = list(_exportable(study))
    rankings = dict(CriteriaRanking.objects.filter(participant__in=participants).values_list("participant_id", "ranking"))
    flagged = set(CrisisFlag.objects.filter(participant__in=participants).values_list("participant_id", flat=True))
    choice_items = (*questions.BACKGROUND, *questions.ATTITUDES, *questions.ATTENTION_CHECKS)
    header = ["participant", "status", "source", "consent_version", "attention_failures", "attention_flagged", "crisis_flagged"]
    header += [i.key for i in choice_items]
    header += [f"importance.{c.key}" for c in criteria] + [f"rank.{c.key}" for c in criteria]
    text_keys = [i.key for i in questions.BACKGROUND if i.text_choice] + [questions.FEEDBACK_KEY]
    if include_free_text:
        header += [f"{k}.text" for k in text_keys]
    buffer = io.StringIO()
    writer = safe_csv_writer(buffer)
    writer.writerow(header)
    for p in participants:
        answers = {a.item_key: a for a in p.answers.all()}
        ratings = {r.criterion.key: r.rating for r in p.importance_ratings.all()}
        ranking = rankings.get(p.pk) or []
        row = [p.pseudonym, p.status, p.source, p.consent.consent_version.version, p.attention_failures,
               int(p.attention_flagged), int(p.pk in flagged)]
        for item in choice_items:
            value = answers[item.key].value if item.key in answers else ""
            row.append(";".join(value) if isinstance(value, list) else value)
        row += [ratings.get(c.key, "") for c in criteria]
        row += [ranking.index(c.key) + 1 if c.key in ranking else "" for c in criteria]
        if include_free_text:
            row += [answers[k].text if k in answers else "" for k in text_keys]
        writer.writerow(row)
    note = "with free text" if include_free_text else "no free text"
    return _dataset_from_file(path=Path(path) if path else export_path(study, "survey-answers", ".csv"), content=buffer.getvalue(),
                              kind=DatasetVersion.Kind.SURVEY_ANSWERS, participants=participants, actor=actor, study=study, note=note)


def criteria_rankings_export(*, study: Study, actor=None, path=None) -> DatasetVersion:
    """CSV, one row per participant and criterion: rank (1 = most important), rating, shown position."""
    participants = [p for p in _exportable(study)]
    rows = CriteriaRanking.objects.filter(participant__in=participants).select_related("participant").order_by("participant__sequence")
    ratings = {(pid, key): rating for pid, key, rating in
               ImportanceRating.objects.filter(participant__in=participants).values_list("participant_id", "criterion__key", "rating")}
    buffer = io.StringIO()
    writer = safe_csv_writer(buffer)
    writer.writerow(["participant", "criterion", "rank", "importance", "shown_position"])
    included = []
    for record in rows:
        included.append(record.participant)
        for rank, key in enumerate(record.ranking, start=1):
            shown = record.shown_order.index(key) + 1 if key in record.shown_order else ""
            writer.writerow([record.participant.pseudonym, key, rank, ratings.get((record.participant_id, key), ""), shown])
    return _dataset_from_file(path=Path(path) if path else export_path(study, "criteria-rankings", ".csv"),
                              content=buffer.getvalue(), kind=DatasetVersion.Kind.CRITERIA_RANKINGS, participants=included,
                              actor=actor, study=study, note="")


def response_rankings_export(*, study: Study, actor=None, path=None) -> DatasetVersion:
    """JSONL in the training pipeline's survey format, one line per ranked screen:
    {"prompt", "scenario_id", "criterion", "ranking": [texts best first], "participant", "shown_order": [texts as shown]}."""
    participants = list(_exportable(study))
    rows = (ResponseRanking.objects.filter(participant__in=participants, skipped=False)
            .select_related("participant", "scenario", "criterion").order_by("participant__sequence", "position"))
    rows = list(rows)
    texts = dict(Response.objects.filter(pk__in={pk for r in rows for pk in r.shown_order}).values_list("pk", "text"))
    lines, included = [], {}
    for record in rows:
        included[record.participant_id] = record.participant
        lines.append(json.dumps({
            "prompt": record.scenario.text,
            "scenario_id": f"s{record.scenario_id}",
            "criterion": record.criterion.key,
            "ranking": [texts[pk] for pk in record.ranking],
            "participant": record.participant.pseudonym,
            "shown_order": [texts[pk] for pk in record.shown_order],
        }, ensure_ascii=False))
    content = "".join(line + "\n" for line in lines)
    return _dataset_from_file(path=Path(path) if path else export_path(study, "response-rankings", ".jsonl"), content=content,
                              kind=DatasetVersion.Kind.RESPONSE_RANKINGS, participants=list(included.values()), actor=actor,
                              study=study, note=f"{len(lines)} rankings")


# --- Personas --------------------------------------------------------------------------


def _profile(participant: Participant, criteria: list[Criterion]) -> tuple[dict, float | None]:
    answers = {a.item_key: a.value for a in participant.answers.all()}
    ratings = {r.criterion.key: r.rating for r in participant.importance_ratings.select_related("criterion")}
    record = CriteriaRanking.objects.filter(participant=participant).first()
    ranking = record.ranking if record else None
    profile = {
        "background": {i.key.split(".", 1)[1]: answers.get(i.key) for i in questions.BACKGROUND},
        "attitudes": {i.key.split(".", 1)[1]: answers.get(i.key) for i in questions.ATTITUDES},
        "ratings": ratings,
        "ranking": ranking,
        "names": {c.key: c.name for c in criteria},
        "attention_failures": participant.attention_failures,
    }
    tau = None
    keys = [c.key for c in criteria]
    if ranking and set(ratings) == set(keys):
        import numpy as np

        agreement = rating_ranking_agreement(np.array([[ratings[k] for k in keys]]), [[keys.index(k) for k in ranking]])
        tau = agreement.taus[0] if agreement.taus else None
    return profile, tau


def persona_build(*, participant: Participant, criteria: list[Criterion] | None = None) -> Persona:
    """Build (or refresh) the persona of a completed participant. A text a
    researcher edited is kept; the scores and weights are refreshed."""
    criteria = criteria if criteria is not None else selectors.study_criteria()
    profile, tau = _profile(participant, criteria)
    completeness, consistency, quality = persona_scores(profile, tau)
    values = dict(weights=persona_weights(profile["ratings"]), completeness=completeness, consistency=consistency, quality=quality)
    persona = Persona.objects.filter(participant=participant).first()
    if persona is None:
        return Persona.objects.create(participant=participant, text=persona_text(profile), **values)
    if not persona.edited:
        values["text"] = persona_text(profile)
    for name, value in values.items():
        setattr(persona, name, value)
    persona.save()
    return persona


def personas_build(*, study: Study, actor=None) -> int:
    """(Re)build the persona of every completed participant of the study."""
    criteria = selectors.study_criteria()
    count = 0
    with transaction.atomic():
        for participant in Participant.objects.filter(study=study, status=Participant.Status.COMPLETED).order_by("sequence"):
            persona_build(participant=participant, criteria=criteria)
            count += 1
        audit_record(actor=actor, action="survey.personas_build", target=study, details={"personas": count})
    return count


@transaction.atomic
def persona_update(*, persona: Persona, text: str, split: str | None = None, actor=None) -> Persona:
    """A researcher's edit of a persona's text (kept on rebuild) or split."""
    text = (text or "").strip()
    if not text:
        raise InvalidAnswer({"text": "A persona needs some text."})
    changed = []
    if text != persona.text:
        persona.text, persona.edited = text, True
        changed.append("text")
    if split is not None and split != persona.split:
        if split not in Persona.Split.values:
            raise InvalidAnswer({"split": f"split must be one of {Persona.Split.values}"})
        persona.split, persona.selected = split, bool(split)
        changed.append("split")
    if changed:
        persona.save()
        audit_record(actor=actor, action="survey.persona_edit", target_type="survey.persona",
                     subject=_audit_subject(persona.participant), details={"changed": changed})
    return persona


def _strata(participants: list[Participant]) -> list[tuple[str, str, str]]:
    keys = ("background.gender", "background.ethnicity")
    answers = {}
    for pid, key, value in Answer.objects.filter(participant__in=participants, item_key__in=keys).values_list("participant_id", "item_key", "value"):
        answers[(pid, key)] = value
    return [(p.source, answers.get((p.pk, keys[0]), ""), answers.get((p.pk, keys[1]), "")) for p in participants]


def personas_select(*, study: Study, total: int | None = None, train: int | None = None, test: int | None = None,
                    seed: int = 0, min_quality: float = 0.5, actor=None) -> PersonaSelection:
    """Choose a diverse subset of good personas and split it train/test.

    Candidates: personas of completed participants not flagged by the
    attention checks, with quality >= min_quality. Selection: greedy max-min
    TF-IDF distance (deterministic for a seed). Split: balanced by source,
    gender and ethnicity. If there are fewer candidates than ``total``, all
    are selected and the split keeps the train:test proportion."""
    total = study.persona_total if total is None else total
    train = study.persona_train if train is None else train
    test = study.persona_test if test is None else test
    if total <= 0 or train < 0 or test < 0 or train + test != total:
        raise InvalidAnswer("Persona sizes must be positive and train + test must equal the total.")
    candidates = list(
        Persona.objects.filter(participant__study=study, participant__status=Participant.Status.COMPLETED,
                               participant__attention_flagged=False, quality__gte=min_quality)
        .select_related("participant").order_by("participant__sequence")
    )
    if not candidates:
        raise SurveyError("No personas qualify for selection yet (build them first, or lower the minimum quality).")
    picked = [candidates[i] for i in select_diverse([p.text for p in candidates], total, seed=seed)]
    n_test = test if len(picked) == total else round(len(picked) * test / total)
    labels = split_balanced(_strata([p.participant for p in picked]), n_test=n_test, seed=seed)
    with transaction.atomic():
        Persona.objects.filter(participant__study=study).update(selected=False, split="")
        for persona, label in zip(picked, labels):
            Persona.objects.filter(pk=persona.pk).update(selected=True, split=label)
        selection = PersonaSelection.objects.create(
            study=study, seed=seed, total=total, train=train, test=test, min_quality=min_quality, candidates=len(candidates),
            details={"selected": len(picked), "train": labels.count("train"), "test": labels.count("test")},
            created_by=actor if actor is not None and actor.is_authenticated else None,
        )
        audit_record(actor=actor, action="survey.personas_select", target=selection,
                     details={"study": study.slug, "seed": seed, **selection.details, "candidates": len(candidates)})
    return selection


def personas_export_jsonl(*, path, study: Study | None = None, split: str | None = None, actor=None, note: str = "") -> DatasetVersion:
    """Write the selected personas as {"persona_id", "text", "split", "weights"} lines
    (training.pipeline.io.load_personas) and record the DatasetVersion.
    ``study`` None: every study's; ``split`` None: train and test."""
    personas = Persona.objects.filter(selected=True, participant__status=Participant.Status.COMPLETED).exclude(split="")
    if study is not None:
        personas = personas.filter(participant__study=study)
    if split is not None:
        personas = personas.filter(split=split)
    personas = list(personas.select_related("participant").order_by("participant__study_id", "participant__sequence"))
    if not personas:
        raise SurveyError("There are no selected personas to export; build and select personas first.")
    content = "".join(
        json.dumps({"persona_id": p.persona_id, "text": p.text, "split": p.split, "weights": p.weights}, ensure_ascii=False) + "\n"
        for p in personas
    )
    return _dataset_from_file(path=Path(path), content=content, kind=DatasetVersion.Kind.PERSONAS,
                              participants=[p.participant for p in personas], actor=actor, study=study,
                              note=note or f"{len(personas)} personas" + (f" ({split})" if split else ""))


def personas_export_dataset(*, path, actor=None, study: Study | None = None) -> DatasetVersion:
    """What orchestration calls to get the survey's personas for a training run."""
    return personas_export_jsonl(path=path, study=study, actor=actor)


# --- Weight vectors ---------------------------------------------------------------------


def weight_vector_create(*, study: Study, name: str, cohort: dict | None = None, method: str = WeightVector.Method.PLACKETT_LUCE,
                         exclude_flagged: bool = False, actor=None, n_boot: int = 200, seed: int = 0) -> WeightVector:
    """Compute a weight vector over the criteria from a cohort of completed
    participants and store it as the next version of ``name``.

    plackett_luce: w_c = exp(θ_c) / Σ exp(θ_j) from the criteria rankings
    (survey.statistics); importance: mean ratings normalised to sum 1."""
    from django.utils.text import slugify

    if not name or slugify(name) != name:
        raise InvalidAnswer({"name": "Use a short name of lower-case letters, digits and hyphens, e.g. 'depression'."})
    if method not in WeightVector.Method.values:
        raise InvalidAnswer({"method": f"method must be one of {', '.join(WeightVector.Method.values)}"})
    cohort = selectors.cohort_validate(cohort or {})
    criteria = selectors.study_criteria()
    participants = selectors.cohort_participants(study, cohort, exclude_flagged=exclude_flagged)
    ratings, rankings = selectors.cohort_matrices(participants, criteria)
    if method == WeightVector.Method.PLACKETT_LUCE:
        members = [p for p, r in zip(participants, rankings) if r is not None]
        estimate = plackett_luce_weights([r for r in rankings if r is not None], len(criteria), n_boot=n_boot, seed=seed)
    else:
        import numpy as np

        complete = ~np.isnan(ratings).any(axis=1) if len(participants) else np.zeros(0, dtype=bool)
        members = [p for p, ok in zip(participants, complete) if ok]
        estimate = importance_weights(ratings[complete], n_boot=max(n_boot, 200), seed=seed) if members else None
    if not members:
        raise InvalidAnswer({"cohort": "No completed participants in this cohort have the answers this method needs."})
    weights = {c.key: round(float(w), 6) for c, w in zip(criteria, estimate.value)}
    intervals = {c.key: [round(float(lo), 6), round(float(hi), 6)] for c, lo, hi in zip(criteria, estimate.low, estimate.high)}
    with transaction.atomic():
        Study.objects.select_for_update().get(pk=study.pk)  # serialise version numbers
        number = (WeightVector.objects.filter(study=study, name=name).aggregate(n=Max("version"))["n"] or 0) + 1
        document = {"study": study.slug, "name": name, "version": number, "method": method, "cohort": cohort,
                    "exclude_flagged": exclude_flagged, "participants": len(members), "weights": weights, "intervals": intervals,
                    "formula": "w_c = exp(theta_c) / sum_j exp(theta_j), theta = Plackett-Luce MLE (choix.ilsr_rankings, alpha=0.01)"
                    if method == WeightVector.Method.PLACKETT_LUCE else "w_c = mean rating_c / sum_j mean rating_j"}
        path = export_path(study, f"weights-{name}-v{number}", ".json")
        version = _dataset_from_file(path=path, content=json.dumps(document, indent=2) + "\n", kind=DatasetVersion.Kind.WEIGHT_VECTOR,
                                     participants=members, actor=actor, study=study, note=f"weight vector {name} v{number}")
        vector = WeightVector.objects.create(
            study=study, name=name, version=number, cohort=cohort, method=method, weights=weights, intervals=intervals,
            participant_count=len(members), dataset_version=version,
            created_by=actor if actor is not None and actor.is_authenticated else None,
        )
        audit_record(actor=actor, action="survey.weight_vector_create", target=vector,
                     details={"study": study.slug, "name": name, "version": number, "method": method, "cohort": cohort})
    return vector
