"""survey.forms.PersonaSelectionForm over HTTP as a researcher: sizes, seed and
minimum quality are range-checked; bad values show a clear error and select nothing."""
import pytest

from survey.models import Persona, PersonaSelection
from tests.survey.factories import complete_participant

pytestmark = pytest.mark.django_db


@pytest.fixture
def built(client, researcher, study):
    for _ in range(3):
        complete_participant(study)
    client.force_login(researcher)
    client.post(f"/study/manage/{study.slug}/personas/", {"action": "build"})
    assert Persona.objects.count() == 3
    return study


def select(client, study, **values):
    return client.post(f"/study/manage/{study.slug}/personas/", {"action": "select", **values}, follow=True)


@pytest.mark.parametrize("values, message", [
    ({"total": str(10**30), "train": str(10**30), "test": "0"}, "Total: Ensure this value is less than or equal to 100000."),
    ({"total": "3", "train": "2", "test": "1", "seed": str(10**30)}, "Seed: Ensure this value is less than or equal to 4294967295."),
    ({"total": "3", "train": "2", "test": "1", "seed": "-1"}, "Seed: Ensure this value is greater than or equal to 0."),
    ({"total": "-3", "train": "-2", "test": "-1"}, "Total: Ensure this value is greater than or equal to 1."),
    ({"total": "3", "train": "2", "test": "1", "min_quality": "inf"}, "Minimum quality: Enter a number between 0 and 1."),
    ({"total": "3", "train": "2", "test": "1", "min_quality": "nan"}, "Minimum quality: Enter a number between 0 and 1."),
    ({"total": "3", "train": "2", "test": "1", "min_quality": "1e308"}, "Minimum quality: Ensure this value is less than or equal to 1"),
    ({"total": "3", "train": "2", "test": "2"}, "Train (2) plus test (2) must equal the total (3)."),
])
def test_out_of_range_values_are_refused_with_a_message(client, built, values, message):
    response = select(client, built, **values)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not PersonaSelection.objects.exists() and not Persona.objects.filter(selected=True).exists()


def test_values_in_range_select(client, built):
    response = select(client, built, total="3", train="2", test="1", seed=str(2**32 - 1), min_quality="0")
    assert response.status_code == 200 and "Selected 3 personas" in response.content.decode()
    assert PersonaSelection.objects.get().seed == 2**32 - 1
