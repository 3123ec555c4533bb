"""The participant survey in real headless Chromium, keyboard only, at 320 px:
resume after closing the browser, back button and resubmit, and exactly one
answer per question at the end."""
import re

import pytest

from tests.browser.conftest import new_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTH = 320


@pytest.fixture
def survey_study(transactional_db):
    from core.services import helplines_seed, vocabulary_seed
    from tests.survey.factories import study_with_responses

    vocabulary_seed()
    helplines_seed()
    return study_with_responses(scenarios=3, name="browser-fixed", slug="browser", scenarios_per_participant=2)


# --- Keyboard helpers: every action is a key press ------------------------------------------


def focused(page, selector) -> bool:
    return page.evaluate("s => !!document.activeElement && document.activeElement.matches(s)", selector)


def press_until(page, key, reached, limit, failure):
    """Press ``key`` until ``reached()`` holds, at most ``limit`` times; else fail with ``failure``."""
    for _ in range(limit):
        if reached():
            return
        page.keyboard.press(key)
    raise AssertionError(failure)


def tab_to(page, selector, limit=250):
    """Press Tab until the element matching ``selector`` has focus."""
    press_until(page, "Tab", lambda: focused(page, selector), limit, f"Tab never reached {selector}")


def choose_radio(page, name, value):
    tab_to(page, f'input[type=radio][name="{name}"]')
    if not page.evaluate("document.activeElement.checked"):
        page.keyboard.press("Space")
    # Arrow keys move the focus and the choice together through the group.
    press_until(page, "ArrowDown", lambda: page.evaluate("document.activeElement.value") == value, 20,
                f"{name} has no option {value}")
    assert page.evaluate("document.activeElement.checked")


def tick(page, name, value):
    tab_to(page, f'input[type=checkbox][name="{name}"][value="{value}"]')
    if not page.evaluate("document.activeElement.checked"):
        page.keyboard.press("Space")


def submit(page, selector="button[type=submit]"):
    tab_to(page, selector)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert_fits(page)


def assert_fits(page):
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH, page.url
    assert page.locator("#support-link").is_visible()


def ranking_order(page):
    return page.eval_on_selector_all(".ranking__item", "items => items.map(i => i.dataset.key)")


def rank_with_keyboard(page, wanted):
    """Reorder the ranking widget to ``wanted`` with the Move up buttons, and check each move is announced."""
    for position, key in enumerate(wanted):
        current = ranking_order(page).index(key)
        if current == position:
            continue
        tab_to(page, f'.ranking__item[data-key="{key}"] button[data-move=up]')
        for _ in range(current - position):
            page.keyboard.press("Enter")
        # Focus stays on the moved item's button, so the next press moves it again.
        assert focused(page, f'.ranking__item[data-key="{key}"] button[data-move=up]')
        page.wait_for_function("t => document.querySelector('[data-ranking-status]').textContent.includes(t)",
                               arg=f"position {position + 1} of {len(wanted)}")
    assert ranking_order(page) == list(wanted)
    ranks = page.eval_on_selector_all(".ranking__select", "s => s.map(x => x.value)")
    assert ranks == [str(i + 1) for i in range(len(wanted))]


# --- The test ------------------------------------------------------------------------------------


