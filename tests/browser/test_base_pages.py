"""Base pages in a real browser: landmarks, skip link, support link, 320 px."""
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_participant_page_is_accessible_at_320px(page, live_server):
    page.set_viewport_size({"width": 320, "height": 640})
    page.goto(live_server.url + "/")
    assert page.locator("header[role=banner]").count() == 1
    assert page.locator("main#main").count() == 1
    assert page.locator("footer[role=contentinfo]").count() == 1
    # Nothing is wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    # The first Tab lands on the skip link, which moves focus to the main content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Skip to main content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    support = page.locator("#support-link")
    assert support.is_visible()
    assert "Need support now?" in support.inner_text()


def test_support_link_opens_helplines(page, live_server):
    page.goto(live_server.url + "/")
    with page.context.expect_page() as new_page_info:
        page.locator("#support-link").click()
    helplines = new_page_info.value
    helplines.wait_for_load_state()
    assert helplines.url.endswith("/support/")
    assert "Samaritans" in helplines.content()
    # The original page (a participant's place in the survey) is left as it was.
    assert page.url == live_server.url + "/"


def test_login_page_focus_is_visible(page, live_server):
    page.goto(live_server.url + "/accounts/login/")
    page.locator("#id_username").focus()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
