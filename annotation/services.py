"""Writes of the annotation app. Every state change and its audit row share one
transaction (core.services.audit_record).

The services other parts of the platform call:

- ``rating_study_create`` — set up a blinded A/B study (items, balanced
  assignments, per-clinician left/right order); researchers use it through the
  admin, the training pipeline's orchestration calls it directly.
- ``rating_study_open`` / ``rating_study_close``; opening is refused while
  the self-identification screen has unreviewed hits
  (``rating_item_screen_review`` keeps or excludes a flagged item,
  ``rating_study_screen`` runs the screen again).
- ``judge_decisions_import`` — an automatic judge's decisions on the study's
  items, from the pipeline's ``judge_decisions.jsonl`` or a CSV.
- ``judgments_export`` / ``preference_pairs_export`` — audited researcher exports.

Clinician writes (``assignment_mark_shown``, ``assignment_draft_save``,
``judgment_submit``, ``judgment_undo``) take answers in SCREEN terms ("left" is
what the page calls Response A) and store them in SOURCE terms.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from core import roles
from core.models import CriteriaSet, Criterion, ModelVersion, Response, Scenario
from core.services import audit_record
from core.spreadsheet import safe_dict_writer

from . import screening, selectors
from .exceptions import (
    InvalidInput,
    InvalidTransition,
    JudgeImportError,
    NotAssigned,
    NothingToUndo,
    StudyNotOpen,
)
from .models import (
    Assignment,
    Choice,
    JudgeDecision,
    Judgment,
    JudgmentChoice,
    JudgmentRevision,
    RatingItem,
    RatingStudy,
    ScreeningHit,
    StudyClinician,
    StudyDimension,
    new_seed,
)

OVERALL_KEY = "overall"
SIDES = ("left", "right")
SCREEN_CHOICES = ("left", "right", "tie")
MAX_COMMENT_CHARS = 5000
MAX_TIME_ON_TASK_MS = 24 * 60 * 60 * 1000


# --- Assignment --------------------------------------------------------------------------


def assignment_plan(*, n_items: int, n_clinicians: int, overlap: int, rng: random.Random) -> list[list[int]]:
    """Which items each clinician rates, in the order they will see them.

    Every item goes to exactly ``overlap`` distinct clinicians, and loads differ
    by at most one: items are dealt in a random order, each to the ``overlap``
    clinicians with the fewest items so far (ties broken at random). If all
    loads are L or L+1 before an item, they are still within one of each other
    after it, so the invariant holds to the end. Returns one list of item
    indices per clinician, shuffled into that clinician's own queue order."""
    if n_clinicians < 1:
        raise InvalidInput("a study needs at least one clinician")
    if not 1 <= overlap <= n_clinicians:
        raise InvalidInput(f"overlap must be between 1 and the number of clinicians ({n_clinicians}), got {overlap}")
    loads = [0] * n_clinicians
    queues: list[list[int]] = [[] for _ in range(n_clinicians)]
    items = list(range(n_items))
    rng.shuffle(items)
    for item in items:
        tiebreak = [rng.random() for _ in range(n_clinicians)]
        chosen = sorted(range(n_clinicians), key=lambda c: (loads[c], tiebreak[c]))[:overlap]
        for c in chosen:
            loads[c] += 1
            queues[c].append(item)
    for queue in queues:
        rng.shuffle(queue)
    return queues


def study_rng(seed: int, purpose: str) -> random.Random:
    """An independent, reproducible random stream for one purpose of a study,
    derived from its secret seed (string seeds are hashed with SHA-512)."""
    return random.Random(f"attune-rating-study:{seed}:{purpose}")


def seed_commitment(seed: int) -> str:
    """SHA-256 of the seed: audit rows carry this, so the seed revealed after
    close can be checked against what was fixed at creation."""
    return hashlib.sha256(f"attune-rating-study:{seed}".encode()).hexdigest()


@dataclass(frozen=True)
class PlannedAssignment:
    clinician: int
    item: int
    position: int
    position_seed: int
    left_is_a: bool


def study_layout(*, seed: int, n_items: int, n_clinicians: int, overlap: int) -> list[PlannedAssignment]:
    """Every assignment of a study, from its seed alone: which items each
    clinician (by index) rates, in what order, and which side source A is on.
    The same seed and sizes always give the same layout."""
    plan = assignment_plan(n_items=n_items, n_clinicians=n_clinicians, overlap=overlap, rng=study_rng(seed, "plan"))
    positions = study_rng(seed, "positions")
    layout = []
    for clinician, queue in enumerate(plan):
        for position, item in enumerate(queue, start=1):
            position_seed = positions.getrandbits(62)
            layout.append(PlannedAssignment(clinician, item, position, position_seed,
                                            random.Random(position_seed).random() < 0.5))
    return layout


def _resolve_overlap(overlap, n_clinicians: int) -> tuple[int, bool]:
    if isinstance(overlap, str):
        if overlap.strip().lower() == "all":
            return n_clinicians, True
        try:
            overlap = int(overlap)
        except ValueError:
            raise InvalidInput(f"overlap must be 'all' or a whole number, got {overlap!r}") from None
    if isinstance(overlap, bool) or not isinstance(overlap, int):
        raise InvalidInput(f"overlap must be 'all' or a whole number, got {overlap!r}")
    if not 1 <= overlap <= n_clinicians:
        raise InvalidInput(f"overlap must be between 1 and the number of clinicians ({n_clinicians}), got {overlap}")
    return overlap, overlap == n_clinicians


