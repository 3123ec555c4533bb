import factory

from training.models import Experiment, Job
from training.plans import ExperimentConfig


class ExperimentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Experiment

    name = factory.Sequence(lambda n: f"experiment-{n}")
    preset = "cpu_demo"
    config = factory.LazyFunction(lambda: ExperimentConfig(base_model="tiny", reward_backbone="tiny").to_dict())
    output_dir = factory.LazyAttribute(lambda o: f"/tmp/attune-test-experiments/{o.name}")


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    experiment = factory.SubFactory(ExperimentFactory)
    key = factory.Sequence(lambda n: f"stage-{n}")
    kind = "fake"
    state = Job.State.QUEUED
