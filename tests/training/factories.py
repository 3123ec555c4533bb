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


# A CPU-demo experiment on tiny models, small enough to run every stage in seconds.
TINY_DEMO = {
    "preset": "cpu_demo", "base_model": "tiny", "reward_backbone": "tiny", "train_scenarios": 6, "test_scenarios": 3,
    "personas_train": 3, "personas_test": 3, "personas_per_scenario": 3, "candidates_per_scenario": 3, "max_new_tokens": 8,
    "policy_max_steps": 2, "policy_save_steps": 1, "reward_max_steps": 2, "lora_rank": 4, "criteria_set": "therapeutic_four_safety",
    "reward_validation_fraction": 0.34,
}
