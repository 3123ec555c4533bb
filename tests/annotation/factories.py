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
               source_a=None, source_b=None, actor=None, name=None, **kwargs):
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
        **kwargs,
    )


def screen_answers(study, value="left", **overrides):
    """Answers for every dimension of the study, in screen terms."""
    from annotation.selectors import study_dimension_keys

    choices = {key: value for key in study_dimension_keys(study)}
    choices.update(overrides)
    return choices


SECRET_A = dict(
    pk=987651, name="secret-modpo-empathy-safety", kind=ModelVersion.Kind.CHECKPOINT,
    model_ref="/srv/models/secret-ckpt-7731", path="/srv/artifacts/run-5521/policy", sha256="deadbeef" * 8,
    provenance={"method": "modpo-w0.73", "dataset_version": "dsv-4419", "seed": 918273},
)
SECRET_B = dict(
    pk=987652, name="baseline-smollm-q8", kind=ModelVersion.Kind.BASE,
    model_ref="smollm2-135m-instruct-gguf", path="/var/cache/models/smollm-3391", sha256="cafebabe" * 8,
    provenance={"method": "base-untrained-8812", "config": {"lr": "3.3e-7"}},
)


def secret_sources():
    """Two sources whose every identifying value is distinctive enough to search for."""
    return ModelVersion.objects.create(**SECRET_A), ModelVersion.objects.create(**SECRET_B)


def secret_scenarios(n, source_a, source_b, first_response_pk=876541):
    scenarios = []
    pk = first_response_pk
    for i in range(n):
        scenario = ScenarioFactory(text=f"I keep waking at four and my thoughts race about work, post {i}.")
        for source, text in ((source_a, f"It sounds exhausting to wake like that, night {i}."),
                             (source_b, f"Try a sleep routine and less caffeine, night {i}.")):
            ResponseFactory(pk=pk, scenario=scenario, model_version=source, text=text,
                            generation_settings={"temperature": 0.8123, "top_p": 0.9517}, seed=55443322 + pk)
            pk += 1
        scenarios.append(scenario)
    return scenarios


def identifying_strings(*sources) -> list[str]:
    """Every value that would reveal which model wrote a response."""
    from core.models import Response

    values = []

    def flatten(value):
        if isinstance(value, dict):
            for v in value.values():
                flatten(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                flatten(v)
        elif value not in (None, ""):
            values.append(str(value))

    for source in sources:
        values += [source.name, str(source.pk), source.model_ref, source.path, source.sha256]
        flatten(source.provenance)
        for response in Response.objects.filter(model_version=source):
            values.append(str(response.pk))
            values.append(str(response.seed))
            flatten(response.generation_settings)
    return [v for v in values if v]


def assert_blind(text: str, secrets: list[str], where: str = ""):
    leaked = [s for s in secrets if s in text]
    assert not leaked, f"{where} reveals {leaked}"
