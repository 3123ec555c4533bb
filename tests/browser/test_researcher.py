"""Researcher pages in real headless Chromium: the confirmation of an action is
on screen where the researcher is looking, not at the top of a scrolled page."""
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import admin_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def in_viewport(page, selector) -> bool:
    return page.eval_on_selector(selector, """e => { const r = e.getBoundingClientRect();
        return r.top >= 0 && r.bottom <= window.innerHeight && r.height > 0; }""")


@pytest.mark.parametrize("width", [375, 1280])
def test_export_confirmation_is_visible_after_the_page_scrolls_to_the_exports(browser, live_server, width):
    from core.services import helplines_seed, vocabulary_seed
    from tests.factories import ResearcherFactory
    from tests.survey.factories import complete_participant, study_with_responses

    vocabulary_seed()
    helplines_seed()
    study = study_with_responses(scenarios=2, name="fixed", slug="exports", scenarios_per_participant=1)
    complete_participant(study)
    researcher = ResearcherFactory()
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = context.new_page()
    admin_login(page, live_server, researcher.username, next_path="/study/manage/exports/")
    with page.expect_navigation():
        page.click("#datasets button[value=criteria-rankings]")
    assert page.url.endswith("#datasets")
    message = "[data-section-message=datasets]"
    assert "Created dataset version" in page.inner_text(message)
    assert page.evaluate("window.scrollY") > 0  # the page did scroll to the exports...
    assert in_viewport(page, message)  # ...and the confirmation is on screen
    context.close()


def researcher_login(page, live_server, next_path):
    from tests.factories import ResearcherFactory

    admin_login(page, live_server, ResearcherFactory().username, next_path=next_path)


def test_rating_study_scenarios_are_found_by_text_topic_and_risk_not_listed(browser, live_server):
    from core.models import Scenario
    from core.services import scenario_bank_load, vocabulary_seed

    vocabulary_seed()
    scenario_bank_load()
    total = Scenario.objects.count()
    high = Scenario.objects.filter(risk_level="high").count()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    researcher_login(page, live_server, "/admin/annotation/ratingstudy/add/")
    # No bare list of every scenario: the select starts empty, the counts are in the help text.
    assert page.locator("select[name=scenarios] option").count() == 0
    assert f"{total} scenarios" in page.content() and f"high {high}" in page.content()
    search = page.locator(".field-scenarios .select2-search__field, select[name=scenarios] + .select2 .select2-search__field")
    search.click()
    search.fill("high grief")
    option = page.locator(".select2-results__option:not(.loading-results)").first
    # The list first shows the unfiltered results of the click; under load the search's answer comes later.
    expect(option).to_contain_text("grief", timeout=15000)
    assert "risk: high" in option.inner_text()
    option.click()
    chosen = page.eval_on_selector("select[name=scenarios]", "s => [...s.selectedOptions].map(o => o.value)")
    assert len(chosen) == 1
    picked = Scenario.objects.get(pk=int(chosen[0]))
    assert picked.risk_level == "high" and "grief" in picked.topics
    context.close()


def test_scenario_search_works_without_javascript_and_counts_matches(browser, live_server):
    from core.models import Scenario
    from core.services import scenario_bank_load, vocabulary_seed

    vocabulary_seed()
    scenario_bank_load()
    from django.db.models import Q

    def words(word):  # the scenario admin's search: each word in the text, id, topics or risk level
        return Q(text__icontains=word) | Q(external_id__icontains=word) | Q(topics__icontains=word) | Q(risk_level__icontains=word)

    grief_high = list(Scenario.objects.filter(words("high")).filter(words("grief")))
    context = browser.new_context(viewport={"width": 375, "height": 800}, java_script_enabled=False)
    page = context.new_page()
    researcher_login(page, live_server, "/admin/annotation/ratingstudy/add/")
    page.fill("#id_scenario_q", "high grief")
    with page.expect_navigation():
        page.click("button[form=scenario-search]")
    assert "scenario_q=high+grief" in page.url
    count = page.locator("#scenario-match-count").inner_text()
    assert count.startswith(f"{len(grief_high)} scenario") and "“high grief”" in count, count
    boxes = page.locator(".scenario-results input[name=scenarios]")
    assert boxes.count() == len(grief_high) > 0
    assert sorted(int(v) for v in boxes.evaluate_all("bs => bs.map(b => b.value)")) == sorted(s.pk for s in grief_high)
    # The ticked results belong to the study form (the POST one), not to the search form.
    assert boxes.first.evaluate("b => b.form.method") == "post"
    context.close()

    # With JavaScript, the autocomplete's words get the same count.
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    researcher_login(page, live_server, "/admin/annotation/ratingstudy/add/")
    search = page.locator("select[name=scenarios] + .select2 .select2-search__field")
    search.click()
    search.fill("high grief")
    from playwright.sync_api import expect

    expect(page.locator("#scenario-match-count")).to_contain_text("“high grief”")
    assert page.locator("#scenario-match-count").inner_text().startswith(f"{len(grief_high)} scenario")
    context.close()
