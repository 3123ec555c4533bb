"""A clinician rates with the keyboard only in real headless Chromium, stops,
comes back and continues where they left off; another clinician cannot open
their items; no page or API response names the models."""
import pytest

from annotation.models import Assignment, Judgment
from annotation.services import rating_study_create
from tests.browser.conftest import clinician_login, new_page
from tests.annotation.factories import (
    assert_blind,
    identifying_strings,
    secret_scenarios,
    secret_sources,
    small_criteria_set,
)
from tests.factories import ClinicianFactory, ResearcherFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

def rate_current_item(page, keys):
    """Answer the item on screen with keys only, then Enter to save and move on."""
    before = page.url
    for key in keys:
        page.keyboard.press(key)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url != before
    return before


def test_clinician_rates_by_keyboard_stops_and_resumes_blind(browser, live_server):
    source_a, source_b = secret_sources()
    first, second = ClinicianFactory(), ClinicianFactory()
    study = rating_study_create(
        name="secret-modpo-empathy-safety vs baseline-smollm-q8", source_a=source_a, source_b=source_b,
        scenarios=secret_scenarios(5, source_a, source_b), criteria_set=small_criteria_set(("empathy", "safety")),
        clinicians=[first, second], overlap="all", actor=ResearcherFactory(), open_now=True,
    )
    secrets = identifying_strings(source_a, source_b) + [study.name]
    seen = []

    def check(page_or_text, where):
        text = page_or_text if isinstance(page_or_text, str) else page_or_text.content()
        assert_blind(text, secrets, where)
        seen.append(where)

    def queue_in_a_new_session(clinician, where):
        """A fresh browser session (no cookies) signed in as ``clinician``, on their queue, checked blind."""
        page = new_page(browser)
        clinician_login(page, live_server, clinician.username)
        check(page, where)
        return page

    # First visit: three items with shortcuts only.
    page = queue_in_a_new_session(first, "queue")
    assert "0 of 5" in page.inner_text("main")
    with page.expect_navigation():
        page.click("text=Start")
    rated_urls = []
    for number in range(3):
        check(page, f"item {number + 1}")
        assert f"Item {number + 1} of 5" in page.inner_text("h1")
        # Empathy: A better, safety: B better, overall: tie; Response A flagged unsafe.
        rated_urls.append(rate_current_item(page, ["a", "b", "t", "Shift+A"]))
    judgments = Judgment.objects.filter(clinician=first)
    assert judgments.count() == 3
    for judgment in judgments:
        assignment = judgment.assignment
        choices = dict(judgment.choices.values_list("criterion__key", "choice"))
        assert choices == {"empathy": assignment.source_of("left"), "safety": assignment.source_of("right"), "overall": "tie"}
        assert (judgment.unsafe_a, judgment.unsafe_b) == ((True, False) if assignment.left_is_a else (False, True))
        assert judgment.time_on_task_ms > 0

    # Undo (U) reopens the last item with its answers; Enter saves it again.
    check(page, "item 4")
    with page.expect_navigation():
        page.keyboard.press("u")
    assert page.url == rated_urls[-1]
    assert page.locator("input[name=choice-overall][value=tie]").is_checked()
    assert page.locator("#unsafe-left").is_checked()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert Judgment.objects.filter(clinician=first).count() == 3

    # Half an answer on item 4, autosaved, then the clinician stops.
    fourth = Assignment.objects.get(study=study, clinician=first, position=4)
    assert page.url.endswith(f"/rate/item/{fourth.token}/")
    page.keyboard.press("b")
    page.locator("#autosave-status", has_text="Draft saved").wait_for()
    for url in ("/rate/api/queue/", f"/rate/api/items/{fourth.token}/"):
        response = page.request.get(live_server.url + url)
        assert response.status == 200
        check(response.text(), url)
    page.context.close()

    # Later, a new session: the queue shows progress and continues at item 4 with the draft.
    page = queue_in_a_new_session(first, "queue again")
    assert "3 of 5" in page.inner_text("main")
    with page.expect_navigation():
        page.click("text=Continue")
    assert page.url.endswith(f"/rate/item/{fourth.token}/")
    assert page.locator("input[name=choice-empathy][value=right]").is_checked()
    check(page, "item 4 resumed")
    rate_current_item(page, ["t", "t", "t"])
    assert Judgment.objects.filter(clinician=first).count() == 4
    page.context.close()

    # Another clinician cannot open the first one's items, pages or API.
    page = queue_in_a_new_session(second, "second clinician's queue")
    for assignment in Assignment.objects.filter(study=study, clinician=first):
        response = page.goto(live_server.url + f"/rate/item/{assignment.token}/")
        assert response.status == 403
        check(page, "forbidden item")
        api = page.request.get(live_server.url + f"/rate/api/items/{assignment.token}/")
        assert api.status == 403
        check(api.text(), "forbidden API item")
    with page.expect_navigation():
        page.goto(live_server.url + "/rate/")
        page.click("text=Start")
    check(page, "second clinician's item")
    page.context.close()
    assert len(seen) >= 10


def test_shortcut_hints_stay_on_one_line_at_375px(browser, live_server):
    source_a, source_b = secret_sources()
    clinician = ClinicianFactory()
    rating_study_create(
        name="hints", source_a=source_a, source_b=source_b, scenarios=secret_scenarios(1, source_a, source_b),
        criteria_set=small_criteria_set(("empathy",)), clinicians=[clinician], overlap="all", actor=ResearcherFactory(),
        open_now=True,
    )
    page = browser.new_context(viewport={"width": 375, "height": 800}).new_page()
    clinician_login(page, live_server, clinician.username)
    with page.expect_navigation():
        page.click("main a[href$='/next/']")
    hints = page.locator(".shortcut-hint")
    assert hints.count() == 2
    # One line box each: a hint that wrapped would have two client rects of different tops.
    tops = page.eval_on_selector_all(".shortcut-hint", "hs => hs.map(h => new Set([...h.getClientRects()].map(r => r.top)).size)")
    assert tops == [1, 1]
    page.context.close()