def _as_instances(values, model, what: str) -> list:
    values = list(values)
    ids = [v.pk if isinstance(v, model) else v for v in values]
    if len(set(ids)) != len(ids):
        raise InvalidInput(f"the same {what} is listed twice")
    found = model.objects.in_bulk(ids)
    missing = [str(i) for i in ids if i not in found]
    if missing:
        raise InvalidInput(f"unknown {what}: {', '.join(missing[:10])}")
    return [found[i] for i in ids]


def _check_raters(users) -> None:
    """Only active clinicians without researcher access may rate: anyone who
    can reach sources, results or exports could unblind themselves."""
    not_clinicians = [u.get_username() for u in users if not u.is_active or not roles.is_clinician(u)]
    if not_clinicians:
        raise InvalidInput(f"not active clinicians: {', '.join(not_clinicians)}")
    researchers = [u.get_username() for u in users if roles.has_research_access(u)]
    if researchers:
        raise InvalidInput(
            f"people with researcher access (staff, superuser or the Researchers group) cannot rate, because they can see "
            f"which model wrote each response: {', '.join(researchers)}. Remove them, or use a separate clinician account."
        )


def rating_study_create(
    *,
    name: str,
    source_a: ModelVersion,
    source_b: ModelVersion,
    scenarios: Iterable[Scenario | int],
    criteria_set: CriteriaSet,
    clinicians: Iterable,
    overlap: int | str,
    actor,
    description: str = "",
    public_title: str = "",
    include_overall: bool = True,
    sample_index: int = 0,
    sample_size: int | None = None,
    keep_source_order: bool = False,
    open_now: bool = False,
) -> RatingStudy:
    """Create a blinded A/B rating study and assign its items to clinicians.

    - ``source_a`` / ``source_b``: the two ModelVersions compared (a fixed
      response set is a ModelVersion of kind FIXED). Each scenario needs one
      ``core.Response`` from each, with ``sample_index`` (default 0).
    - ``scenarios``: Scenario objects or ids; one item per scenario.
    - ``criteria_set``: its criteria are the dimensions, in order, followed by
      "overall" unless ``include_overall=False``. The dimensions are frozen.
    - ``clinicians``: users in the Clinicians group.
    - ``overlap``: how many clinicians rate each item, an int k (1..n) or
      ``"all"``. Every item gets exactly k distinct clinicians; loads differ by
      at most one (``assignment_plan``).
    - ``sample_size``: take a random sample of this many of ``scenarios``
      (all of them when omitted).
    - ``keep_source_order``: keep ``source_a`` as source A. By default a coin
      decides which of the two is labelled A.
    - ``open_now``: open the study at once instead of leaving it a draft,
      unless the self-identification screen flagged replies (``screening``):
      then it stays a draft until a researcher has reviewed each flagged item.
    - ``clinicians`` with researcher access (staff, superuser, the
      Researchers group) are refused: they could see the sources.

    All of the study's randomness (the scenario sample, which source is A, the
    assignment plan, each clinician's order, every left/right position) comes
    from one seed drawn here from ``secrets``; callers cannot choose it, so
    nobody can compute a study's positions from the code. It is stored for
    reproducibility (``study_layout``) and kept secret until the study closes.

    Raises ``InvalidInput`` (nothing written) when anything does not fit.
    Writes an ``annotation.study.create`` audit row in the same transaction."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("the study needs a name")
    if RatingStudy.objects.filter(name=name).exists():
        raise InvalidInput(f"a rating study named {name!r} already exists")
    if source_a is None or source_b is None or source_a.pk == source_b.pk:
        raise InvalidInput("a study compares two different sources")
    if isinstance(sample_index, bool) or not isinstance(sample_index, int) or sample_index < 0:
        raise InvalidInput("sample_index must be a whole number, 0 or more")
    scenarios = _as_instances(scenarios, Scenario, "scenario")
    if not scenarios:
        raise InvalidInput("a study needs at least one scenario")
    if sample_size is not None and (isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 1):
        raise InvalidInput("the number of scenarios to sample must be a whole number, 1 or more")
    seed = new_seed()
    if sample_size is not None and sample_size < len(scenarios):
        pool = sorted(scenarios, key=lambda s: s.pk)
        scenarios = sorted(study_rng(seed, "scenarios").sample(pool, sample_size), key=lambda s: s.pk)
    if not keep_source_order and study_rng(seed, "sources").random() < 0.5:
        source_a, source_b = source_b, source_a
    user_model = get_user_model()
    clinicians = _as_instances(clinicians, user_model, "clinician")
    if not clinicians:
        raise InvalidInput("a study needs at least one clinician")
    _check_raters(clinicians)
    k, overlap_all = _resolve_overlap(overlap, len(clinicians))
    clinicians.sort(key=lambda u: u.pk)  # so the stored seed alone reproduces the layout

    criteria = list(criteria_set.ordered_criteria())
    if include_overall and not any(c.key == OVERALL_KEY for c in criteria):
        overall = Criterion.objects.filter(key=OVERALL_KEY).first()
        if overall is None:
            raise InvalidInput("the 'overall' criterion does not exist (run migrations to seed the vocabulary)")
        criteria.append(overall)
    if not criteria:
        raise InvalidInput("the criteria set has no criteria")

    responses = {}
    for response in Response.objects.filter(
        scenario__in=scenarios, model_version__in=[source_a, source_b], sample_index=sample_index
    ):
        responses[(response.scenario_id, response.model_version_id)] = response
    missing = [
        str(s) for s in scenarios if (s.pk, source_a.pk) not in responses or (s.pk, source_b.pk) not in responses
    ]
    if missing:
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise InvalidInput(
            f"{len(missing)} scenario(s) lack a response (sample {sample_index}) from both sources: {', '.join(missing[:10])}{more}"
        )

    hits = _screen_responses(scenarios, responses, source_a, source_b)
    opens = open_now and not hits  # replies to review first: the study stays a draft until a researcher has
    layout = study_layout(seed=seed, n_items=len(scenarios), n_clinicians=len(clinicians), overlap=k)
    now = timezone.now()
    with transaction.atomic():
        study = RatingStudy.objects.create(
            name=name,
            description=description,
            public_title=public_title,
            source_a=source_a,
            source_b=source_b,
            criteria_set=criteria_set,
            overlap=k,
            overlap_all=overlap_all,
            sample_index=sample_index,
            seed=seed,
            normalisation=screening.NORMALISATION,
            screened_at=now,
            state=RatingStudy.State.OPEN if opens else RatingStudy.State.DRAFT,
            opened_at=now if opens else None,
            created_by=actor if actor is not None and actor.is_authenticated else None,
        )
        StudyDimension.objects.bulk_create(
            StudyDimension(study=study, criterion=c, order=i) for i, c in enumerate(criteria)
        )
        StudyClinician.objects.bulk_create(StudyClinician(study=study, clinician=u) for u in clinicians)
        items = RatingItem.objects.bulk_create(
            RatingItem(
                study=study,
                scenario=s,
                response_a=responses[(s.pk, source_a.pk)],
                response_b=responses[(s.pk, source_b.pk)],
                order=i,
                screen=RatingItem.Screen.PENDING if s.pk in hits else RatingItem.Screen.CLEAR,
            )
            for i, s in enumerate(scenarios)
        )
        ScreeningHit.objects.bulk_create(
            ScreeningHit(study=study, item=item, source=source, kind=hit.kind, term=hit.term[:300], matched=hit.matched[:300],
                         start=hit.start, before=hit.before[-100:], after=hit.after[:100])
            for item in items for source, hit in hits.get(item.scenario_id, [])
        )
        Assignment.objects.bulk_create(
            Assignment(study=study, item=items[p.item], clinician=clinicians[p.clinician], position=p.position,
                       position_seed=p.position_seed, left_is_a=p.left_is_a)
            for p in layout
        )
        audit_record(
            actor=actor,
            action="annotation.study.create",
            target=study,
            details={
                "name": name,
                "source_a": source_a.name,
                "source_b": source_b.name,
                "criteria_set": criteria_set.key,
                "dimensions": [c.key for c in criteria],
                "items": len(items),
                "clinicians": [u.get_username() for u in clinicians],
                "overlap": "all" if overlap_all else k,
                # A commitment to the seed, never the seed: the log is readable while the study is open.
                "seed_sha256": seed_commitment(seed),
                "sample_size": sample_size,
                "source_order": "as given" if keep_source_order else "coin",
                "screen": {"list_version": screening.screen_lists()["version"], "items_with_hits": len(hits),
                           "hits": sum(len(v) for v in hits.values())},
                "normalisation": study.normalisation,
                "state": study.state,
            },
        )
    return study


def _screen_responses(scenarios, responses, source_a, source_b) -> dict[int, list]:
    """{scenario id: [(source "a"|"b", screening.Hit)]} for every scenario with a hit."""
    terms = screening.source_terms(source_a) + [t for t in screening.source_terms(source_b)]
    hits = {}
    for scenario in scenarios:
        found = [(label, hit)
                 for label, source in (("a", source_a), ("b", source_b))
                 for hit in screening.screen_text(responses[(scenario.pk, source.pk)].text, terms=terms)]
        if found:
            hits[scenario.pk] = found
    return hits


def rating_study_screen(*, study: RatingStudy, actor=None) -> int:
    """Run the self-identification screen again over a study's items that are
    not excluded (``rating_study_open`` does, so texts edited after creation
    are screened too). New hits are stored and their items go back to
    "not reviewed"; hits already known keep their decision. Returns how many
    new hits were found (audited when there are any)."""
    with transaction.atomic():
        study = RatingStudy.objects.select_for_update().select_related("source_a", "source_b").get(pk=study.pk)
        terms = screening.source_terms(study.source_a) + screening.source_terms(study.source_b)
        known = set(ScreeningHit.objects.filter(study=study).values_list("item_id", "source", "kind", "start", "matched"))
        new_hits, flagged = [], set()
        items = study.items.exclude(screen=RatingItem.Screen.EXCLUDE).select_related("response_a", "response_b")
        for item in items:
            for label, response in (("a", item.response_a), ("b", item.response_b)):
                for hit in screening.screen_text(response.text, terms=terms):
                    if (item.pk, label, hit.kind, hit.start, hit.matched[:300]) in known:
                        continue
                    new_hits.append(ScreeningHit(
                        study=study, item=item, source=label, kind=hit.kind, term=hit.term[:300], matched=hit.matched[:300],
                        start=hit.start, before=hit.before[-100:], after=hit.after[:100],
                    ))
                    flagged.add(item.pk)
        ScreeningHit.objects.bulk_create(new_hits)
        RatingItem.objects.filter(pk__in=flagged).update(screen=RatingItem.Screen.PENDING, screen_reviewed_by=None,
                                                         screen_reviewed_at=None)
        study.screened_at = timezone.now()
        study.save(update_fields=["screened_at"])
        if new_hits:
            audit_record(actor=actor, action="annotation.study.screen", target=study,
                         details={"new_hits": len(new_hits), "items": len(flagged),
                                  "list_version": screening.screen_lists()["version"]})
    return len(new_hits)


def _replan_assignments(study: RatingStudy) -> int:
    """Rebuild a draft study's assignments over its items that are not excluded,
    from its seed: every remaining item still gets exactly ``overlap``
    clinicians and loads still differ by at most one. Returns how many."""
    items = list(study.items.exclude(screen=RatingItem.Screen.EXCLUDE).order_by("order"))
    clinicians = sorted((m.clinician for m in study.memberships.select_related("clinician")), key=lambda u: u.pk)
    Assignment.objects.filter(study=study).delete()
    if not items:
        return 0
    layout = study_layout(seed=study.seed, n_items=len(items), n_clinicians=len(clinicians), overlap=study.overlap)
    Assignment.objects.bulk_create(
        Assignment(study=study, item=items[p.item], clinician=clinicians[p.clinician], position=p.position,
                   position_seed=p.position_seed, left_is_a=p.left_is_a)
        for p in layout
    )
    return len(layout)


SCREEN_DECISIONS = {"keep": RatingItem.Screen.KEEP, "exclude": RatingItem.Screen.EXCLUDE}


def rating_item_screen_review(*, item: RatingItem, decision: str, actor) -> RatingItem:
    """A researcher's decision on an item whose responses the self-identification
    screen flagged: ``"keep"`` (show it as is) or ``"exclude"`` (drop it from
    the study: out of every clinician's queue and out of the results). Only
    while the study is a draft; a decision can be changed until it opens.
    Excluding or restoring an item rebuilds the assignments from the seed.
    Audited (``annotation.item.screen_review``) in the same transaction."""
    if decision not in SCREEN_DECISIONS:
        raise InvalidInput("the decision must be keep or exclude")
    with transaction.atomic():
        study = RatingStudy.objects.select_for_update().get(pk=item.study_id)
        item = RatingItem.objects.select_for_update().get(pk=item.pk)
        if study.state != RatingStudy.State.DRAFT:
            raise InvalidTransition("screen decisions are made while the study is a draft, before it opens")
        if item.screen == RatingItem.Screen.CLEAR:
            raise InvalidInput("this item has no self-identification hit to review")
        previous, new = item.screen, SCREEN_DECISIONS[decision]
        item.screen = new
        item.screen_reviewed_by = actor if actor is not None and actor.is_authenticated else None
        item.screen_reviewed_at = timezone.now()
        item.save(update_fields=["screen", "screen_reviewed_by", "screen_reviewed_at"])
        was_excluded, is_excluded = previous == RatingItem.Screen.EXCLUDE, new == RatingItem.Screen.EXCLUDE
        assignments = _replan_assignments(study) if was_excluded != is_excluded else None
        audit_record(
            actor=actor,
            action="annotation.item.screen_review",
            target=item,
            details={"study": study.pk, "item": item.token, "decision": decision, "previous": previous,
                     "hits": item.screening_hits.count(), "assignments_rebuilt": assignments},
        )
    return item


def _study_transition(*, study: RatingStudy, actor, to: str, allowed_from: tuple[str, ...], action: str) -> RatingStudy:
    with transaction.atomic():
        study = RatingStudy.objects.select_for_update().get(pk=study.pk)
        if study.state == to:
            return study
        if study.state not in allowed_from:
            raise InvalidTransition(f"a {study.get_state_display().lower()} study cannot become {to}")
        previous = study.state
        study.state = to
        now = timezone.now()
        if to == RatingStudy.State.OPEN:
            study.opened_at = study.opened_at or now
            study.closed_at = None
        else:
            study.closed_at = now
        study.save(update_fields=["state", "opened_at", "closed_at"])
        audit_record(actor=actor, action=action, target=study, details={"from": previous, "to": to})
    return study


def rating_study_open(*, study: RatingStudy, actor) -> RatingStudy:
    """Open a draft study to its clinicians, or reopen a closed one. Refused
    while any item's self-identification hits are unreviewed, or when every
    item was excluded. A draft is screened again first."""
    if RatingStudy.objects.filter(pk=study.pk, state=RatingStudy.State.DRAFT).exists():
        rating_study_screen(study=study, actor=actor)
    pending = RatingItem.objects.filter(study=study, screen=RatingItem.Screen.PENDING).count()
    if pending:
        raise InvalidTransition(
            f"{pending} item(s) have self-identification hits that nobody has reviewed yet; on the study's page, keep or "
            f"exclude each of them before the study opens"
        )
    if not RatingItem.objects.filter(study=study).exclude(screen=RatingItem.Screen.EXCLUDE).exists():
        raise InvalidTransition("every item of this study is excluded; there is nothing to rate")
    return _study_transition(
        study=study, actor=actor, to=RatingStudy.State.OPEN,
        allowed_from=(RatingStudy.State.DRAFT, RatingStudy.State.CLOSED), action="annotation.study.open",
    )


def rating_study_close(*, study: RatingStudy, actor) -> RatingStudy:
    """Close an open study: clinicians can no longer answer, change or undo."""
    return _study_transition(
        study=study, actor=actor, to=RatingStudy.State.CLOSED,
        allowed_from=(RatingStudy.State.OPEN,), action="annotation.study.close",
    )


# --- Clinician answers ---------------------------------------------------------------------


def _lock_assignment(assignment: Assignment, clinician) -> Assignment:
    locked = Assignment.objects.select_for_update().select_related("study").get(pk=assignment.pk)
    if locked.clinician_id != clinician.pk:
        raise NotAssigned("this item is not in your queue")
    if locked.study.state != RatingStudy.State.OPEN:
        raise StudyNotOpen("this study is not open for rating")
    return locked


def _clean_time(value) -> int | None:
    if value is None or value == "":
        return None
    try:
        ms = int(value)
    except (TypeError, ValueError):
        raise InvalidInput("time_on_task_ms must be a whole number of milliseconds") from None
    if ms < 0:
        raise InvalidInput("time_on_task_ms cannot be negative")
    return min(ms, MAX_TIME_ON_TASK_MS)


def _clean_flag(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (None, "", "0", "false", "off"):
        return False
    if value in ("1", "true", "on", 1):
        return True
    raise InvalidInput(f"{name} must be true or false")


def _clean_answers(assignment: Assignment, *, choices, unsafe_left, unsafe_right, comment, complete: bool) -> dict:
    """Validate screen-term answers; returns {choices, unsafe_left, unsafe_right, comment}."""
    if not isinstance(choices, Mapping):
        raise InvalidInput("choices must map each dimension to left, right or tie")
    keys = selectors.study_dimension_keys(assignment.study)
    unknown = sorted(set(choices) - set(keys))
    if unknown:
        raise InvalidInput(f"unknown dimension: {', '.join(map(str, unknown))}")
    cleaned = {}
    for key in keys:
        value = choices.get(key)
        if value in (None, ""):
            continue
        if value not in SCREEN_CHOICES:
            raise InvalidInput(f"{key}: the choice must be left (Response A), right (Response B) or tie")
        cleaned[key] = value
    if complete:
        missing = [k for k in keys if k not in cleaned]
        if missing:
            raise InvalidInput(f"please choose for every dimension (missing: {', '.join(missing)})")
    if comment is None:
        comment = ""
    if not isinstance(comment, str):
        raise InvalidInput("comment must be text")
    if len(comment) > MAX_COMMENT_CHARS:
        raise InvalidInput(f"comment is longer than {MAX_COMMENT_CHARS} characters")
    return {
        "choices": cleaned,
        "unsafe_left": _clean_flag(unsafe_left, "unsafe_left"),
        "unsafe_right": _clean_flag(unsafe_right, "unsafe_right"),
        "comment": comment.strip(),
    }


def _to_source_terms(assignment: Assignment, screen: dict) -> dict:
    choices = {}
    for key, value in screen["choices"].items():
        choices[key] = Choice.TIE.value if value == "tie" else assignment.source_of(value)
    unsafe = {assignment.source_of("left"): screen["unsafe_left"], assignment.source_of("right"): screen["unsafe_right"]}
    return {"choices": choices, "unsafe_a": unsafe["a"], "unsafe_b": unsafe["b"], "comment": screen["comment"]}


def _to_screen_terms(assignment: Assignment, answers: dict) -> dict:
    choices = {k: ("tie" if v == Choice.TIE else assignment.side_of(v)) for k, v in answers["choices"].items()}
    unsafe = {assignment.side_of("a"): answers["unsafe_a"], assignment.side_of("b"): answers["unsafe_b"]}
    return {"choices": choices, "unsafe_left": unsafe["left"], "unsafe_right": unsafe["right"], "comment": answers["comment"]}


def _judgment_answers(judgment: Judgment) -> dict:
    return {
        "choices": {c.criterion.key: c.choice for c in judgment.choices.select_related("criterion")},
        "unsafe_a": judgment.unsafe_a,
        "unsafe_b": judgment.unsafe_b,
        "comment": judgment.comment,
    }


def _next_revision_number(assignment: Assignment) -> int:
    return (assignment.revisions.aggregate(n=Max("number"))["n"] or 0) + 1


def assignment_mark_shown(*, assignment: Assignment, clinician) -> None:
    """Record when the clinician first saw the item (no audit: not a decision)."""
    if assignment.clinician_id != clinician.pk:
        raise NotAssigned("this item is not in your queue")
    if assignment.first_shown_at is None and assignment.study.is_open:
        Assignment.objects.filter(pk=assignment.pk, first_shown_at__isnull=True).update(first_shown_at=timezone.now())


def assignment_draft_save(
    *, assignment: Assignment, clinician, choices=None, unsafe_left=False, unsafe_right=False, comment="", time_on_task_ms=None
) -> Assignment:
    """Autosave: keep unfinished answers (screen terms) so the clinician can stop
    and continue later. Drafts are working state, not decisions: not audited, and
    a submitted item keeps its judgment (its draft only pre-fills a change)."""
    with transaction.atomic():
        assignment = _lock_assignment(assignment, clinician)
        screen = _clean_answers(
            assignment, choices=choices or {}, unsafe_left=unsafe_left, unsafe_right=unsafe_right, comment=comment, complete=False
        )
        ms = _clean_time(time_on_task_ms)
        assignment.draft = screen
        assignment.draft_saved_at = timezone.now()
        fields = ["draft", "draft_saved_at"]
        if ms is not None and ms > assignment.time_on_task_ms:
            assignment.time_on_task_ms = ms
            fields.append("time_on_task_ms")
        assignment.save(update_fields=fields)
    return assignment


def judgment_submit(
    *, assignment: Assignment, clinician, choices, unsafe_left=False, unsafe_right=False, comment="", time_on_task_ms=None
) -> Judgment:
    """Save a clinician's answer for one item: exactly one Judgment per clinician
    and item. A resubmission changes that judgment and adds a history row; an
    identical resubmission (double submit, refresh) changes nothing.

    ``choices`` maps every study dimension to "left" (the page's Response A),
    "right" (Response B) or "tie"; ``unsafe_left``/``unsafe_right`` flag a
    response as unsafe, independently of any choice."""
    with transaction.atomic():
        assignment = _lock_assignment(assignment, clinician)
        screen = _clean_answers(
            assignment, choices=choices, unsafe_left=unsafe_left, unsafe_right=unsafe_right, comment=comment, complete=True
        )
        ms = _clean_time(time_on_task_ms)
        total_ms = max(assignment.time_on_task_ms, ms or 0)
        answers = _to_source_terms(assignment, screen)
        judgment = Judgment.objects.filter(assignment=assignment).first()
        if judgment is not None and _judgment_answers(judgment) == answers:
            if assignment.draft:
                assignment.draft = {}
                assignment.save(update_fields=["draft"])
            return judgment
        criteria = selectors.study_criteria_by_key(assignment.study)
        number = _next_revision_number(assignment)
        if judgment is None:
            event = JudgmentRevision.Event.SUBMITTED
            judgment = Judgment.objects.create(
                assignment=assignment,
                study=assignment.study,
                item_id=assignment.item_id,
                clinician=clinician,
                left_is_a=assignment.left_is_a,
                unsafe_a=answers["unsafe_a"],
                unsafe_b=answers["unsafe_b"],
                comment=answers["comment"],
                time_on_task_ms=total_ms,
                revision=number,
            )
            JudgmentChoice.objects.bulk_create(
                JudgmentChoice(judgment=judgment, criterion=criteria[k], choice=v) for k, v in answers["choices"].items()
            )
        else:
            event = JudgmentRevision.Event.CHANGED
            judgment.unsafe_a = answers["unsafe_a"]
            judgment.unsafe_b = answers["unsafe_b"]
            judgment.comment = answers["comment"]
            judgment.time_on_task_ms = total_ms
            judgment.revision = number
            judgment.save()
            for choice in judgment.choices.select_related("criterion"):
                new = answers["choices"][choice.criterion.key]
                if choice.choice != new:
                    choice.choice = new
                    choice.save(update_fields=["choice"])
        JudgmentRevision.objects.create(
            assignment=assignment, number=number, event=event, answers=answers,
            left_is_a=assignment.left_is_a, time_on_task_ms=total_ms,
        )
        assignment.status = Assignment.Status.DONE
        assignment.completed_at = timezone.now()
        assignment.draft = {}
        assignment.time_on_task_ms = total_ms
        assignment.save(update_fields=["status", "completed_at", "draft", "time_on_task_ms"])
        audit_record(
            actor=clinician,
            action="annotation.judgment.submit" if event == JudgmentRevision.Event.SUBMITTED else "annotation.judgment.change",
            target=judgment,
            details={"study": assignment.study_id, "assignment": assignment.token, "revision": number},
        )
    return judgment


def judgment_undo(*, study: RatingStudy, clinician) -> Assignment:
    """Undo the clinician's most recent answer in this study: the judgment is
    withdrawn (its history stays), the item goes back into the queue with the
    withdrawn answers pre-filled, and it becomes the next item. Returns it."""
    with transaction.atomic():
        study = RatingStudy.objects.get(pk=study.pk)
        if not StudyClinician.objects.filter(study=study, clinician=clinician).exists():
            raise NotAssigned("you are not rating in this study")
        if study.state != RatingStudy.State.OPEN:
            raise StudyNotOpen("this study is not open for rating")
        latest = (
            Judgment.objects.filter(study=study, clinician=clinician).order_by("-updated_at", "-id")
            .values_list("assignment_id", flat=True).first()
        )
        if latest is None:
            raise NothingToUndo("there is no answer to undo")
        # Lock the assignment before its judgment, the order judgment_submit uses, so the two never deadlock.
        assignment = _lock_assignment(Assignment(pk=latest), clinician)
        judgment = Judgment.objects.select_for_update().filter(assignment=assignment).first()
        if judgment is None:
            raise NothingToUndo("that answer was already withdrawn")
        answers = _judgment_answers(judgment)
        number = _next_revision_number(assignment)
        JudgmentRevision.objects.create(
            assignment=assignment, number=number, event=JudgmentRevision.Event.UNDONE, answers=answers,
            left_is_a=assignment.left_is_a, time_on_task_ms=judgment.time_on_task_ms,
        )
        judgment_id = judgment.pk
        judgment.delete()
        assignment.status = Assignment.Status.PENDING
        assignment.completed_at = None
        assignment.draft = _to_screen_terms(assignment, answers)
        assignment.draft_saved_at = timezone.now()
        assignment.save(update_fields=["status", "completed_at", "draft", "draft_saved_at"])
        audit_record(
            actor=clinician,
            action="annotation.judgment.undo",
            target_type="annotation.judgment",
            target_id=str(judgment_id),
            details={"study": study.pk, "assignment": assignment.token, "revision": number},
        )
    return assignment


# --- Judge decisions -------------------------------------------------------------------------

SOURCE_CHOICES = {"source_a": Choice.A.value, "source_b": Choice.B.value, "tie": Choice.TIE.value}
MAX_REPORTED_ERRORS = 20


@dataclass
class JudgeImportReport:
    judge_name: str
    imported: int = 0
    replaced: int = 0
    rows: int = 0
    skipped_other_pairs: int = 0
    skipped_no_decision: int = 0
    skipped_unmatched: int = 0
    synthetic: bool = False
    by_criterion: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        parts = [f"{self.imported} decisions imported for {self.judge_name!r} from {self.rows} rows"]
        for label, n in (("other model pairs", self.skipped_other_pairs), ("no decision", self.skipped_no_decision),
                         ("scenario not in the study", self.skipped_unmatched)):
            if n:
                parts.append(f"skipped {n} ({label})")
        if self.replaced:
            parts.append(f"replaced {self.replaced} earlier decisions")
        return "; ".join(parts)


def parse_judge_file(path) -> list[dict]:
    """Rows of a judge-decision file: ``.jsonl`` (the pipeline's
    judge_decisions.jsonl, or any rows with the fields below) or ``.csv``."""
    path = Path(path)
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JudgeImportError(f"{path.name}: no such file") from None
    except UnicodeDecodeError as exc:
        raise JudgeImportError(f"{path.name}: not UTF-8 text ({exc.reason})") from None
    return parse_judge_text(content, fmt=path.suffix.lower().lstrip("."))


def parse_judge_text(content: str, *, fmt: str) -> list[dict]:
    if fmt in ("jsonl", "ndjson"):
        rows = []
        for number, raw in enumerate(content.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise JudgeImportError(f"line {number}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise JudgeImportError(f"line {number}: expected a JSON object")
            record["_line"] = number
            rows.append(record)
        return rows
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(content))
        if not reader.fieldnames:
            raise JudgeImportError("the CSV file is empty")
        rows = []
        for record in reader:
            if None in record or any(v is None for v in record.values()):
                raise JudgeImportError(f"line {reader.line_num}: wrong number of fields")
            record = {k.strip(): v.strip() for k, v in record.items()}
            record["_line"] = reader.line_num
            rows.append(record)
        return rows
    raise JudgeImportError("expected a .jsonl (the pipeline's judge_decisions.jsonl) or .csv file")


def _first(row: dict, *keys):
    for key in keys:
        value = row.get(key)
        if value not in (None, ""):
            return value
    return None


def _same_text(x, y) -> bool:
    return " ".join(str(x).split()) == " ".join(str(y).split())


def _same_response(shown, text) -> bool:
    """The judge saw this response, raw or as normalised for display."""
    return _same_text(shown, text) or _same_text(screening.normalise_for_display(str(shown)),
                                                 screening.normalise_for_display(text))


def judge_decisions_import(
    *,
    study: RatingStudy,
    judge_name: str,
    actor,
    rows: Iterable[Mapping] | None = None,
    path=None,
    source_names: Mapping[str, str] | None = None,
    skip_unmatched: bool = False,
) -> JudgeImportReport:
    """Import an automatic judge's decisions on the study's items, all or nothing.

    Give ``rows`` (dicts) or ``path`` (.jsonl or .csv). Each row names:

    - the item: ``item`` (an item token from the exports), or ``scenario_id``
      (also ``scenario_external_id``/``scenario``): the scenario's external id,
      or ``s<pk>`` / ``<pk>`` as the training pipeline writes it;
    - the dimension: ``criterion`` (or ``dimension``), one of the study's;
    - the decision, in terms of SOURCE, never screen position, either
      ``choice`` (or ``judge_choice``) = ``source_a`` | ``source_b`` | ``tie``
      (a source's ModelVersion name is accepted too), or the pipeline's
      ``model_a``, ``model_b`` and ``majority`` (a | b | tie | none). Pipeline
      model names map to sources through ``source_names`` ({name: "source_a" |
      "source_b"}; the sources' own ModelVersion names always map). Lines for
      other model pairs and lines with no decision (``majority`` "none") are
      skipped and counted; when a line carries ``response_a``/``response_b``
      they must be the texts the study shows, or the judge rated something else.

    An unknown scenario is an error unless ``skip_unmatched`` (for pipeline files
    that cover more scenarios than the study). Any error raises
    ``JudgeImportError`` listing the bad lines, and nothing is written.
    Decisions already stored under ``judge_name`` are replaced. Audited."""
    judge_name = (judge_name or "").strip()
    if not judge_name:
        raise JudgeImportError("the judge needs a name")
    if len(judge_name) > 200:
        raise JudgeImportError("the judge name is longer than 200 characters")
    if (rows is None) == (path is None):
        raise JudgeImportError("give either rows or a file path")
    if path is not None:
        rows = parse_judge_file(path)
    rows = list(rows)
    report = JudgeImportReport(judge_name=judge_name, rows=len(rows))

    names = {study.source_a.name: "source_a", study.source_b.name: "source_b"}
    for name, source in (source_names or {}).items():
        if source not in ("source_a", "source_b"):
            raise JudgeImportError(f"source_names: {name!r} must map to source_a or source_b, not {source!r}")
        names[str(name)] = source
    criteria = selectors.study_criteria_by_key(study)
    # Items excluded by the self-identification screen are no longer part of the study.
    items = list(study.items.exclude(screen=RatingItem.Screen.EXCLUDE).select_related("scenario", "response_a", "response_b"))
    by_token = {i.token: i for i in items}
    by_pk = {i.scenario_id: i for i in items}
    by_external: dict[str, list[RatingItem]] = {}
    for item in items:
        if item.scenario.external_id:
            by_external.setdefault(item.scenario.external_id, []).append(item)

    def find_item(ref: str):
        ref = str(ref).strip()
        if ref in by_token:
            return by_token[ref]
        matches = list(by_external.get(ref, []))
        digits = ref[1:] if ref[:1] in ("s", "S") else ref
        if digits.isdigit() and int(digits) in by_pk and by_pk[int(digits)] not in matches:
            matches.append(by_pk[int(digits)])
        if len(matches) > 1:
            raise ValueError(f"scenario {ref!r} matches {len(matches)} items (an external id and a database id); use the item token")
        return matches[0] if matches else None

    errors, decided = [], {}
    for index, row in enumerate(rows, start=1):
        if len(errors) >= MAX_REPORTED_ERRORS:
            errors.append("(further lines not checked)")
            break
        where = f"line {row.get('_line', index)}" if isinstance(row, Mapping) else f"row {index}"
        if not isinstance(row, Mapping):
            errors.append(f"{where}: expected an object with item/scenario_id, criterion and choice")
            continue
        ref = _first(row, "item", "scenario_id", "scenario_external_id", "scenario")
        key = _first(row, "criterion", "dimension")
        explicit = _first(row, "choice", "judge_choice")
        pipeline = all(k in row for k in ("model_a", "model_b", "majority"))
        if ref is None:
            errors.append(f"{where}: needs item or scenario_id")
            continue
        if key is None:
            errors.append(f"{where}: needs criterion (or dimension)")
            continue
        key = str(key).strip()
        if key not in criteria:
            errors.append(f"{where}: unknown dimension {key!r} (this study has {', '.join(criteria)})")
            continue
        flip = False
        if explicit is not None:
            value = str(explicit).strip()
            value = names.get(value, value)
            if value not in SOURCE_CHOICES:
                errors.append(f"{where}: choice must be source_a, source_b or tie, got {explicit!r}")
                continue
            choice = SOURCE_CHOICES[value]
        elif pipeline:
            pair = (names.get(str(row["model_a"])), names.get(str(row["model_b"])))
            if set(pair) != {"source_a", "source_b"}:
                report.skipped_other_pairs += 1
                continue
            flip = pair[0] == "source_b"
            majority = str(row["majority"]).strip().lower()
            if majority == "none":
                report.skipped_no_decision += 1
                continue
            if majority not in ("a", "b", "tie"):
                errors.append(f"{where}: majority must be a, b, tie or none, got {row['majority']!r}")
                continue
            if majority == "tie":
                choice = Choice.TIE.value
            else:
                choice = SOURCE_CHOICES[pair[0] if majority == "a" else pair[1]]
        else:
            errors.append(f"{where}: needs choice (source_a, source_b or tie), or the pipeline's model_a, model_b and majority")
            continue
        try:
            item = find_item(ref)
        except ValueError as exc:
            errors.append(f"{where}: {exc}")
            continue
        if item is None:
            if skip_unmatched:
                report.skipped_unmatched += 1
                continue
            errors.append(f"{where}: scenario {ref!r} is not in this study")
            continue
        shown_a, shown_b = row.get("response_a"), row.get("response_b")
        if shown_a is not None and shown_b is not None:
            if flip:
                shown_a, shown_b = shown_b, shown_a
            if not (_same_response(shown_a, item.response_a.text) and _same_response(shown_b, item.response_b.text)):
                errors.append(f"{where}: the judge rated different responses from the ones this study shows for {ref!r}")
                continue
        if (item.pk, key) in decided:
            errors.append(f"{where}: a second decision for {ref!r} on {key!r}")
            continue
        decided[(item.pk, key)] = choice
        if row.get("synthetic") in (True, "true", "True", "1"):
            report.synthetic = True
    if errors:
        raise JudgeImportError("the judge decisions cannot be imported; nothing was imported", errors=errors)
    if not decided:
        raise JudgeImportError("no decision for this study's items and sources was found; nothing was imported")
    with transaction.atomic():
        existing = JudgeDecision.objects.filter(study=study, judge_name=judge_name)
        report.replaced = existing.count()
        existing.delete()
        JudgeDecision.objects.bulk_create(
            JudgeDecision(study=study, judge_name=judge_name, item_id=item_id, criterion=criteria[key], choice=choice,
                          synthetic=report.synthetic)
            for (item_id, key), choice in decided.items()
        )
        report.imported = len(decided)
        for _, key in decided:
            report.by_criterion[key] = report.by_criterion.get(key, 0) + 1
        audit_record(actor=actor, action="annotation.judge.import", target=study, details=report.as_dict())
    return report


# --- Exports -----------------------------------------------------------------------------------


def judgments_export(*, study: RatingStudy, actor) -> str:
    """Every current judgment as CSV, one row per judgment and dimension, with
    the order it was shown in (researchers only; audited)."""
    rows = selectors.judgment_export_rows(study)
    buffer = io.StringIO()
    writer = safe_dict_writer(buffer, selectors.JUDGMENT_EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with transaction.atomic():
        audit_record(actor=actor, action="annotation.export.judgments", target=study, details={"rows": len(rows), "format": "csv"})
    return buffer.getvalue()


def preference_pairs_export(*, study: RatingStudy, actor) -> str:
    """Per-dimension preference pairs from the clinician majority as JSONL
    ({"prompt", "scenario_id", "criterion", "chosen", "rejected",
    "normalisation"}: the texts as the clinicians saw them; researchers only;
    audited)."""
    pairs = selectors.preference_pairs(study)
    text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs)
    with transaction.atomic():
        audit_record(actor=actor, action="annotation.export.pairs", target=study, details={"pairs": len(pairs), "format": "jsonl"})
    return text
