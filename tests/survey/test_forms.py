"""survey.forms: the inputs the participant pages show, made in Python and escaped; and
PersonaSelectionForm over HTTP as a researcher: sizes, seed and minimum quality are
range-checked; bad values show a clear error and select nothing."""
import pytest

from survey import forms, questions
from survey.models import Persona, PersonaSelection
from tests.survey.factories import complete_participant

pytestmark = pytest.mark.django_db


def test_an_option_input_is_escaped_and_carries_its_state():
    html = forms.option_input(kind="radio", name='a"b', option_id="id<1>", value="x&'y", checked=True, required=True)
    assert html == '<input type="radio" name="a&quot;b" id="id&lt;1&gt;" value="x&amp;&#x27;y" checked required>'
    html = forms.option_input(kind="checkbox", name="k", option_id="i", value=3, checked=False, required=False, exclusive=True)
    assert html == '<input type="checkbox" name="k" id="i" value="3" data-exclusive>'


def test_choice_fields_tick_the_saved_values_and_mark_prefer_not_to_say_exclusive():
    multiple = next(item for item in questions.BACKGROUND if item.multiple)
    single = next(item for item in questions.BACKGROUND if not item.multiple)
    chosen = [value for value, _label in multiple.choices][:2]
    fields = forms.choice_fields([multiple, single], {multiple.key: {"value": chosen}, single.key: {"value": single.choices[1][0]}}, {})
    for option, (value, _label) in zip(fields[0]["options"], multiple.choices):
        assert ('type="checkbox"' in option["input"]) and ("required" not in option["input"])
        assert (" checked" in option["input"]) == (value in chosen)
        assert (" data-exclusive" in option["input"]) == (value == "prefer_not_to_say")
    ticked = [o["input"] for o in fields[1]["options"] if " checked" in o["input"]]
    assert len(ticked) == 1 and f'value="{single.choices[1][0]}"' in ticked[0]
    assert all('type="radio"' in o["input"] and o["input"].endswith(" required>") for o in fields[1]["options"])


def test_rank_options_select_the_rank():
    items = forms.criteria_ranking_items([type("C", (), {"key": k, "name": k, "question": ""}) for k in "abc"], {"a": "3", "b": "1", "c": "2"})
    assert [i["key"] for i in items] == ["b", "c", "a"]  # in rank order
    assert items[2]["rank_options"] == '<option value="1">1</option><option value="2">2</option><option value="3" selected>3</option>'


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
