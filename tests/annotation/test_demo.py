"""The demo loader: works before and after the demo accounts exist; reruns add nothing."""
import io

import pytest

from annotation import demo
from annotation.models import Assignment, RatingStudy
from core.models import Response
from core.services import scenario_bank_load
from tests.factories import ClinicianFactory

pytestmark = pytest.mark.django_db


def test_demo_is_robust_and_idempotent():
    out = io.StringIO()
    demo.load(out)
    assert "scenario bank is not loaded" in out.getvalue()
    scenario_bank_load()
    demo.load(out)  # no clinicians yet: responses, no study
    assert not RatingStudy.objects.exists()
    responses = Response.objects.count()
    assert responses == 2 * len(demo.RESPONSES)
    for username in demo.CLINICIANS:
        ClinicianFactory(username=username)
    demo.load(out)
    study = RatingStudy.objects.get(name=demo.STUDY_NAME)
    assert study.state == "open" and study.overlap == 2 and study.items.count() == len(demo.RESPONSES)
    assert Assignment.objects.filter(study=study).count() == 2 * len(demo.RESPONSES)
    demo.load(out)
    assert RatingStudy.objects.count() == 1 and Response.objects.count() == responses


def test_the_demo_study_draws_a_fresh_seed_each_time_it_is_created():
    scenario_bank_load()
    for username in demo.CLINICIANS:
        ClinicianFactory(username=username)
    seeds = set()
    for _ in range(3):
        demo.load(io.StringIO())
        study = RatingStudy.objects.get(name=demo.STUDY_NAME)
        seeds.add(study.seed)
        study.delete()
    assert len(seeds) == 3
