"""What a clinician sees (annotation.selectors.clinicians): the rating page in screen terms."""
import pytest

from annotation import selectors
from annotation.models import Assignment

pytestmark = pytest.mark.django_db


def test_rating_page_is_in_screen_terms(worked_study):
    study, items, clinicians = worked_study
    assignment = Assignment.objects.get(study=study, clinician=clinicians[0], item=items[0])
    page = selectors.rating_page(assignment=assignment)
    left = items[0].response_a if assignment.left_is_a else items[0].response_b
    assert page["left_text"] == left.text
    overall = next(d for d in page["dimensions"] if d["key"] == "overall")
    assert overall["choice"] == assignment.side_of("a")
    assert page["progress"] == {"done": 4, "total": 4}
