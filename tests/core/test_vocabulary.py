from core.models import CriteriaSet, Criterion


def test_criteria_and_sets_are_seeded(db):
    therapeutic = set(Criterion.objects.filter(is_therapeutic=True).values_list("key", flat=True))
    assert therapeutic == {"empathy", "active_listening", "self_motivated_change", "trust_rapport", "patient_autonomy", "safety"}
    assert Criterion.objects.get(key="overall").evaluation_only
    assert Criterion.objects.filter(key__startswith="maxim_").count() == 4
    sets = {s.key: [c.key for c in s.ordered_criteria()] for s in CriteriaSet.objects.all()}
    assert sets["therapeutic_five_safety"][-1] == "safety" and len(sets["therapeutic_five_safety"]) == 6
    assert "active_listening" not in sets["therapeutic_four_safety"] and len(sets["therapeutic_four_safety"]) == 5
    assert sets["gricean_safety"] == ["maxim_quantity", "maxim_quality", "maxim_relation", "maxim_manner", "safety"]
    for criteria_set in CriteriaSet.objects.all():
        assert criteria_set.safety_criterion.key == "safety"
    for criterion in Criterion.objects.all():
        assert criterion.question and criterion.better_when and criterion.worse_when


def test_seeding_is_idempotent(db):
    from core.services import vocabulary_seed

    before = Criterion.objects.count()
    vocabulary_seed()
    vocabulary_seed()
    assert Criterion.objects.count() == before
    assert CriteriaSet.objects.get(key="gricean_safety").members.count() == 5
