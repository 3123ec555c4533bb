"""The experiment and job pages in real headless Chromium: every link opens
what it names, and the live job table refreshes without closing an opened log."""
import re
import time
from urllib.parse import urljoin, urlparse

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import admin_login
from tests.training.conftest import published, register_fake_stage, scenarios_job_run  # noqa: F401 - fixtures
from tests.training.test_reports import stored_run  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def experiment(scenarios_job_run):
    """A started CPU-demo experiment whose first job ran (artifact, attempt, log) and whose second is running."""
    from tests.factories import ResearcherFactory
    from training.jobs import runtime
    from training.models import Job

    researcher = ResearcherFactory()
    first = scenarios_job_run("links", researcher, "{}\n")
    experiment = first.experiment
    running = experiment.jobs.get(key="generate")
    runtime.job_claim(job_id=running.pk, owner="elsewhere:1")
    Job.objects.filter(pk=running.pk).update(progress_step=3, progress_total=10, log_tail="12:00:00 step 3/10: loss=0.7")
    return {"experiment": experiment, "researcher": researcher, "first": first, "running": running}


def _links(page, base):
    hrefs = page.eval_on_selector_all("#content a[href], #container a[href]", "els => els.map(e => e.getAttribute('href'))")
    seen = []
    for href in hrefs:
        url = urljoin(base, href)
        if urlparse(url).netloc != urlparse(base).netloc or href.startswith("#") or "/logout/" in url:
            continue
        if url.split("#")[0] not in seen:
            seen.append(url.split("#")[0])
    return seen


def _follow_every_link(page, url):
    page.goto(url)
    page.wait_for_selector("#job-rows tr", state="attached") if "/experiment/" in url else None
    links = _links(page, url)
    assert links, f"no links on {url}"
    for link in links:
        response = page.goto(link)
        text = page.inner_text("body")
        assert response.status < 400, f"{link} from {url}: HTTP {response.status}"
        assert "doesn’t exist" not in text and "doesn't exist" not in text, f"{link} from {url}: {text[:300]}"
        if urlparse(link).path != "/admin/":
            assert urlparse(page.url).path != "/admin/", f"{link} from {url} landed on the admin index"
    return links


def test_every_link_on_the_experiment_and_job_pages_opens_what_it_names(browser, live_server, experiment):
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    admin_login(page, live_server, experiment["researcher"].username)
    experiment_url = f"{live_server.url}/admin/training/experiment/{experiment['experiment'].pk}/change/"
    links = _follow_every_link(page, experiment_url)
    job_links = [link for link in links if re.search(r"/admin/training/job/\d+/change/$", link)]
    assert len(job_links) == experiment["experiment"].jobs.count()
    # Each job link opens that job's page.
    for job in experiment["experiment"].jobs.all():
        page.goto(experiment_url)
        page.wait_for_selector("#job-rows tr")
        with page.expect_navigation():
            page.click(f"#job-rows tr[data-job-key='{job.key}'] a.job-link")
        assert page.inner_text("h1") == f"Job {job.key} of links"
    for job in (experiment["first"], experiment["running"]):
        job_links = _follow_every_link(page, f"{live_server.url}/admin/training/job/{job.pk}/change/")
        assert any("/admin/training/job/" in link for link in job_links)  # lineage links to other jobs
    page.context.close()


