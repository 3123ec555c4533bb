"""The progress kept on the participant's row (``steps_done``): after every step, a Back-button
resubmit, a double submit (one after the other and at the same moment), a refused or invalid
POST, a screen-out and a withdrawal, it says what counting the saved answers says
(selectors.participant_progress_counted), and migration 0008 fills it the same way."""
import itertools

import pytest

from survey import questions, selectors, services
from survey.models import Answer, Participant
from tests.survey.conftest import migrate
from tests.survey.factories import attitudes_data, background_data, complete_participant, full_ranks, participant_through
from tests.survey.test_views import (
    attitudes_post,
    background_post,
    consent_post,
    criterion_keys,
    importance_post,
    post,
    ranking_post,
    start,
    url,
)

pytestmark = pytest.mark.django_db


def assert_progress_is_the_answers(participant, steps_done=None):
    """The stored progress agrees with the saved answers; returns the fresh row."""
    participant = Participant.objects.select_related("study").get(pk=participant.pk)
    stored, counted = selectors.participant_progress(participant), selectors.participant_progress_counted(participant)
    assert stored.done == counted.done and stored.next_step == counted.next_step
    if participant.status != Participant.Status.COMPLETED:
        assert participant.steps_done == counted.done_count
    else:
        assert participant.steps_done == counted.total
    if steps_done is not None:
        assert participant.steps_done == steps_done
    return participant


def step_posts(participant):
    """(step, path, data) for every step in order, as a browser posts them (lazily: the scenario
    screens are known once the steps before them are posted)."""
    participant = Participant.objects.get(pk=participant.pk)
    yield "consent", "consent", consent_post(participant)
    yield "eligibility", "eligibility", {"eligibility-adult": "yes", "eligibility-lived": "yes"}
    yield "background", "background", background_post()
    yield "attitudes", "attitudes", attitudes_post()
    yield "importance", "importance", importance_post()
    yield "criteria-ranking", "criteria-ranking", ranking_post(criterion_keys())
    yield "before-scenarios", "before-scenarios", {}
    participant.refresh_from_db()
    for number, entry in enumerate(participant.scenario_plan, start=1):
        data = {"skip": "1"} if number == 2 else ranking_post(entry["responses"])
        yield f"scenario-{number}", f"scenario/{number}", data
    yield "closing", "closing", {"feedback": "Thanks."}


def test_after_every_step_the_stored_progress_is_the_count_of_answers(client, study):
    participant, _ = start(client, study)
    assert_progress_is_the_answers(participant, steps_done=0)
    for done, (step, path, data) in enumerate(step_posts(participant), start=1):
        response = post(client, participant, path, data)
        assert response.status_code == 303, (step, response.status_code)
        fresh = assert_progress_is_the_answers(participant, steps_done=done)
        # The redirect goes where the stored progress says, and the progress API says the same.
        next_step = selectors.participant_progress(fresh).next_step
        api = client.get(f"/study/r/{participant.token}/progress.json").json()
        if fresh.status == Participant.Status.COMPLETED:
            assert response["Location"] == url(participant, "done") and api["done"] == api["total"] == done
        else:
            assert api == {"status": "in_progress", "next_step": next_step, "done": done, "total": api["total"]}
            location = response["Location"]
            assert location == url(participant, next_step.replace("scenario-", "scenario/"))
    assert fresh.status == Participant.Status.COMPLETED


def test_back_button_resubmits_change_answers_not_progress(client, study):
    participant, _ = start(client, study)
    steps = step_posts(participant)
    for _step, path, data in itertools.islice(steps, 6):  # through the criteria ranking
        assert post(client, participant, path, data).status_code == 303
    assert_progress_is_the_answers(participant, steps_done=6)
    # Back to earlier pages, each resubmitted (with a change where the page allows one).
    response = post(client, participant, "background", background_post(**{"background.age_group": "35_44"}))
    assert response["Location"] == url(participant, "before-scenarios")
    assert post(client, participant, "attitudes", attitudes_post(values=("1", "1", "1", "1", "1"))).status_code == 303
    assert post(client, participant, "consent", consent_post(participant))["Location"] == url(participant, "before-scenarios")
    assert post(client, participant, "importance", importance_post(rating="2")).status_code == 303
    fresh = assert_progress_is_the_answers(participant, steps_done=6)
    assert Answer.objects.get(participant=fresh, item_key="background.age_group").value == "35_44"
    assert Answer.objects.get(participant=fresh, item_key="attitude.trust").value == 1
    # Further on, and back again from a scenario screen.
    for _step, path, data in itertools.islice(steps, 2):  # before the scenarios, the first screen
        assert post(client, participant, path, data).status_code == 303
    assert post(client, participant, "criteria-ranking", ranking_post(criterion_keys()[::-1])).status_code == 303
    assert post(client, participant, "scenario/1", data)["Location"] == url(participant, "scenario/2")
    assert_progress_is_the_answers(participant, steps_done=8)


