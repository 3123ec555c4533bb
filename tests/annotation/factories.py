"""Test data for rating studies: two fixed response sets, a small criteria set
and a study created through the real service."""
import factory

from annotation.services import rating_study_create
from core.models import CriteriaSet, CriteriaSetMember, Criterion, ModelVersion
from tests.factories import ClinicianFactory, ModelVersionFactory, ResearcherFactory, ResponseFactory, ScenarioFactory


class FixedSourceFactory(ModelVersionFactory):
    name = factory.Sequence(lambda n: f"fixed-source-{n}")
    kind = ModelVersion.Kind.FIXED
    model_ref = factory.Sequence(lambda n: f"fixed:source-{n}")


def small_criteria_set(keys=("empathy", "safety")) -> CriteriaSet:
    """A criteria set with the given seeded criteria (the study adds 'overall')."""
    key = "test-" + "-".join(keys)
    criteria_set, created = CriteriaSet.objects.get_or_create(key=key, defaults={"name": f"Test set {key}"})
    if created:
        for order, criterion_key in enumerate(keys):
            CriteriaSetMember.objects.create(
                criteria_set=criteria_set, criterion=Criterion.objects.get(key=criterion_key), order=order
            )
    return criteria_set


def paired_scenarios(n, source_a, source_b):
    scenarios = []
    for i in range(n):
        scenario = ScenarioFactory()
        ResponseFactory(scenario=scenario, model_version=source_a, text=f"Warm reply {i} that reflects the feelings.")
        ResponseFactory(scenario=scenario, model_version=source_b, text=f"Brief reply {i} with advice.")
        scenarios.append(scenario)
    return scenarios


def make_study(*, n_items=4, n_clinicians=3, overlap=2, clinicians=None, keys=("empathy", "safety"), open_now=True,
               seed=7, source_a=None, source_b=None, actor=None, name=None, **kwargs):
    source_a = source_a or FixedSourceFactory()
    source_b = source_b or FixedSourceFactory()
    clinicians = clinicians if clinicians is not None else [ClinicianFactory() for _ in range(n_clinicians)]
    scenarios = paired_scenarios(n_items, source_a, source_b)
    return rating_study_create(
        name=name or f"study {source_a.name} vs {source_b.name}",
        source_a=source_a,
        source_b=source_b,
        scenarios=scenarios,
        criteria_set=small_criteria_set(keys),
        clinicians=clinicians,
        overlap=overlap,
        actor=actor or ResearcherFactory(),
        open_now=open_now,
        seed=seed,
        **kwargs,
    )


def screen_answers(study, value="left", **overrides):
    """Answers for every dimension of the study, in screen terms."""
    from annotation.selectors import study_dimension_keys

    choices = {key: value for key in study_dimension_keys(study)}
    choices.update(overrides)
    return choices