def test_whole_survey_by_keyboard_with_resume_back_and_one_answer_each(browser, live_server, survey_study):
    from survey import questions, selectors
    from survey.models import Answer, CriteriaRanking, ImportanceRating, Participant, ResponseRanking

    page = new_page(browser, viewport={"width": WIDTH, "height": 640})
    page.goto(f"{live_server.url}/study/browser/?PROLIFIC_PID=pid42&STUDY_ID=st&SESSION_ID=se")
    assert_fits(page)
    submit(page, "#start-button")

    # Consent: the resume link is shown and can be copied.
    assert "/consent/" in page.url
    resume_link = page.input_value("#resume-link")
    assert re.search(r"/study/r/[\w-]+/$", resume_link)
    tab_to(page, "button[data-copy]")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('[data-copy-status]').textContent.length > 0")
    for index in range(3):
        tick(page, "statement", str(index))
    submit(page, "#consent-submit")

    # Eligibility.
    choose_radio(page, "eligibility-adult", "yes")
    choose_radio(page, "eligibility-lived", "yes")
    submit(page)

    # Background, with a free-text "other".
    assert "/background/" in page.url
    choose_radio(page, "background.age_group", "25_34")
    choose_radio(page, "background.gender", "non_binary")
    choose_radio(page, "background.ethnicity", "mixed")
    tick(page, "background.diagnoses", "anxiety")
    tick(page, "background.diagnoses", "other")
    tab_to(page, 'input[name="background.diagnoses-text"]')
    page.keyboard.type("burnout")
    choose_radio(page, "background.severity", "moderate")
    choose_radio(page, "background.treatment", "prefer_not_to_say")
    choose_radio(page, "background.ai_use", "once")
    submit(page)

    # Attitudes (with the first attention check).
    assert "/attitudes/" in page.url
    for item, value in zip(questions.ATTITUDES, ["4", "3", "5", "4", "2"]):
        choose_radio(page, item.key, value)
    choose_radio(page, "attention.1", "disagree")
    submit(page)

    # Back button to the attitudes page, change an answer, submit again.
    assert "/importance/" in page.url
    page.go_back()
    assert "/attitudes/" in page.url
    choose_radio(page, "attitude.trust", "1")
    submit(page)
    assert "/importance/" in page.url

    # Importance of each criterion (with the second attention check).
    criteria = selectors.study_criteria()
    for criterion in criteria:
        choose_radio(page, f"importance-{criterion.key}", "5" if criterion.key in ("empathy", "safety") else "3")
    choose_radio(page, "attention.2", "strongly_agree")
    submit(page)

    # Close the browser mid-way and come back with the resume link.
    assert "/criteria-ranking/" in page.url
    page.context.close()
    page = new_page(browser, viewport={"width": WIDTH, "height": 640})
    page.goto(resume_link)
    assert "/criteria-ranking/" in page.url
    assert_fits(page)

    # Criteria ranking: one move with the rank select, the rest with the Move up buttons.
    shown = ranking_order(page)
    last = shown[-1]
    tab_to(page, f'.ranking__item[data-key="{last}"] select')
    page.keyboard.press("Home")  # rank 1
    page.wait_for_function("t => document.querySelector('[data-ranking-status]').textContent.includes(t)",
                           arg=f"moved to position 1 of {len(shown)}")
    assert ranking_order(page)[0] == last
    wanted = ["safety", "empathy", "active_listening", "trust_rapport", "patient_autonomy", "self_motivated_change"]
    rank_with_keyboard(page, wanted)
    submit(page)

    # Before the scenarios: the support note.
    assert "/before-scenarios/" in page.url
    assert "Looking after yourself" in page.content()
    submit(page)

    # Scenario 1: rank the replies by keyboard. Scenario 2: skip.
    assert "/scenario/1/" in page.url
    assert "Content warning" in page.content()
    reversed_order = ranking_order(page)[::-1]
    rank_with_keyboard(page, reversed_order)
    submit(page, "button[name=rank]")
    assert "/scenario/2/" in page.url
    submit(page, "button[name=skip]")

    # Closing: support note, feedback, finish.
    assert "/closing/" in page.url
    assert "Looking after yourself" in page.content()
    tab_to(page, "#feedback")
    page.keyboard.type("Keep replies warm.")
    submit(page, "#finish-button")
    assert "/done/" in page.url
    assert "DONE123" in page.content()
    assert "app.prolific.com/submissions/complete?cc=DONE123" in page.content()

    # Back from the thank-you page and resubmit: nothing changes, back to the end.
    page.go_back()
    if "/closing/" in page.url:
        submit(page, "#finish-button")
        assert "/done/" in page.url
    page.context.close()

    from survey.prolific import prolific_id_hash

    participant = Participant.objects.get(prolific_pid_hash=prolific_id_hash(study_id=survey_study.pk, prolific_id="pid42"))
    assert participant.status == Participant.Status.COMPLETED
    keys = list(Answer.objects.filter(participant=participant).values_list("item_key", flat=True))
    expected = [i.key for i in (*questions.BACKGROUND, *questions.ATTITUDES, *questions.ATTENTION_CHECKS)] + [questions.FEEDBACK_KEY]
    assert sorted(keys) == sorted(expected)  # exactly one answer per question
    assert Answer.objects.get(participant=participant, item_key="attitude.trust").value == 1  # the resubmitted value
    diagnoses = Answer.objects.get(participant=participant, item_key="background.diagnoses")
    assert (diagnoses.value, diagnoses.text) == (["anxiety", "other"], "burnout")
    assert ImportanceRating.objects.filter(participant=participant).count() == len(criteria)
    assert CriteriaRanking.objects.get(participant=participant).ranking == wanted
    rankings = list(ResponseRanking.objects.filter(participant=participant).order_by("position"))
    assert len(rankings) == 2
    assert [str(pk) for pk in rankings[0].ranking] == reversed_order and not rankings[0].skipped
    assert rankings[1].skipped and rankings[1].ranking == []
    assert (participant.attention_failures, participant.attention_flagged) == (0, False)