def test_double_submits_count_a_step_once(client, study):
    participant, _ = start(client, study)
    for done, (step, path, data) in enumerate(step_posts(participant), start=1):
        first, second = post(client, participant, path, data), post(client, participant, path, data)
        assert first.status_code == second.status_code == 303, step
        assert_progress_is_the_answers(participant, steps_done=done)
        # The second submit of an open step lands where the first did (the end page once completed).
        assert second["Location"] == first["Location"] or second["Location"] == url(participant, "done")


def test_refused_and_invalid_posts_leave_progress_and_answers_alone(client, study):
    participant, _ = start(client, study)
    for _step, path, data in itertools.islice(step_posts(participant), 3):
        assert post(client, participant, path, data).status_code == 303
    # A step ahead of the next open one: sent back to that one, nothing saved.
    response = post(client, participant, "importance", importance_post())
    assert response.status_code == 303 and response["Location"] == url(participant, "attitudes")
    # Invalid answers on the open step: 400, nothing saved.
    assert post(client, participant, "attitudes", attitudes_post(values=("9", "3", "4", "5", "2"))).status_code == 400
    # Another participant's form: 400, nothing saved.
    data = {**attitudes_post(), "participant": "someone-else"}
    assert client.post(url(participant, "attitudes"), data).status_code == 400
    fresh = assert_progress_is_the_answers(participant, steps_done=3)
    assert not Answer.objects.filter(participant=fresh, item_key__startswith="attitude.").exists()
    assert not fresh.importance_ratings.exists()


def test_screen_out_and_withdrawal_leave_no_row_and_later_posts_save_nothing(client, study):
    participant, _ = start(client, study)
    assert post(client, participant, "consent", consent_post(participant)).status_code == 303
    assert post(client, participant, "eligibility", {"eligibility-adult": "no", "eligibility-lived": "yes"}).status_code == 303
    assert not Participant.objects.filter(pk=participant.pk).exists()

    participant, _ = start(client, study, "?source=university")
    for _step, path, data in itertools.islice(step_posts(participant), 4):
        assert post(client, participant, path, data).status_code == 303
    assert_progress_is_the_answers(participant, steps_done=4)
    response = client.post(f"/study/r/{participant.token}/withdraw/", {"participant": participant.token, "confirm": "yes"})
    assert response.status_code == 303
    assert not Participant.objects.filter(pk=participant.pk).exists()
    assert not Answer.objects.filter(participant_id=participant.pk).exists()
    # A page left open in another tab: its POST finds no row and saves nothing.
    assert post(client, participant, "importance", importance_post()).status_code == 404
    assert client.get(f"/study/r/{participant.token}/progress.json").status_code == 404
    assert not Answer.objects.filter(participant_id=participant.pk).exists()


def test_services_keep_the_progress_for_direct_callers(study):
    """The demo and the factories call the services without a page: the same progress."""
    participant = services.participant_start(study=study)
    version = selectors.consent_version_current(study)
    services.consent_give(participant=participant, consent_version_id=version.pk, agreed=range(len(version.statement_list)))
    assert_progress_is_the_answers(participant, steps_done=1)
    services.eligibility_submit(participant=participant, answers={"adult": "yes", "lived": "yes"})
    services.background_save(participant=participant, data=background_data())
    services.background_save(participant=participant, data=background_data(age_group="35_44"))  # resubmitted
    assert_progress_is_the_answers(participant, steps_done=3)
    services.attitudes_save(participant=participant, data=attitudes_data(attention="agree"))
    fresh = assert_progress_is_the_answers(participant, steps_done=4)
    assert (fresh.attention_failures, fresh.attention_flagged) == (1, False)
    done = complete_participant(study, attention=("agree", "disagree"))
    fresh = assert_progress_is_the_answers(done, steps_done=len(selectors.participant_steps(done)))
    assert (fresh.attention_failures, fresh.attention_flagged) == (2, True)
    assert selectors.participant_progress(fresh).next_step == "done"


def test_a_study_without_scenarios_goes_from_the_ranking_to_the_closing_page(study):
    study.model_version = None
    study.save()
    participant = participant_through(study, "importance")
    services.criteria_ranking_save(participant=participant, ranks=full_ranks(criterion_keys()), order_confirmed=True)
    fresh = assert_progress_is_the_answers(participant, steps_done=6)
    assert selectors.participant_progress(fresh).next_step == "closing"
    services.participant_complete(participant=participant)
    assert_progress_is_the_answers(participant, steps_done=7)


