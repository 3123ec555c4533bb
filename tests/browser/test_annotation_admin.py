"""The researchers' admin pages of rating studies (judgments, their revisions,
automatic judge decisions, the studies) in real headless Chromium: titled for
people, never by an object repr; no page scrolls sideways on a phone and every
list column shows at 1280 px; nobody but a researcher opens them."""
import re

import pytest

from tests.browser.conftest import admin_login
from tests.browser.test_training import scrolls_sideways

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REPR = re.compile(r"\bobject \(\d+\)")


def _rated_study(name, *, changed=False):
    from annotation.models import Assignment
    from annotation.services import judge_decisions_import, judgment_submit, parse_judge_text
    from tests.annotation.factories import make_study, screen_answers

    study = make_study(n_items=3, n_clinicians=2, overlap=2, name=name, keys=("empathy", "safety", "active_listening"))
    for assignment in Assignment.objects.filter(study=study).select_related("clinician"):
        judgment_submit(assignment=assignment, clinician=assignment.clinician, unsafe_left=True, time_on_task_ms=83_000,
                        choices=screen_answers(study, assignment.side_of("a")),
                        comment="Warm, but it skips the risk question. " * 4)
        if changed:  # a second revision of each answer
            judgment_submit(assignment=assignment, clinician=assignment.clinician, time_on_task_ms=95_000,
                            choices=screen_answers(study, "right"))
    rows = "scenario_id,criterion,choice\n" + "".join(
        f"{item.scenario_ref},{key},source_a\n" for item in study.items.all() for key in ("empathy", "overall"))
    judge_decisions_import(study=study, judge_name="rubric judge (synthetic, temperature 0)", actor=None,
                           rows=parse_judge_text(rows, fmt="csv"))
    return study


@pytest.fixture
def studies():
    """Two studies, so the lists show their study filter beside the table (the narrowest case)."""
    return [_rated_study("Empathy pilot: checkpoint 20 vs the base model"),
            _rated_study("Safety follow-up with a rather long study name for the list", changed=True)]


RECORD_LISTS = ["/admin/annotation/judgment/", "/admin/annotation/judgmentrevision/", "/admin/annotation/judgedecision/"]
LISTS = RECORD_LISTS + ["/admin/annotation/ratingstudy/"]


def _views(study):
    """A view page of each kind of record of the study, and the study's own page."""
    from annotation.models import JudgeDecision, Judgment, JudgmentRevision

    return [f"/admin/annotation/judgment/{Judgment.objects.filter(study=study).first().pk}/change/",
            f"/admin/annotation/judgmentrevision/{JudgmentRevision.objects.filter(assignment__study=study).last().pk}/change/",
            f"/admin/annotation/judgedecision/{JudgeDecision.objects.filter(study=study).first().pk}/change/",
            f"/admin/annotation/ratingstudy/{study.pk}/change/"]


def _tokens():
    from annotation.models import Assignment, RatingItem

    return list(RatingItem.objects.values_list("token", flat=True)) + list(Assignment.objects.values_list("token", flat=True))


@pytest.mark.parametrize("width", [375, 1280])
def test_judgment_admin_pages_are_titled_for_people_and_fit_the_screen(browser, live_server, studies, width):
    from tests.factories import ResearcherFactory

    researcher = ResearcherFactory()
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    admin_login(page, live_server, researcher.username)
    views = _views(studies[1])
    tokens = _tokens()
    for path in LISTS + views:
        response = page.goto(live_server.url + path)
        assert response.status == 200, path
        heading = " ".join(page.locator("#content h1, #content h2").all_inner_texts())
        titles = [page.title(), heading, page.inner_text(".breadcrumbs")]
        assert not any(REPR.search(title) for title in titles), (path, titles)
        assert not scrolls_sideways(page), (path, page.evaluate("document.documentElement.scrollWidth"))
        content = page.content()
        assert not any(token in content for token in tokens), path  # a token is a clinician's URL
        if path in LISTS:
            # Every column says something: no cell left empty, no "None" (a yes/no icon says it in its alt text).
            cells = page.eval_on_selector_all(
                "#result_list tbody td:not(.action-checkbox), #result_list tbody th",
                "cs => cs.map(c => c.innerText.trim() || [...c.querySelectorAll('img[alt]')].map(i => i.alt).join(' '))")
            assert cells and all(cell.strip() and cell.strip() != "None" for cell in cells), (path, cells)
            if width == 1280 and path in RECORD_LISTS:  # beside the navigation and the study filter, every column still shows
                fits = page.eval_on_selector("#changelist-form .results", "e => e.scrollWidth <= e.clientWidth + 1")
                assert fits, path
    # A judgment's page says what it is about in words: the study by name, the answers by criterion,
    # the order the clinician saw, the time in minutes and seconds.
    page.goto(live_server.url + views[0])
    assert studies[1].name in page.inner_text(".field-study .readonly")
    assert page.inner_text(".field-answers_in_full .readonly").startswith("Empathy: Source ")
    assert page.inner_text(".field-order_shown .readonly") in ("Source A on the left", "Source B on the left")
    assert re.fullmatch(r"\d+ min \d+ s|\d+ s", page.inner_text(".field-time_on_task .readonly").strip())
    page.context.close()


def test_judgment_admin_pages_are_for_researchers_only(browser, live_server, studies):
    """Judgments say which source each clinician preferred and the study pages name the sources:
    a clinician, a staff account given the view permissions one by one, and a rater later made a
    researcher all find nothing of them."""
    from django.contrib.auth.models import Permission

    from core import roles
    from tests.factories import UserFactory

    clinician = studies[0].memberships.first().clinician
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="annotation", codename__startswith="view_"))
    rater = studies[1].memberships.first().clinician
    rater.is_staff = True
    rater.save(update_fields=["is_staff"])
    rater.groups.add(roles.ensure_groups())
    rated = studies[1]
    secrets = [rated.name, rated.source_a.name, rated.source_b.name, rated.source_a.model_ref, rated.source_b.model_ref]
    views = _views(rated)
    for user in (clinician, staff, rater):
        page = browser.new_context(viewport={"width": 375, "height": 800}).new_page()
        admin_login(page, live_server, user.username)
        for path in LISTS + views:
            response = page.goto(live_server.url + path)
            refused = response.status == 403 or "/admin/login/" in page.url
            if path in LISTS and user is rater:  # a researcher's list, with the study they rate left out
                refused = response.status == 200
            assert refused, (user.username, path, response.status, page.url)
            text = page.content()
            leaked = [secret for secret in secrets if secret in text]
            assert not leaked, (user.username, path, leaked)
        page.context.close()
