"""annotation.forms.RatingStudyCreateForm over HTTP as a researcher: numbers are range-checked."""
import pytest

from annotation.models import RatingStudy
from tests.annotation.factories import FixedSourceFactory, small_criteria_set
from tests.factories import ClinicianFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("field, value, message", [
    ("sample_index", str(10**30), "Ensure this value is less than or equal to 10000."),
    ("sample_index", "-1", "Ensure this value is greater than or equal to 0."),
    ("scenario_limit", str(10**30), "Ensure this value is less than or equal to"),
])
def test_huge_and_negative_numbers_are_named(client, researcher, field, value, message):
    source_a, source_b = FixedSourceFactory(), FixedSourceFactory()
    criteria_set = small_criteria_set(("empathy",))
    clinician = ClinicianFactory()
    client.force_login(researcher)
    form = {"name": "range", "source_a": source_a.pk, "source_b": source_b.pk, "sample_index": "0",
            "criteria_set": criteria_set.pk, "scenario_split": "", "scenario_limit": "10", "clinicians": [clinician.pk],
            "overlap": "all", field: value}
    response = client.post("/admin/annotation/ratingstudy/add/", form)
    assert response.status_code in (200, 400)
    assert message in response.content.decode()
    assert not RatingStudy.objects.exists()
