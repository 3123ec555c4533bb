"""Factories for test data (factory_boy)."""
import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from core import roles
from core.models import ModelVersion, Response, Scenario

PASSWORD = "correct horse battery staple"  # every factory user's, for the tests that sign in through a form


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password(PASSWORD)


class ClinicianFactory(UserFactory):
    username = factory.Sequence(lambda n: f"clinician{n}")

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        if create:
            self.groups.add(Group.objects.get_or_create(name=roles.CLINICIANS)[0])


class ResearcherFactory(UserFactory):
    username = factory.Sequence(lambda n: f"researcher{n}")
    is_staff = True

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        if create:
            self.groups.add(roles.ensure_groups())


class ScenarioFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Scenario

    text = factory.Sequence(lambda n: f"I have been feeling on edge at work for weeks now, scenario number {n}.")
    source = "test"
    external_id = factory.Sequence(lambda n: f"t-{n}")
    split = Scenario.Split.TRAIN


class ModelVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelVersion

    name = factory.Sequence(lambda n: f"model-{n}")
    kind = ModelVersion.Kind.BASE
    model_ref = "tiny-test"


class ResponseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Response

    scenario = factory.SubFactory(ScenarioFactory)
    model_version = factory.SubFactory(ModelVersionFactory)
    text = factory.Sequence(lambda n: f"That sounds really hard. Response {n}.")
    sample_index = 0