def test_ranking_works_without_javascript(browser, live_server, survey_study):
    """Plain rank selects, checked on the server: a repeated rank is refused, a permutation saved."""
    from survey.models import CriteriaRanking

    participant = participant_at_ranking(survey_study)

    context = browser.new_context(java_script_enabled=False, viewport={"width": WIDTH, "height": 640})
    page = context.new_page()
    page.goto(f"{live_server.url}/study/r/{participant.token}/")
    assert "/criteria-ranking/" in page.url
    assert page.locator("button[data-move]").count() == 0
    shown = ranking_order(page)
    page.select_option(f'select[name="rank-{shown[0]}"]', "2")  # now two items have rank 2
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "must be used exactly once" in page.content()
    assert not CriteriaRanking.objects.filter(participant=participant).exists()
    ranks = {key: str(len(shown) - i) for i, key in enumerate(shown)}
    for key, rank in ranks.items():
        page.select_option(f'select[name="rank-{key}"]', rank)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "/before-scenarios/" in page.url
    assert CriteriaRanking.objects.get(participant=participant).ranking == shown[::-1]
    context.close()


def test_drag_and_drop_reorders_and_announces(page, live_server, survey_study):
    participant = participant_at_ranking(survey_study)
    page.set_viewport_size({"width": 1000, "height": 2000})  # source and target both on screen: no scrolling mid-drag
    page.goto(f"{live_server.url}/study/r/{participant.token}/criteria-ranking/")
    shown = ranking_order(page)
    page.drag_and_drop(f'.ranking__item[data-key="{shown[-1]}"]', f'.ranking__item[data-key="{shown[0]}"]')
    assert ranking_order(page)[0] == shown[-1]
    page.wait_for_function("() => document.querySelector('[data-ranking-status]').textContent.includes('position 1')")
    assert page.input_value(f'select[name="rank-{shown[-1]}"]') == "1"


def participant_at_ranking(study):
    from tests.survey.factories import participant_through

    return participant_through(study, "importance")


def test_untouched_ranking_needs_confirming_and_the_basis_is_stored(browser, live_server, survey_study):
    from survey.models import CriteriaRanking

    participant = participant_at_ranking(survey_study)
    context = browser.new_context(viewport={"width": WIDTH, "height": 800})
    page = context.new_page()
    page.goto(f"{live_server.url}/study/r/{participant.token}/criteria-ranking/")
    shown = ranking_order(page)
    submit(page, "form[method=post] button[type=submit]")
    assert "/criteria-ranking/" in page.url
    assert page.locator("#error-summary").is_visible() and "This order is right" in page.inner_text("#error-summary")
    assert not CriteriaRanking.objects.filter(participant=participant).exists()
    tick(page, "order_confirmed", "yes")
    submit(page, "form[method=post] button[type=submit]")
    assert "/before-scenarios/" in page.url
    saved = CriteriaRanking.objects.get(participant=participant)
    assert (saved.ranking, saved.basis) == (shown, CriteriaRanking.Basis.CONFIRMED)
    context.close()


def test_back_button_shows_the_pages_own_step_and_the_consent_copy_is_linked(browser, live_server, survey_study):
    participant = participant_at_ranking(survey_study)
    context = browser.new_context(viewport={"width": WIDTH, "height": 800})
    page = context.new_page()
    base = f"{live_server.url}/study/r/{participant.token}"
    page.goto(f"{base}/attitudes/")
    page.goto(f"{base}/criteria-ranking/")
    assert page.inner_text("#progress-label").startswith("Step 6 of")
    page.go_back()
    page.reload()  # whether Back restores or refetches, the label is this page's
    assert page.inner_text("#progress-label").startswith("Step 4 of")
    page.click(".resume-panel summary")
    with page.expect_navigation():
        page.click("#consent-copy-links a:has-text('view or print')")
    assert page.locator("h1").inner_text() == "Your copy of the consent form"
    context.close()


def test_withdrawal_checkbox_has_the_surveys_large_tap_target(browser, live_server, survey_study):
    from survey import services

    participant = services.participant_start(study=survey_study)
    context = browser.new_context(viewport={"width": WIDTH, "height": 800})
    page = context.new_page()

    def box(selector):
        return page.eval_on_selector(selector, "e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; }")

    page.goto(f"{live_server.url}/study/r/{participant.token}/consent/")
    survey_checkbox, survey_option = box("#statement-0"), box(".option:has(#statement-0)")
    for path in (f"/study/r/{participant.token}/withdraw/", "/study/withdraw/"):
        page.goto(live_server.url + path)
        assert box("#confirm-withdraw") == survey_checkbox, path
        assert box(".option:has(#confirm-withdraw)")[1] >= 44 <= survey_option[1], path
    context.close()
