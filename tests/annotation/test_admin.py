"""Researcher pages in the admin: create through the service, results, exports,
judge import; clinicians reach none of them."""
import io

import pytest
from django.urls import reverse

from annotation.models import Assignment, JudgeDecision, RatingStudy
from annotation.services import judgment_submit
from core.models import AuditEvent
from tests.factories import ClinicianFactory, ResearcherFactory

from .factories import FixedSourceFactory, assert_blind, make_study, paired_scenarios, screen_answers, small_criteria_set

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


def _every_page_about(client, study, researcher, clinician):
    """Every admin page, export and API response that concerns the study, as text."""
    from annotation.models import Judgment, JudgmentRevision

    client.force_login(researcher)
    urls = [
        reverse("admin:annotation_ratingstudy_changelist"),
        reverse("admin:annotation_ratingstudy_change", args=[study.pk]),
        reverse("admin:annotation_ratingstudy_results", args=[study.pk]),
        reverse("admin:annotation_ratingstudy_chart", args=[study.pk]),
        reverse("admin:annotation_ratingstudy_export_judgments", args=[study.pk]),
        reverse("admin:annotation_ratingstudy_export_pairs", args=[study.pk]),
        reverse("admin:annotation_ratingstudy_judge_import", args=[study.pk]),
        reverse("annotation:api-results", args=[study.pk]),
        reverse("admin:core_auditevent_changelist"),
        reverse("admin:annotation_judgment_changelist"),
        reverse("admin:annotation_judgmentrevision_changelist"),
    ]
    urls += [reverse("admin:core_auditevent_change", args=[pk]) for pk in AuditEvent.objects.values_list("pk", flat=True)]
    urls += [reverse("admin:annotation_judgment_change", args=[pk]) for pk in Judgment.objects.values_list("pk", flat=True)]
    urls += [reverse("admin:annotation_judgmentrevision_change", args=[pk])
             for pk in JudgmentRevision.objects.values_list("pk", flat=True)]
    texts = []
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        texts.append(response.content.decode())
    client.force_login(clinician)
    urls = [reverse("annotation:queue"), reverse("annotation:api-queue")]
    for assignment in Assignment.objects.filter(study=study, clinician=clinician):
        urls += [reverse("annotation:item", args=[assignment.token]), reverse("annotation:api-item", args=[assignment.token])]
    texts += [client.get(url).content.decode() for url in urls]
    client.logout()
    return "\n".join(texts)


def test_the_seed_is_shown_nowhere_while_the_study_is_open_and_on_the_results_page_after_close(client):
    from annotation.services import rating_study_close, rating_study_open

    researcher = ResearcherFactory()
    study = make_study(n_items=3, n_clinicians=2, overlap=2, open_now=False)
    clinician = study.memberships.first().clinician
    secrets = [str(study.seed)] + [str(s) for s in Assignment.objects.filter(study=study).values_list("position_seed", flat=True)]
    assert not [s for s in secrets if s in _every_page_about(client, study, researcher, clinician)], "draft"
    rating_study_open(study=study, actor=researcher)
    for assignment in Assignment.objects.filter(study=study, clinician=clinician):
        judgment_submit(assignment=assignment, clinician=clinician, choices=screen_answers(study, "left"), comment="fine")
    everything = _every_page_about(client, study, researcher, clinician)
    assert not [s for s in secrets if s in everything], "open"
    assert "secret while the study is a draft or open" in everything

    rating_study_close(study=study, actor=researcher)
    client.force_login(researcher)
    results = client.get(reverse("admin:annotation_ratingstudy_results", args=[study.pk])).content.decode()
    assert str(study.seed) in results and "study is closed, so its random seed is revealed" in results
    # The audit row committed to this very seed when the study was created.
    from annotation.services import seed_commitment

    event = AuditEvent.objects.get(action="annotation.study.create", target_id=str(study.pk))
    assert event.details["seed_sha256"] == seed_commitment(study.seed) and "seed" not in event.details


def _promote_to_researcher(user):
    """A rater later given researcher rights (staff and the Researchers group)."""
    from core import roles

    user.is_staff = True
    user.save(update_fields=["is_staff"])
    user.groups.add(roles.ensure_groups())
    return user


