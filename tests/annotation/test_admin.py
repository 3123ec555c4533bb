"""Researcher pages in the admin: create through the service, results, exports,
judge import; clinicians reach none of them."""
import io

import pytest
from django.urls import reverse

from annotation.models import Assignment, JudgeDecision, RatingStudy
from annotation.services import judgment_submit
from core.models import AuditEvent
from tests.factories import ClinicianFactory, ResearcherFactory

from .factories import FixedSourceFactory, make_study, paired_scenarios, screen_answers, small_criteria_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def rated_study():
    study = make_study(n_items=3, n_clinicians=2, overlap=2)
    for membership in study.memberships.all():
        for assignment in Assignment.objects.filter(study=study, clinician=membership.clinician):
            judgment_submit(assignment=assignment, clinician=membership.clinician, choices=screen_answers(study, assignment.side_of("a")))
    return study


def test_admin_creates_a_study_through_the_service(client):
    researcher = ResearcherFactory()
    clinicians = [ClinicianFactory() for _ in range(3)]
    a, b = FixedSourceFactory(), FixedSourceFactory()
    paired_scenarios(5, a, b)
    client.force_login(researcher)
    url = reverse("admin:annotation_ratingstudy_add")
    assert client.get(url).status_code == 200
    data = {"name": "admin study", "source_a": a.pk, "source_b": b.pk, "sample_index": 0,
            "criteria_set": small_criteria_set().pk, "include_overall": "on", "scenario_split": "", "scenario_limit": 4,
            "clinicians": [c.pk for c in clinicians], "overlap": "2", "open_now": "on"}
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    study = RatingStudy.objects.get(name="admin study")
    assert study.state == "open" and study.items.count() == 4 and Assignment.objects.filter(study=study).count() == 8
    assert AuditEvent.objects.filter(action="annotation.study.create", actor=researcher).exists()
    bad = client.post(url, {**data, "name": "another", "overlap": "7"})
    assert bad.status_code == 400 and "overlap" in bad.content.decode()


def test_results_page_exports_and_import(client, rated_study):
    study = rated_study
    client.force_login(ResearcherFactory())
    page = client.get(reverse("admin:annotation_ratingstudy_results", args=[study.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "Fleiss" in html and "Krippendorff" in html and "<svg" in html and study.source_a.name in html
    # Everyone preferred source A everywhere: kappa does not exist, and the page says so.
    assert 'class="undefined"' in html
    chart = client.get(reverse("admin:annotation_ratingstudy_chart", args=[study.pk]))
    assert chart["Content-Type"] == "image/svg+xml"
    csv_response = client.get(reverse("admin:annotation_ratingstudy_export_judgments", args=[study.pk]))
    assert csv_response.status_code == 200 and "attachment" in csv_response["Content-Disposition"]
    assert len(csv_response.content.decode().strip().splitlines()) == 1 + 3 * 2 * 3
    pairs = client.get(reverse("admin:annotation_ratingstudy_export_pairs", args=[study.pk]))
    assert len(pairs.content.decode().strip().splitlines()) == 9
    assert AuditEvent.objects.filter(action__startswith="annotation.export.").count() == 2

    import_url = reverse("admin:annotation_ratingstudy_judge_import", args=[study.pk])
    item = study.items.first()
    bad = io.BytesIO(f"scenario_id,criterion,choice\ns{item.scenario_id},overall,left\n".encode())
    bad.name = "judge.csv"
    response = client.post(import_url, {"judge_name": "gpt", "file": bad})
    assert response.status_code == 400 and "choice must be" in response.content.decode()
    assert not JudgeDecision.objects.exists()
    good = io.BytesIO(f"scenario_id,criterion,choice\ns{item.scenario_id},overall,source_a\n".encode())
    good.name = "judge.csv"
    response = client.post(import_url, {"judge_name": "gpt", "file": good})
    assert response.status_code == 302 and JudgeDecision.objects.count() == 1
    change = client.get(reverse("admin:annotation_ratingstudy_change", args=[study.pk]))
    assert change.status_code == 200 and "Close the study" in change.content.decode()
    client.post(reverse("admin:annotation_ratingstudy_state", args=[study.pk, "close"]))
    study.refresh_from_db()
    assert study.state == "closed"


def test_clinicians_cannot_reach_researcher_pages(client, rated_study):
    clinician = rated_study.memberships.first().clinician
    client.force_login(clinician)
    for name in ("results", "chart", "export_judgments", "export_pairs", "judge_import"):
        response = client.get(reverse(f"admin:annotation_ratingstudy_{name}", args=[rated_study.pk]))
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert not AuditEvent.objects.filter(action__startswith="annotation.export.").exists()


def test_results_of_a_study_nobody_has_rated_yet(client):
    study = make_study(n_items=2, n_clinicians=2, overlap=1, open_now=False)
    client.force_login(ResearcherFactory())
    page = client.get(reverse("admin:annotation_ratingstudy_results", args=[study.pk]))
    assert page.status_code == 200 and "No judgments yet" in page.content.decode()


def test_the_create_form_offers_no_seed():
    from annotation.forms import RatingStudyCreateForm

    assert "seed" not in RatingStudyCreateForm().fields
