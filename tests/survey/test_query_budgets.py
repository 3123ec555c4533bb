"""Query budgets of the participant pages: every survey step's POST in at most
4 queries and its page (GET) in at most 3, counted on the real database with
everything a request does (session, middleware, the progress check, the row
lock, the audit). Query counts are deterministic, so these are exact limits,
not timings. A participant's POST and the page it redirects to are two
requests and are counted apart. The criteria come from the process's cache
(survey.selectors.vocabulary), warm here as in a server that has served a page.

A save's transaction control is not counted: its BEGIN and COMMIT (which the test's own
transaction turns into SAVEPOINT / RELEASE) add two round trips to every POST that
writes; every other statement is counted."""
import re
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from survey import questions, selectors
from survey.models import Answer, CriteriaRanking, ImportanceRating, Participant, ResponseRanking

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _warm_vocabulary():
    """A serving process has the criteria cached after its first page; so does this one."""
    selectors.criterion_by_key(selectors.study_criteria()[0].key)

POST_BUDGET = 4
GET_BUDGET = 3
# The closing POST also builds the person's persona (their answers, ratings and ranking read
# once more, and the persona written): 3 queries over the budget, once per participant.
CLOSING_POST_BUDGET = POST_BUDGET + 3
# The start makes the participant, once: the study, a look for an existing start (same nonce or
# Prolific submission), the Prolific exclusion check, the study's counter, the audit subject, the row.
START_POST_BUDGET = 6
TRANSACTION_CONTROL = re.compile(r"^\s*(SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO SAVEPOINT)\b")


class Budget:
    """Runs requests with their queries counted; collects every step over its budget."""

    def __init__(self, client, timings=None, clock=time.perf_counter, count_queries=True):
        self.client = client
        self.timings = timings  # label -> [seconds, ...] when given, by ``clock``
        self.clock = clock
        self.count_queries = count_queries  # off: requests run as in a server (bench/profile_survey.py --plain)
        self.counts: dict[str, int] = {}
        self.over: list[str] = []

    def _run(self, label, budget, call):
        if not self.count_queries:
            started = self.clock()
            response = call()
            self.timings.setdefault(label, []).append(self.clock() - started)
            self.counts[label] = 0
            return response
        started = self.clock()
        with CaptureQueriesContext(connection) as captured:
            response = call()
        if self.timings is not None:
            self.timings.setdefault(label, []).append(self.clock() - started)
        statements = [q["sql"] for q in captured.captured_queries if not TRANSACTION_CONTROL.match(q["sql"])]
        self.counts[label] = len(statements)
        if len(statements) > budget:
            sql = "\n    ".join(q[:300] for q in statements)
            self.over.append(f"{label}: {len(statements)} queries (budget {budget}):\n    {sql}")
        return response

    def get(self, path, label, status=200):
        response = self._run(f"GET {label}", GET_BUDGET, lambda: self.client.get(path))
        assert response.status_code == status, (label, response.status_code)
        return response

    def post(self, path, data, label, status=303):
        budget = {"closing": CLOSING_POST_BUDGET, "entry (start)": START_POST_BUDGET}.get(label, POST_BUDGET)
        response = self._run(f"POST {label}", budget, lambda: self.client.post(path, data))
        assert response.status_code == status, (label, response.status_code, response.content[:500])
        return response


def hidden_fields(response) -> dict:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', response.content.decode()))


