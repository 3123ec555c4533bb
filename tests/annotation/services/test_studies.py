"""Rating studies (annotation.services.studies): assignment, fresh secret seeds, the coin for source A,
refused settings, rater refusals, audited transitions."""
import random
from collections import Counter

import pytest

from annotation import services
from annotation.exceptions import InvalidInput, InvalidTransition
from annotation.models import Assignment, RatingStudy
from annotation.selectors import study_dimension_keys
from core.models import AuditEvent
from tests.annotation.factories import FixedSourceFactory, make_study, paired_scenarios, small_criteria_set
from tests.factories import ClinicianFactory, ResearcherFactory, ResponseFactory, ScenarioFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_study_create_assigns_every_item_to_overlap_distinct_clinicians():
    study = make_study(n_items=7, n_clinicians=5, overlap=3)
    assert study.state == RatingStudy.State.OPEN
    assert study.items.count() == 7
    per_item = Counter(Assignment.objects.filter(study=study).values_list("item_id", flat=True))
    assert len(per_item) == 7 and set(per_item.values()) == {3}
    loads = Counter(Assignment.objects.filter(study=study).values_list("clinician_id", flat=True))
    assert max(loads.values()) - min(loads.values()) <= 1
    # Each clinician's queue is numbered 1..n; left/right comes from the stored seed.
    for clinician_id in loads:
        positions = sorted(Assignment.objects.filter(study=study, clinician_id=clinician_id).values_list("position", flat=True))
        assert positions == list(range(1, len(positions) + 1))
    for assignment in Assignment.objects.filter(study=study):
        assert assignment.left_is_a == (random.Random(assignment.position_seed).random() < 0.5)
    assert study_dimension_keys(study) == ["empathy", "safety", "overall"]
    event = AuditEvent.objects.get(action="annotation.study.create")
    assert event.target_id == str(study.pk) and event.details["items"] == 7


def _layout(study):
    """The study's assignments as (scenario, clinician, position, left_is_a)."""
    return sorted(Assignment.objects.filter(study=study).values_list("item__scenario_id", "clinician_id", "position", "left_is_a"))


def test_overlap_all_and_the_stored_seed_reproduces_the_layout():
    clinicians = [ClinicianFactory() for _ in range(3)]
    a, b = FixedSourceFactory(), FixedSourceFactory()
    scenarios = paired_scenarios(5, a, b)
    study = services.rating_study_create(
        name="one", overlap="all", source_a=a, source_b=b, scenarios=scenarios, criteria_set=small_criteria_set(),
        clinicians=clinicians, actor=None,
    )
    assert study.overlap == 3 and study.overlap_all
    assert Assignment.objects.filter(study=study).count() == 15
    # For audit after close: the seed alone recomputes every assignment, order and side.
    members = sorted(clinicians, key=lambda u: u.pk)
    items = list(study.items.order_by("order"))
    recomputed = sorted(
        (items[p.item].scenario_id, members[p.clinician].pk, p.position, p.left_is_a)
        for p in services.study_layout(seed=study.seed, n_items=5, n_clinicians=3, overlap=3)
    )
    assert recomputed == _layout(study)


def _same_settings_study(name, a, b, scenarios, clinicians, **kwargs):
    return services.rating_study_create(
        name=name, source_a=a, source_b=b, scenarios=scenarios, criteria_set=small_criteria_set(),
        clinicians=clinicians, overlap=2, actor=None, **kwargs,
    )


def test_studies_with_identical_settings_get_fresh_secret_seeds_and_different_positions():
    clinicians = [ClinicianFactory() for _ in range(3)]
    a, b = FixedSourceFactory(), FixedSourceFactory()
    scenarios = paired_scenarios(12, a, b)
    first = _same_settings_study("first", a, b, scenarios, clinicians, keep_source_order=True)
    second = _same_settings_study("second", a, b, scenarios, clinicians, keep_source_order=True)
    assert first.seed != second.seed
    # 24 assignments: the chance two independent layouts coincide is negligible (< 2**-24 on sides alone).
    assert _layout(first) != _layout(second)
    sides = lambda study: [x[3] for x in _layout(study)]  # noqa: E731
    assert sides(first) != sides(second)


def test_a_coin_decides_which_source_is_a_unless_the_caller_keeps_the_order():
    clinicians = [ClinicianFactory() for _ in range(2)]
    a, b = FixedSourceFactory(), FixedSourceFactory()
    scenarios = paired_scenarios(2, a, b)
    firsts = {_same_settings_study(f"coin {i}", a, b, scenarios, clinicians).source_a_id for i in range(20)}
    assert firsts == {a.pk, b.pk}  # all 20 coins landing the same way: p = 2**-19
    kept = {_same_settings_study(f"kept {i}", a, b, scenarios, clinicians, keep_source_order=True).source_a_id
            for i in range(5)}
    assert kept == {a.pk}


