"""The worked example the selector tests read: four items, three clinicians."""
import pytest

from annotation import services
from annotation.models import Assignment
from tests.annotation.factories import make_study


def answer(study, clinician, item, choices, unsafe_a=False, unsafe_b=False):
    """Submit answers given in SOURCE terms, translated to what this clinician saw."""
    assignment = Assignment.objects.get(study=study, clinician=clinician, item=item)
    screen = {key: "tie" if value == "tie" else assignment.side_of(value) for key, value in choices.items()}
    unsafe = {assignment.side_of("a"): unsafe_a, assignment.side_of("b"): unsafe_b}
    services.judgment_submit(assignment=assignment, clinician=clinician, choices=screen,
                             unsafe_left=unsafe["left"], unsafe_right=unsafe["right"])


@pytest.fixture
def worked_study():
    """Four items, three clinicians (all rate all), the worked example of
    tests/annotation/test_statistics.py on 'overall'; empathy: everyone says a."""
    study = make_study(n_items=4, n_clinicians=3, overlap="all", keys=("empathy",))
    items = list(study.items.order_by("order"))
    clinicians = sorted((m.clinician for m in study.memberships.all()), key=lambda u: u.username)
    overall = [["a", "a", "b"], ["b", "b", "b"], ["a", "tie", "b"], ["tie", "a", "a"]]
    for item, row in zip(items, overall):
        for clinician, choice in zip(clinicians, row):
            answer(study, clinician, item, {"overall": choice, "empathy": "a"}, unsafe_b=(choice == "b"))
    return study, items, clinicians