def walk(client, study, *, skip_every_other=False, pid="budget1", timings=None, clock=time.perf_counter,
         count_queries=True) -> tuple[Budget, Participant]:
    """The whole survey as a browser walks it: each page, then its POST, then the redirect target."""
    b = Budget(client, timings, clock, count_queries)
    entry = b.get(f"/study/{study.slug}/?PROLIFIC_PID={pid}&STUDY_ID=st&SESSION_ID=se", "entry")
    fields = {k: v for k, v in hidden_fields(entry).items() if k != "csrfmiddlewaretoken"}
    response = b.post(f"/study/{study.slug}/", fields, "entry (start)")
    resume = response["Location"]
    token = resume.split("/r/")[1].strip("/")
    participant = Participant.objects.get(token=token)
    b.get(resume, "resume", status=303)

    def step(name, data, path=None):
        path = path or f"/study/r/{token}/{name}/"
        b.get(path, name)
        response = b.post(path, {"participant": token, **data}, name)
        return response["Location"]

    version = selectors.consent_version_current(study)
    step("consent", {"consent_version": version.pk, "statement": [str(i) for i in range(len(version.statement_list))]})
    step("eligibility", {f"eligibility-{q.key}": q.eligible_answer for q in study.eligibility_questions.all()})
    background = {"background.age_group": "25_34", "background.gender": "woman", "background.ethnicity": "white",
                  "background.diagnoses": ["depression", "anxiety"], "background.severity": "moderate",
                  "background.treatment": "therapy", "background.ai_use": "sometimes"}
    step("background", background)
    step("attitudes", {**{item.key: "4" for item in questions.ATTITUDES}, "attention.1": "disagree"})
    step("importance", {**{f"importance-{c.key}": "4" for c in selectors.study_criteria()}, "attention.2": "strongly_agree"})
    keys = [c.key for c in selectors.study_criteria()]
    step("criteria-ranking", {**{f"rank-{k}": str(i + 1) for i, k in enumerate(keys)}, "order_confirmed": "yes"})
    location = step("before-scenarios", {})
    participant.refresh_from_db()
    for number, entry in enumerate(participant.scenario_plan, start=1):
        assert location.endswith(f"/scenario/{number}/")
        if skip_every_other and number % 2 == 0:
            data = {"skip": "1"}
        else:
            data = {"rank": "1", **{f"rank-{pk}": str(i + 1) for i, pk in enumerate(entry["responses"])}}
        location = step(f"scenario-{number}", data, path=f"/study/r/{token}/scenario/{number}/")
    assert location.endswith("/closing/")
    location = step("closing", {"feedback": "Thanks."})
    b.get(location, "done")
    return b, participant


def test_every_survey_step_stays_within_its_query_budget(client, study):
    budget, participant = walk(client, study, skip_every_other=True)
    assert not budget.over, "\n".join(budget.over)
    # The walk did the whole survey, once: the budgets were not met by skipping work.
    participant.refresh_from_db()
    assert participant.status == Participant.Status.COMPLETED
    assert Answer.objects.filter(participant=participant).count() == (
        len(questions.BACKGROUND) + len(questions.ATTITUDES) + len(questions.ATTENTION_CHECKS) + 1)
    assert ImportanceRating.objects.filter(participant=participant).count() == len(selectors.study_criteria())
    assert CriteriaRanking.objects.filter(participant=participant).count() == 1
    assert ResponseRanking.objects.filter(participant=participant).count() == len(participant.scenario_plan) == 3
    assert {f"GET scenario-{n}" for n in (1, 2, 3)} <= set(budget.counts)


def test_repeated_and_back_button_posts_stay_within_budget(client, study):
    """A double submit and a resubmitted earlier page are the same work as a first submit."""
    budget, participant = walk(client, study)
    token = participant.token
    # Completed: a resubmitted page only redirects to the end page.
    b = Budget(client)
    b.post(f"/study/r/{token}/background/", {"participant": token, "background.age_group": "35_44"}, "background after completion")
    b.get(f"/study/r/{token}/", "resume after completion", status=303)
    assert not b.over, "\n".join(b.over)


def test_double_submit_of_an_open_step_stays_within_budget(client, study):
    from tests.survey.factories import ParticipantFactory  # noqa: F401  (factories register the study's data)

    entry = client.get(f"/study/{study.slug}/")
    fields = {k: v for k, v in hidden_fields(entry).items() if k != "csrfmiddlewaretoken"}
    token = client.post(f"/study/{study.slug}/", fields)["Location"].split("/r/")[1].strip("/")
    version = selectors.consent_version_current(study)
    b = Budget(client)
    consent = {"participant": token, "consent_version": version.pk, "statement": [str(i) for i in range(len(version.statement_list))]}
    b.post(f"/study/r/{token}/consent/", consent, "consent")
    b.post(f"/study/r/{token}/consent/", consent, "consent again (double submit)")
    answers = {"participant": token, **{f"eligibility-{q.key}": q.eligible_answer for q in study.eligibility_questions.all()}}
    b.post(f"/study/r/{token}/eligibility/", answers, "eligibility")
    b.post(f"/study/r/{token}/eligibility/", answers, "eligibility again (double submit)")
    background = {"participant": token, "background.age_group": "25_34", "background.gender": "woman",
                  "background.ethnicity": "white", "background.diagnoses": ["depression"], "background.severity": "moderate",
                  "background.treatment": "therapy", "background.ai_use": "sometimes"}
    b.post(f"/study/r/{token}/background/", background, "background")
    b.post(f"/study/r/{token}/background/", {**background, "background.age_group": "35_44"}, "background again (changed)")
    assert not b.over, "\n".join(b.over)
    participant = Participant.objects.get(token=token)
    assert Answer.objects.filter(participant=participant, item_key="background.age_group").get().value == "35_44"
