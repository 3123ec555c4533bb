"""How a participant's page is saved, and the response-ranking screens.

The save protocol every page shares (the questionnaire pages in
``questionnaire`` use it too): a page's POST looks the link up and locks the
participant's row in one query (``participant_lock_by_token``) and runs the
save in that transaction (``participant_atomic``); the save checks the
participant may answer that step (``participant_lock``), upserts on the answer
table's unique key (INSERT ... ON CONFLICT UPDATE), so a refresh, the back
button, a double submit or a second tab updates the one row instead of adding
another, and records the step as done on the participant's row
(``participant_step_saved``: steps_done) in the same transaction. A withdrawal
takes the same lock, so it never interleaves with a save. Bad input raises
InvalidAnswer before anything is written.
"""
from __future__ import annotations

from contextlib import nullcontext

from django.db import connection, transaction
from django.db.models import BooleanField, Count, IntegerField, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from .. import questions, selectors
from ..exceptions import InvalidAnswer, StepNotAvailable
from ..models import Answer, Participant, ResponseRanking
from ..prepared import INTEGER, PreparedLookup, PreparedSubquery, PreparedUpdate, PreparedUpsert


def _locked_queryset():
    # FOR UPDATE OF the participant only: the study row stays free, so participants of one study
    # never wait for each other; order_by(): no join for the model's default order.
    return Participant.objects.select_for_update(of=("self",)).defer(*selectors.PAGE_DEFERRED).order_by()


# The lookup of a page's POST, compiled once (survey.prepared).
_LOCK_BY_TOKEN = PreparedLookup(lambda token: _locked_queryset().select_related("study").filter(token=token))


def _mark_locked(participant: Participant) -> Participant:
    # The transaction (atomic block) that holds the lock: a service called inside it uses this row as locked.
    participant.locked_by = connection.atomic_blocks[-1]
    return participant


def participant_locked_here(participant: Participant) -> bool:
    """True while the transaction that locked this instance's row (participant_lock_by_token) is open."""
    block = getattr(participant, "locked_by", None)
    return block is not None and any(b is block for b in connection.atomic_blocks)


def participant_atomic(participant: Participant):
    """The transaction of a save: the caller's own when it already holds the participant's row lock
    (a page's POST, which locked it with the lookup), else a new one."""
    return nullcontext() if participant_locked_here(participant) else transaction.atomic()


def participant_lock_by_token(token: str) -> Participant | None:
    """A participant page's POST: look the link up and lock the row in one query, for the
    transaction the caller has open (the services then save under this lock). None when
    no such link (or the participant withdrew: their row is gone)."""
    if not token or len(token) > 64:
        return None
    locked = _LOCK_BY_TOKEN.first(token)
    return _mark_locked(locked) if locked is not None else None


def participant_lock_row(participant: Participant) -> Participant:
    """Lock the participant's row (only theirs) and return it fresh; the instance itself when this
    transaction locked it already. Raises StepNotAvailable when the row is gone (withdrawn)."""
    if participant_locked_here(participant):
        return participant
    queryset = _locked_queryset().filter(pk=participant.pk)
    study_cached = Participant._meta.get_field("study").is_cached(participant)
    if not study_cached:
        queryset = queryset.select_related("study")
    locked = queryset.first()
    if locked is None:
        raise StepNotAvailable("this participant has withdrawn")  # their row is gone
    if study_cached and locked.study_id == participant.study_id:
        locked.study = participant.study  # read with the participant a moment ago; this transaction does not write it
    return _mark_locked(locked)


def participant_lock(participant: Participant, step: str | None = None) -> Participant:
    """Lock the participant's row for this transaction and check they may answer ``step``
    (the progress is on the row: one query, none when the caller locked it already).

    The progress as it will be once the caller's save commits (``step`` done) is left on
    the caller's instance as ``participant.progress_after_save``, so the page can say where
    the person goes next without asking the database again."""
    locked = participant_lock_row(participant)
    participant_step_check(participant, locked, step)
    return locked


def participant_step_check(participant: Participant, locked: Participant, step: str | None) -> None:
    """Raise StepNotAvailable unless the locked participant is answering and ``step`` is open."""
    if locked.status != Participant.Status.IN_PROGRESS:
        raise StepNotAvailable(f"this participant is {locked.get_status_display().lower()}")
    progress = selectors.participant_progress(locked)
    if step is not None and not progress.reachable(step):
        raise StepNotAvailable(f"the step {step!r} is not open yet")
    participant.progress_after_save = progress.with_done(step) if step is not None else progress


def participant_step_saved(participant: Participant, locked: Participant, step: str, *, attention: bool = False,
                           **fields) -> None:
    """Record on the locked row that ``step`` is saved, with ``fields`` (and, with ``attention``,
    the count of failed attention checks), in one UPDATE in the save's transaction; no query
    when nothing changes (a resubmitted page). The new progress is left on the caller's
    instance as ``progress_after_save``."""
    steps = selectors.participant_steps(locked)
    done = locked.steps_done
    if step in steps and done == steps.index(step):
        done += 1  # the next step saved; a done one saved again (Back, a double submit) changes nothing
    for name, value in fields.items():
        setattr(locked, name, value)
    steps = selectors.participant_steps(locked)  # a plan fixed by this save fixes the steps
    # The closing page is done with completion only.
    done = len(steps) if locked.status == Participant.Status.COMPLETED else min(done, len(steps) - 1)
    if done != locked.steps_done:
        fields["steps_done"] = done
    if attention:
        count, params = _ATTENTION_FAILURES.sql(locked.pk)
        fields.update(attention_failures=RawSQL(f"COALESCE(({count}), 0)", params, output_field=IntegerField()),
                      attention_flagged=RawSQL(f"COALESCE(({count}), 0) >= %s", (*params, questions.ATTENTION_FLAG_AFTER),
                                               output_field=BooleanField()))
    if fields:
        fields["updated_at"] = timezone.now()
        _PARTICIPANT_UPDATE.update(locked.pk, **fields)
        locked.steps_done = done
    participant.progress_after_save = selectors.participant_progress(locked)


_PARTICIPANT_UPDATE = PreparedUpdate(Participant)


def _attention_failed(participant_id):
    failed = Q(pk__in=[])
    for item in questions.ATTENTION_CHECKS:
        failed |= Q(item_key=item.key) & ~Q(value=item.correct)
    return Answer.objects.filter(failed, participant_id=participant_id).order_by().values("participant").annotate(n=Count("pk")).values("n")


# The participant's failed attention checks, counted in the UPDATE that stores them; compiled once
# (building the count's query cost eight times the rest of the UPDATE).
_ATTENTION_FAILURES = PreparedSubquery(_attention_failed, kinds=(INTEGER,))


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


_RESPONSE_RANKING_UPSERT = PreparedUpsert(ResponseRanking, unique_fields=["participant", "position"],
                                          update_fields=["ranking", "skipped", "updated_at"])


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
        _RESPONSE_RANKING_UPSERT.save([row])
        participant_step_saved(participant, locked, f"scenario-{number}")
        return row