@pytest.mark.django_db(transaction=True)
def test_the_same_step_saved_at_once_in_four_tabs_counts_once(study, at_once):
    participant = participant_through(study, "eligibility")
    at_once(lambda value: services.background_save(participant=participant, data=background_data(severity=value)),
            ("mild", "moderate", "severe", questions.PREFER_NOT))
    assert_progress_is_the_answers(participant, steps_done=3)
    assert Answer.objects.filter(participant=participant, item_key__startswith="background.").count() == len(questions.BACKGROUND)


# --- Migration 0008: steps_done filled from the saved answers -------------------------------------------

BEFORE = [("survey", "0007_participant_synthetic")]
AFTER = [("survey", "0008_participant_steps_done")]


@pytest.mark.django_db(transaction=True)
def test_migration_fills_the_progress_from_the_answers(back_to_the_latest_schema):
    from django.utils import timezone

    apps = migrate(BEFORE)
    try:
        Study, Participant0007, Answer0007, Rating, Ranking, Screen, Consent, Version, Criterion, Scenario = map(apps.get_model, (
            "survey.Study", "survey.Participant", "survey.Answer", "survey.ImportanceRating", "survey.CriteriaRanking",
            "survey.ResponseRanking", "survey.ConsentRecord", "survey.ConsentVersion", "core.Criterion", "core.Scenario"))
        old = Study.objects.create(slug="old-progress", title="Old")
        version = Version.objects.create(study=old, version=1, information_sheet="x", statements="a")
        criteria = list(Criterion.objects.filter(is_therapeutic=True))
        scenario = Scenario.objects.create(text="A hard week, hard to say.", source="test", external_id="mig-1")
        plan = [{"scenario": scenario.pk, "responses": [1, 2], "criterion": criteria[0].key}] * 3
        now = timezone.now()

        def person(n, **fields):
            return Participant0007.objects.create(study=old, sequence=n, token=f"t{n}", pseudonym=f"P{n}", withdrawal_code=f"W{n}",
                                                  seed=n, **fields)

        def answers(p, keys):
            for key in keys:
                Answer0007.objects.create(participant=p, item_key=key, value="x")

        background = [i.key for i in questions.BACKGROUND]
        attitudes = [i.key for i in questions.ATTITUDES] + ["attention.1"]
        people = {"new": person(1)}
        people["mid"] = person(2, eligible_at=now, scenario_plan=plan)  # consent, eligibility, background; attitudes half done
        Consent.objects.create(participant=people["mid"], consent_version=version, statements_agreed=["a"])
        answers(people["mid"], background + attitudes[:3])
        people["screens"] = person(3, eligible_at=now, scenario_plan=plan, scenarios_intro_at=now)  # 2 of 3 screens
        Consent.objects.create(participant=people["screens"], consent_version=version, statements_agreed=["a"])
        answers(people["screens"], background + attitudes + ["attention.2"])
        for c in criteria:
            Rating.objects.create(participant=people["screens"], criterion=c, rating=3)
        Ranking.objects.create(participant=people["screens"], ranking=[], shown_order=[])
        for position in (0, 1):
            Screen.objects.create(participant=people["screens"], position=position, scenario=scenario, criterion=criteria[0],
                                  shown_order=[1, 2], ranking=[1, 2])
        people["gap"] = person(4, eligible_at=now, scenario_plan=plan)  # a rating missing, yet ranked: importance is next
        Consent.objects.create(participant=people["gap"], consent_version=version, statements_agreed=["a"])
        answers(people["gap"], background + attitudes + ["attention.2"])
        for c in criteria[1:]:
            Rating.objects.create(participant=people["gap"], criterion=c, rating=3)
        Ranking.objects.create(participant=people["gap"], ranking=[], shown_order=[])
        people["done"] = person(5, eligible_at=now, scenario_plan=plan, status="completed")
        ids = {name: p.pk for name, p in people.items()}
    finally:
        migrate(AFTER)
    # Read with the current models (the schema is at 0008 or later from here on).
    rows = {name: Participant.objects.select_related("study").get(pk=pk) for name, pk in ids.items()}
    assert {name: p.steps_done for name, p in rows.items()} == {"new": 0, "mid": 3, "screens": 9, "gap": 4, "done": 11}
    for p in rows.values():
        counted = selectors.participant_progress_counted(p)
        assert selectors.participant_progress(p).next_step == counted.next_step