def scrolls_sideways(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth > window.innerWidth")


@pytest.mark.parametrize("width", [375, 1280])
def test_an_opened_log_stays_open_and_follows_the_running_job(browser, live_server, experiment, width):
    from training.models import Job

    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    admin_login(page, live_server, experiment["researcher"].username)
    page.goto(f"{live_server.url}/admin/training/experiment/{experiment['experiment'].pk}/change/")
    row = "#job-rows tr[data-job-key='generate']"
    page.wait_for_selector(f"{row} details.job-log summary")
    page.click(f"{row} details.job-log summary")
    page.evaluate(f"document.querySelector(\"{row} details.job-log pre\").dataset.marker = 'same element'")
    Job.objects.filter(pk=experiment["running"].pk).update(
        progress_step=4, log_tail="12:00:00 step 3/10: loss=0.7\n12:00:02 step 4/10: loss=0.6")
    expect(page.locator(f"{row} .job-steps")).to_have_text("4 of 10", timeout=10000)
    time.sleep(2.5)  # at least one more refresh
    assert page.eval_on_selector(f"{row} details.job-log", "e => e.open")
    assert page.eval_on_selector(f"{row} details.job-log pre", "e => e.dataset.marker") == "same element"
    assert "step 4/10: loss=0.6" in page.inner_text(f"{row} details.job-log pre")
    assert not scrolls_sideways(page)
    page.context.close()


def test_the_experiment_and_job_pages_fit_a_phone_without_scrolling_sideways(browser, live_server, experiment):
    """At 375 px each job is a card: every cell labelled, the opened log as wide as the card, long
    log lines, paths and hashes wrapped, and the page itself never wider than the screen."""
    from training.models import Job

    long_line = "12:00:06 warning: " + "x" * 300 + " /very/long/path/" + "segment/" * 20
    Job.objects.filter(pk=experiment["running"].pk).update(log_tail=long_line)
    page = browser.new_context(viewport={"width": 375, "height": 800}).new_page()
    admin_login(page, live_server, experiment["researcher"].username)
    page.goto(f"{live_server.url}/admin/training/experiment/{experiment['experiment'].pk}/change/")
    row = "#job-rows tr[data-job-key='generate']"
    page.wait_for_selector(f"{row} details.job-log summary")
    assert not scrolls_sideways(page), page.evaluate("document.documentElement.scrollWidth")
    # A card, not a squeezed table row: the state says what it is, and the card fits the screen.
    assert page.eval_on_selector(f"{row} .job-state", "e => getComputedStyle(e, '::before').content") == '"State"'
    assert page.eval_on_selector(row, "e => e.getBoundingClientRect().right") <= 375
    page.click(f"{row} details.job-log summary")
    assert not scrolls_sideways(page)
    pre = page.eval_on_selector(f"{row} details.job-log pre",
                                "e => [e.getBoundingClientRect().width, e.scrollWidth, e.clientWidth]")
    assert pre[0] > 250 and pre[1] <= pre[2] + 1, pre  # as wide as the card, its lines wrapped
    for job in (experiment["first"], experiment["running"]):
        page.goto(f"{live_server.url}/admin/training/job/{job.pk}/change/")
        assert not scrolls_sideways(page), (job.key, page.evaluate("document.documentElement.scrollWidth"))
    page.context.close()


def test_the_job_page_refreshes_its_progress_and_log_while_the_job_runs(browser, live_server, experiment):
    from training.models import Job

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    admin_login(page, live_server, experiment["researcher"].username)
    running = experiment["running"]
    page.goto(f"{live_server.url}/admin/training/job/{running.pk}/change/")
    assert page.inner_text("h1") == "Job generate of links"
    assert page.locator("input[name=_save]").count() == 0
    Job.objects.filter(pk=running.pk).update(progress_step=5, log_tail="12:00:04 step 5/10: loss=0.5")
    expect(page.locator("#job-steps")).to_have_text("5 of 10", timeout=10000)
    expect(page.locator("#job-log")).to_have_text("12:00:04 step 5/10: loss=0.5")
    page.context.close()


def test_the_report_fits_a_phone_its_wide_tables_scrolling_in_their_own_box(browser, live_server, stored_run):
    """At 375 px the report's tables (shape checks, win rates, length control, pairings, reward models) are
    wider than the screen: each scrolls inside its box and the page itself never scrolls sideways."""
    from tests.factories import ResearcherFactory

    experiment, _ = stored_run
    researcher = ResearcherFactory()
    page = browser.new_context(viewport={"width": 375, "height": 800}).new_page()
    admin_login(page, live_server, researcher.username)
    page.goto(f"{live_server.url}/admin/training/experiment/{experiment.pk}/report/")
    page.wait_for_selector("#win-rate-table")
    assert not scrolls_sideways(page), page.evaluate("document.documentElement.scrollWidth")
    boxes = page.eval_on_selector_all(".table-scroll", "els => els.map(e => e.getBoundingClientRect().right)")
    assert len(boxes) >= 3 and max(boxes) <= 375, boxes
    page.context.close()
