"""A rating study's creation (items, balanced assignments, per-clinician left/right order) and its
open/closed transitions."""
from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from core import roles
from core.models import CriteriaSet, Criterion, ModelVersion, Response, Scenario
from core.audit import AuditAction, actor_user, audit_record

from .. import screening
from ..exceptions import InvalidInput, InvalidTransition
from ..layout import seed_commitment, study_layout, study_rng
from ..models import Assignment, RatingItem, RatingStudy, ScreeningHit, StudyClinician, StudyDimension, new_seed
from .screen_review import rating_study_screen, responses_screen


OVERALL_KEY = "overall"


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

    hits = responses_screen(scenarios, responses, source_a, source_b)
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
            created_by=actor_user(actor),
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
            action=AuditAction.ANNOTATION_STUDY_CREATE,
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


def _study_transition(*, study: RatingStudy, actor, to: str, allowed_from: tuple[str, ...],
                      action: AuditAction) -> RatingStudy:
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
        allowed_from=(RatingStudy.State.DRAFT, RatingStudy.State.CLOSED), action=AuditAction.ANNOTATION_STUDY_OPEN,
    )


def rating_study_close(*, study: RatingStudy, actor) -> RatingStudy:
    """Close an open study: clinicians can no longer answer, change or undo."""
    return _study_transition(
        study=study, actor=actor, to=RatingStudy.State.CLOSED,
        allowed_from=(RatingStudy.State.OPEN,), action=AuditAction.ANNOTATION_STUDY_CLOSE,
    )
