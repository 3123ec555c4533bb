"""The self-identification screen over a study's responses, and a researcher's keep/exclude review of
flagged items (annotation.screening holds the pure matching)."""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from core.audit import AuditAction, actor_user, audit_record

from .. import screening
from ..exceptions import InvalidInput, InvalidTransition
from ..layout import study_layout
from ..models import Assignment, RatingItem, RatingStudy, ScreeningHit


def responses_screen(scenarios, responses, source_a, source_b) -> dict[int, list]:
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
            audit_record(actor=actor, action=AuditAction.ANNOTATION_STUDY_SCREEN, target=study,
                         details={"new_hits": len(new_hits), "items": len(flagged),
                                  "list_version": screening.screen_lists()["version"]})
    return len(new_hits)


def assignments_replan(study: RatingStudy) -> int:
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
        item.screen_reviewed_by = actor_user(actor)
        item.screen_reviewed_at = timezone.now()
        item.save(update_fields=["screen", "screen_reviewed_by", "screen_reviewed_at"])
        was_excluded, is_excluded = previous == RatingItem.Screen.EXCLUDE, new == RatingItem.Screen.EXCLUDE
        assignments = assignments_replan(study) if was_excluded != is_excluded else None
        audit_record(
            actor=actor,
            action=AuditAction.ANNOTATION_ITEM_SCREEN_REVIEW,
            target=item,
            details={"study": study.pk, "item": item.token, "decision": decision, "previous": previous,
                     "hits": item.screening_hits.count(), "assignments_rebuilt": assignments},
        )
    return item
