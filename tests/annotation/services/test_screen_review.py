"""The self-identification screen and its review (annotation.services.screen_review)."""
from collections import Counter

import pytest

from annotation import services
from annotation.exceptions import InvalidInput, InvalidTransition
from annotation.models import Assignment, RatingStudy
from core.models import AuditEvent
from tests.annotation.factories import FixedSourceFactory, make_study, paired_scenarios, screen_answers, small_criteria_set
from tests.factories import ClinicianFactory, ResearcherFactory, ResponseFactory, ScenarioFactory

pytestmark = pytest.mark.django_db


def _study_with_flagged_items(*, open_now=False, n_clinicians=3, overlap=2):
    """Five items; item 1's source-A reply names its model, item 3's source-B reply has template debris."""
    from annotation.models import RatingItem

    a, b = FixedSourceFactory(), FixedSourceFactory()
    scenarios = paired_scenarios(5, a, b)
    from core.models import Response

    Response.objects.filter(scenario=scenarios[1], model_version=a).update(text="As an AI developed by OpenAI, I hear you.")
    Response.objects.filter(scenario=scenarios[3], model_version=b).update(text="Try resting.<|im_end|>\n\n\n")
    study = services.rating_study_create(
        name="flagged", source_a=a, source_b=b, scenarios=scenarios, criteria_set=small_criteria_set(),
        clinicians=[ClinicianFactory() for _ in range(n_clinicians)], overlap=overlap, actor=ResearcherFactory(),
        keep_source_order=True, open_now=open_now,
    )
    items = {i.scenario_id: i for i in RatingItem.objects.filter(study=study)}
    return study, items[scenarios[1].pk], items[scenarios[3].pk]


def test_the_screen_stores_each_hit_and_the_study_cannot_open_until_reviewed():
    from annotation.models import RatingItem, ScreeningHit

    study, named, debris = _study_with_flagged_items(open_now=True)
    assert study.state == RatingStudy.State.DRAFT  # asked to open at once, but there are hits to review
    assert study.normalisation == "display-v1" and study.screened_at is not None
    hits = {(h.item_id, h.source, h.kind, h.matched) for h in ScreeningHit.objects.filter(study=study)}
    assert (named.pk, "a", "self_description", "As an AI") in hits and (named.pk, "a", "vendor", "OpenAI") in hits
    assert (debris.pk, "b", "special_token", "<|im_end|>") in hits
    assert {i.screen for i in RatingItem.objects.filter(study=study) if i.pk not in (named.pk, debris.pk)} == {"clear"}
    assert named.screen == debris.screen == "pending"
    with pytest.raises(InvalidTransition, match="2 item.*not reviewed|2 item.*nobody has reviewed"):
        services.rating_study_open(study=study, actor=None)
    services.rating_item_screen_review(item=named, decision="keep", actor=None)
    with pytest.raises(InvalidTransition, match="1 item"):
        services.rating_study_open(study=study, actor=None)
    services.rating_item_screen_review(item=debris, decision="keep", actor=None)
    assert services.rating_study_open(study=study, actor=None).state == RatingStudy.State.OPEN


def test_a_study_without_hits_opens_at_once():
    study = make_study(n_items=3, n_clinicians=2, overlap=1)
    assert study.state == RatingStudy.State.OPEN and not study.screening_hits.exists()