def test_a_rater_with_researcher_rights_sees_nothing_of_the_study(client):
    from .factories import identifying_strings, secret_scenarios, secret_sources
    from annotation.services import rating_study_create

    source_a, source_b = secret_sources()
    rater = ClinicianFactory()
    study = rating_study_create(
        name="secret-modpo-empathy-safety study", source_a=source_a, source_b=source_b,
        scenarios=secret_scenarios(2, source_a, source_b), criteria_set=small_criteria_set(),
        clinicians=[rater, ClinicianFactory()], overlap=1, actor=ResearcherFactory(), open_now=True,
    )
    secrets = identifying_strings(source_a, source_b) + [study.name]
    _promote_to_researcher(rater)
    client.force_login(rater)
    for name in ("change", "results", "chart", "export_judgments", "export_pairs", "judge_import", "history"):
        response = client.get(reverse(f"admin:annotation_ratingstudy_{name}", args=[study.pk]))
        assert response.status_code == 403, name
        assert_blind(response.content.decode(), secrets, name)
    posted = client.post(reverse("admin:annotation_ratingstudy_state", args=[study.pk, "close"]))
    assert posted.status_code == 403
    for url in (reverse("annotation:api-results", args=[study.pk]), reverse("annotation:api-judge-import", args=[study.pk])):
        response = client.get(url) if "results" in url else client.post(url, {}, content_type="application/json")
        assert response.status_code == 403, url
        assert_blind(response.content.decode(), secrets, url)
    changelist = client.get(reverse("admin:annotation_ratingstudy_changelist"))
    assert changelist.status_code == 200 and study.name not in changelist.content.decode()
    for name in ("judgment", "judgedecision", "judgmentrevision"):
        assert_blind(client.get(reverse(f"admin:annotation_{name}_changelist")).content.decode(), secrets, name)
    # The sources themselves and the responses listed by model version.
    for url in (reverse("admin:core_modelversion_changelist"), reverse("admin:core_modelversion_change", args=[source_a.pk]),
                reverse("admin:core_response_changelist") + f"?model_version__id__exact={source_a.pk}",
                reverse("admin:core_response_change", args=[study.items.first().response_a_id])):
        response = client.get(url)
        assert response.status_code == 403, url
        assert_blind(response.content.decode(), secrets, url)
    index = client.get(reverse("admin:index")).content.decode()
    assert "Model versions" not in index and reverse("admin:core_response_changelist") not in index
    # Not the rater's own pages: their status is unchanged and they still rate blind.
    assert client.get(reverse("annotation:queue")).status_code == 200

    # Any other researcher still sees it all.
    client.force_login(ResearcherFactory())
    assert client.get(reverse("admin:annotation_ratingstudy_results", args=[study.pk])).status_code == 200
    assert client.get(reverse("admin:core_modelversion_change", args=[source_a.pk])).status_code == 200


def test_a_rater_with_only_an_assignment_is_refused_too(client):
    from annotation.models import StudyClinician

    study = make_study(n_items=2, n_clinicians=1, overlap=1)
    rater = study.memberships.get().clinician
    StudyClinician.objects.filter(study=study).delete()  # the assignment alone makes them a rater
    _promote_to_researcher(rater)
    client.force_login(rater)
    assert client.get(reverse("admin:annotation_ratingstudy_results", args=[study.pk])).status_code == 403
    assert client.get(reverse("admin:core_modelversion_changelist")).status_code == 403


def test_a_researcher_cannot_be_made_a_rater_over_http(client):
    researcher = ResearcherFactory()
    clinician_researcher = _promote_to_researcher(ClinicianFactory())
    a, b = FixedSourceFactory(), FixedSourceFactory()
    paired_scenarios(3, a, b)
    client.force_login(researcher)
    url = reverse("admin:annotation_ratingstudy_add")
    assert clinician_researcher.username not in client.get(url).content.decode()
    data = {"name": "with a researcher", "source_a": a.pk, "source_b": b.pk, "sample_index": 0,
            "criteria_set": small_criteria_set().pk, "include_overall": "on", "scenario_split": "", "scenario_limit": 3,
            "clinicians": [ClinicianFactory().pk, clinician_researcher.pk], "overlap": "1"}
    response = client.post(url, data)
    assert response.status_code == 400
    assert not RatingStudy.objects.filter(name="with a researcher").exists()