def test_items_keep_each_source_s_own_response_whichever_is_a():
    clinicians = [ClinicianFactory() for _ in range(2)]
    a, b = FixedSourceFactory(), FixedSourceFactory()
    scenarios = paired_scenarios(3, a, b)
    for i in range(6):
        study = _same_settings_study(f"map {i}", a, b, scenarios, clinicians)
        for item in study.items.select_related("response_a", "response_b"):
            assert item.response_a.model_version_id == study.source_a_id
            assert item.response_b.model_version_id == study.source_b_id


def test_the_scenario_sample_comes_from_the_study_seed():
    clinicians = [ClinicianFactory() for _ in range(2)]
    a, b = FixedSourceFactory(), FixedSourceFactory()
    scenarios = paired_scenarios(30, a, b)
    samples = set()
    for i in range(4):
        study = _same_settings_study(f"sample {i}", a, b, scenarios, clinicians, sample_size=5)
        chosen = tuple(study.items.order_by("scenario_id").values_list("scenario_id", flat=True))
        assert len(chosen) == 5
        samples.add(chosen)
    assert len(samples) > 1  # the same five of thirty four times running: p < 1e-15
    with pytest.raises(InvalidInput, match="sample"):
        _same_settings_study("bad sample", a, b, scenarios, clinicians, sample_size=0)


def test_no_caller_can_choose_the_seed():
    a, b = FixedSourceFactory(), FixedSourceFactory()
    with pytest.raises(TypeError):
        _same_settings_study("chosen", a, b, paired_scenarios(1, a, b), [ClinicianFactory()], seed=1)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"overlap": 4}, "overlap"),
        ({"overlap": 0}, "overlap"),
        ({"overlap": "most"}, "overlap"),
        ({"scenarios": []}, "scenario"),
        ({"clinicians": []}, "clinician"),
        ({"name": " "}, "name"),
        ("same_sources", "two different sources"),
        ("not_clinician", "not active clinicians"),
        ("missing_response", "lack a response"),
    ],
)
def test_study_create_rejects_bad_settings_and_writes_nothing(change, message):
    a, b = FixedSourceFactory(), FixedSourceFactory()
    scenarios = paired_scenarios(3, a, b)
    kwargs = dict(name="bad", source_a=a, source_b=b, scenarios=scenarios, criteria_set=small_criteria_set(),
                  clinicians=[ClinicianFactory() for _ in range(3)], overlap=2, actor=None)
    if change == "same_sources":
        kwargs["source_b"] = a
    elif change == "not_clinician":
        kwargs["clinicians"] = kwargs["clinicians"][:2] + [UserFactory()]
    elif change == "missing_response":
        lonely = ScenarioFactory()
        ResponseFactory(scenario=lonely, model_version=a)
        kwargs["scenarios"] = scenarios + [lonely]
    else:
        kwargs.update(change)
    with pytest.raises(InvalidInput, match=message):
        services.rating_study_create(**kwargs)
    assert not RatingStudy.objects.exists() and not AuditEvent.objects.filter(action="annotation.study.create").exists()


def test_study_transitions_are_audited():
    study = make_study(n_items=1, n_clinicians=1, overlap=1, open_now=False)
    researcher = ResearcherFactory()
    assert study.state == "draft"
    with pytest.raises(InvalidTransition):
        services.rating_study_close(study=study, actor=researcher)
    services.rating_study_open(study=study, actor=researcher)
    services.rating_study_close(study=study, actor=researcher)
    study = services.rating_study_open(study=study, actor=researcher)
    assert study.state == "open" and study.closed_at is None
    actions = list(AuditEvent.objects.filter(target_id=str(study.pk), action__startswith="annotation.study.").order_by("id")
                   .values_list("action", flat=True))
    assert actions == ["annotation.study.create", "annotation.study.open", "annotation.study.close", "annotation.study.open"]


@pytest.mark.parametrize("access", ["staff", "superuser", "researchers_group"])
def test_people_with_researcher_access_cannot_be_raters(access):
    from django.contrib.auth.models import Group

    from core import roles

    a, b = FixedSourceFactory(), FixedSourceFactory()
    rater = ClinicianFactory()
    if access == "researchers_group":
        rater.groups.add(Group.objects.get_or_create(name=roles.RESEARCHERS)[0])
    else:
        setattr(rater, "is_staff" if access == "staff" else "is_superuser", True)
        rater.save()
    with pytest.raises(InvalidInput, match=f"researcher access .*cannot rate.*{rater.username}"):
        services.rating_study_create(
            name="with a researcher", source_a=a, source_b=b, scenarios=paired_scenarios(2, a, b),
            criteria_set=small_criteria_set(), clinicians=[ClinicianFactory(), rater], overlap=1, actor=None,
        )
    assert not RatingStudy.objects.exists() and not Assignment.objects.exists()
    assert not AuditEvent.objects.filter(action="annotation.study.create").exists()