def test_excluding_an_item_takes_it_out_of_every_queue_and_the_results_and_is_audited():
    from annotation.selectors import preference_pairs, rating_study_results

    study, named, debris = _study_with_flagged_items(n_clinicians=3, overlap=2)
    researcher = ResearcherFactory()
    before = Assignment.objects.filter(study=study).count()
    services.rating_item_screen_review(item=named, decision="exclude", actor=researcher)
    services.rating_item_screen_review(item=debris, decision="keep", actor=researcher)
    assignments = Assignment.objects.filter(study=study)
    assert before == 10 and assignments.count() == 8
    assert not assignments.filter(item=named).exists()
    per_item = Counter(assignments.values_list("item_id", flat=True))
    assert set(per_item.values()) == {2} and len(per_item) == 4  # every remaining item still has its overlap
    loads = Counter(assignments.values_list("clinician_id", flat=True))
    assert max(loads.values()) - min(loads.values()) <= 1
    for clinician_id in loads:
        positions = sorted(assignments.filter(clinician_id=clinician_id).values_list("position", flat=True))
        assert positions == list(range(1, len(positions) + 1))
    events = AuditEvent.objects.filter(action="annotation.item.screen_review").order_by("pk")
    assert [(e.details["item"], e.details["decision"], e.actor_id) for e in events] == [
        (named.token, "exclude", researcher.pk), (debris.token, "keep", researcher.pk)]

    services.rating_study_open(study=study, actor=None)
    for assignment in Assignment.objects.filter(study=study):
        services.judgment_submit(assignment=assignment, clinician=assignment.clinician, choices=screen_answers(study, "left"))
    results = rating_study_results(study, use_cache=False)
    assert results["study"]["items"] == 4 and results["study"]["excluded_items"] == 1
    assert named.scenario_ref not in {p["scenario_id"] for p in preference_pairs(study)}
    with pytest.raises(InvalidTransition, match="draft"):
        services.rating_item_screen_review(item=named, decision="keep", actor=None)


def test_a_screen_decision_and_its_audit_row_share_one_transaction(monkeypatch):
    from annotation.models import RatingItem

    study, named, _ = _study_with_flagged_items()

    def failing_audit(**kwargs):
        raise RuntimeError("audit log unavailable")

    monkeypatch.setattr(services.screen_review, "audit_record", failing_audit)
    with pytest.raises(RuntimeError):
        services.rating_item_screen_review(item=named, decision="exclude", actor=None)
    assert RatingItem.objects.get(pk=named.pk).screen == "pending"
    assert Assignment.objects.filter(study=study, item=named).exists()


def test_bad_screen_decisions_change_nothing():
    from annotation.models import RatingItem

    study, named, _ = _study_with_flagged_items()
    with pytest.raises(InvalidInput, match="keep or exclude"):
        services.rating_item_screen_review(item=named, decision="delete", actor=None)
    clear = RatingItem.objects.filter(study=study, screen="clear").first()
    with pytest.raises(InvalidInput, match="no self-identification hit"):
        services.rating_item_screen_review(item=clear, decision="exclude", actor=None)
    assert not AuditEvent.objects.filter(action="annotation.item.screen_review").exists()


def test_a_study_with_every_item_excluded_cannot_open():
    a, b = FixedSourceFactory(), FixedSourceFactory()
    scenario = ScenarioFactory()
    ResponseFactory(scenario=scenario, model_version=a, text="I'm ChatGPT.")
    ResponseFactory(scenario=scenario, model_version=b, text="Hello.")
    study = services.rating_study_create(name="all out", source_a=a, source_b=b, scenarios=[scenario],
                                         criteria_set=small_criteria_set(), clinicians=[ClinicianFactory()], overlap=1,
                                         actor=None)
    services.rating_item_screen_review(item=study.items.get(), decision="exclude", actor=None)
    assert not Assignment.objects.filter(study=study).exists()
    with pytest.raises(InvalidTransition, match="nothing to rate"):
        services.rating_study_open(study=study, actor=None)


def test_opening_screens_again_and_known_hits_keep_their_decision():
    from annotation.models import RatingItem, ScreeningHit
    from core.models import Response

    study, named, debris = _study_with_flagged_items()
    services.rating_item_screen_review(item=named, decision="keep", actor=None)
    services.rating_item_screen_review(item=debris, decision="keep", actor=None)
    clear = RatingItem.objects.filter(study=study, screen="clear").select_related("response_b").first()
    Response.objects.filter(pk=clear.response_b_id).update(text="Hi! I'm Gemma. Rest well.")
    with pytest.raises(InvalidTransition, match="1 item"):
        services.rating_study_open(study=study, actor=None)
    assert RatingItem.objects.get(pk=clear.pk).screen == "pending"
    assert RatingItem.objects.get(pk=named.pk).screen == "keep"  # unchanged text: still kept
    assert ScreeningHit.objects.filter(item=clear, matched="Gemma").exists()
    assert AuditEvent.objects.filter(action="annotation.study.screen", target_id=str(study.pk)).exists()
