"""Weight vectors (survey.services.weights)."""
import numpy as np
import pytest

from survey import selectors, services
from survey.exceptions import InvalidAnswer
from survey.models import WeightVector
from tests.survey.factories import _cohort

pytestmark = pytest.mark.django_db


def test_weight_vector_from_a_known_ordering_comes_out_in_order(study, researcher):
    order = ["safety", "empathy", "trust_rapport", "active_listening", "patient_autonomy", "self_motivated_change"]
    _cohort(study, 40, order, np.random.default_rng(7))
    vector = services.weight_vector_create(study=study, name="all", actor=researcher, n_boot=30)
    assert sorted(vector.weights, key=lambda k: -vector.weights[k]) == order
    assert abs(sum(vector.weights.values()) - 1) < 1e-5
    for key, (low, high) in vector.intervals.items():
        assert low <= vector.weights[key] <= high
    importance = services.weight_vector_create(study=study, name="all-importance", method="importance", n_boot=50)
    ordered = sorted(importance.weights, key=lambda k: -importance.weights[k])
    assert ordered[0] in order[:2] and ordered[-1] in order[-2:]
    again = services.weight_vector_create(study=study, name="all", n_boot=5)
    assert again.version == 2
    subgroup = services.weight_vector_create(study=study, name="young", cohort={"age_group": "18_24"}, n_boot=5)
    assert subgroup.participant_count == 20 and subgroup.dataset_version.participant_count == 20
    assert selectors.weight_vectors_for_training(study=study, names=["all"]) == {"all": again.weights}
    with pytest.raises(InvalidAnswer, match="unknown cohort field"):
        services.weight_vector_create(study=study, name="bad", cohort={"shoe_size": "9"})
    with pytest.raises(InvalidAnswer, match="not a value"):
        services.weight_vector_create(study=study, name="bad", cohort={"diagnoses": "flu"})
    with pytest.raises(InvalidAnswer, match="short name"):
        services.weight_vector_create(study=study, name="Not A Slug")
    assert WeightVector.objects.filter(study=study).count() == 4