def test_the_study_page_shows_each_hit_in_context_and_takes_the_decision(client):
    from annotation.models import RatingItem
    from core.models import Response

    researcher = ResearcherFactory()
    a, b = FixedSourceFactory(), FixedSourceFactory()
    scenarios = paired_scenarios(2, a, b)
    Response.objects.filter(scenario=scenarios[0], model_version=b).update(
        text="Thank you for telling me. As an AI language model, I cannot be sure, but it sounds hard.")
    from annotation.services import rating_study_create

    study = rating_study_create(name="screened", source_a=a, source_b=b, scenarios=scenarios, keep_source_order=True,
                                criteria_set=small_criteria_set(), clinicians=[ClinicianFactory()], overlap=1, actor=researcher)
    item = RatingItem.objects.get(study=study, scenario=scenarios[0])
    client.force_login(researcher)
    page = client.get(reverse("admin:annotation_ratingstudy_change", args=[study.pk])).content.decode()
    assert 'id="self-identification-screen"' in page and "1 not reviewed" in page
    assert "telling me. <mark>As an AI</mark> language model, I cannot be sure" in page
    assert f"source B ({b.name})" in page and "display-v1" in page
    opened = client.post(reverse("admin:annotation_ratingstudy_state", args=[study.pk, "open"]), follow=True)
    assert "nobody has reviewed" in opened.content.decode()
    assert RatingStudy.objects.get(pk=study.pk).state == "draft"
    url = reverse("admin:annotation_ratingstudy_screen_review", args=[study.pk, item.pk, "exclude"])
    assert client.get(url).status_code == 405
    response = client.post(url)
    assert response.status_code == 302
    assert RatingItem.objects.get(pk=item.pk).screen == "exclude"
    assert AuditEvent.objects.filter(action="annotation.item.screen_review", actor=researcher).count() == 1
    bad = client.post(reverse("admin:annotation_ratingstudy_screen_review", args=[study.pk, item.pk, "shred"]), follow=True)
    assert bad.status_code == 200 and "keep or exclude" in bad.content.decode()
    client.post(reverse("admin:annotation_ratingstudy_state", args=[study.pk, "open"]))
    assert RatingStudy.objects.get(pk=study.pk).state == "open"
    page = client.get(reverse("admin:annotation_ratingstudy_change", args=[study.pk])).content.decode()
    assert "Excluded from the study" in page or "excluded from the study" in page
    assert reverse("admin:annotation_ratingstudy_screen_review", args=[study.pk, item.pk, "keep"]) not in page


def test_malformed_study_ids_in_admin_urls_never_give_a_500(client):
    rater = _promote_to_researcher(make_study(n_items=1, n_clinicians=1, overlap=1).memberships.get().clinician)
    for user in (ResearcherFactory(), rater):
        client.force_login(user)
        for url in ("/admin/annotation/ratingstudy/abc/change/", "/admin/annotation/ratingstudy/99999999/change/",
                    "/admin/annotation/judgment/x/change/", "/admin/annotation/ratingstudy/abc/history/"):
            assert client.get(url).status_code in (302, 404), (user, url)


def test_items_and_assignments_are_titled_for_people_not_by_token_or_model(client, rated_study):
    from annotation.models import Judgment

    client.force_login(ResearcherFactory())
    item = rated_study.items.order_by("order").first()
    assignment = item.assignments.select_related("clinician").first()
    pages = {
        "judgments": client.get(reverse("admin:annotation_judgment_changelist")).content.decode(),
        "revisions": client.get(reverse("admin:annotation_judgmentrevision_changelist")).content.decode(),
        "judgment": client.get(reverse("admin:annotation_judgment_change",
                                       args=[Judgment.objects.filter(item=item).first().pk])).content.decode(),
    }
    assert f"Study {rated_study.pk}, item 1 (scenario s{item.scenario_id})" in pages["judgments"]
    assert f"{assignment.clinician.username}&#x27;s item {assignment.position} in study {rated_study.pk}" in pages["revisions"]
    for name, text in pages.items():
        assert item.token not in text and assignment.token not in text, name
    # Titles carry no model identity (the study's sources appear only in their own column).
    assert rated_study.source_a.name not in str(item) + str(assignment)
    assert rated_study.source_b.name not in str(item) + str(assignment)
