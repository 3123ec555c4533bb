"""Participant pages through the Django test client: the whole flow, resume,
back/resubmit, tampered POSTs (400, nothing saved), token isolation."""
import re

import pytest

from core.models import AuditEvent
from survey import questions, selectors
from survey.models import Answer, ConsentRecord, CriteriaRanking, CrisisFlag, ImportanceRating, Participant, ResponseRanking
from tests.survey.factories import DEFAULT_BACKGROUND, complete_participant

pytestmark = pytest.mark.django_db


def start(client, study, query=""):
    page = client.get(f"/study/{study.slug}/{query}")
    assert page.status_code == 200
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.content.decode()))
    fields.pop("csrfmiddlewaretoken", None)
    response = client.post(f"/study/{study.slug}/", fields)
    assert response.status_code == 303
    token = response["Location"].split("/r/")[1].strip("/")
    return Participant.objects.get(token=token), fields


def url(participant, step):
    return f"/study/r/{participant.token}/{step}/"


def post(client, participant, step, data):
    return client.post(url(participant, step), {"participant": participant.token, **data})


def background_post(**overrides):
    data = {}
    for key, value in {**DEFAULT_BACKGROUND, **overrides}.items():
        data[key] = value
    return data


def attitudes_post(values=("4", "3", "4", "5", "2"), attention="disagree"):
    return {**{item.key: v for item, v in zip(questions.ATTITUDES, values)}, "attention.1": attention}


def importance_post(rating="4", attention="strongly_agree"):
    return {**{f"importance-{c.key}": rating for c in selectors.study_criteria()}, "attention.2": attention}


def ranking_post(keys):
    # "order_confirmed": a criteria ranking may equal the (random) shown order; scenario screens ignore it.
    return {**{f"rank-{k}": str(i + 1) for i, k in enumerate(keys)}, "order_confirmed": "yes"}


def criterion_keys():
    return [c.key for c in selectors.study_criteria()]


def consent_post(participant):
    version = selectors.consent_version_current(participant.study)
    return {"consent_version": version.pk, "statement": [str(i) for i in range(len(version.statement_list))]}


def through_consent_and_eligibility(client, participant):
    assert post(client, participant, "consent", consent_post(participant)).status_code == 303
    assert post(client, participant, "eligibility", {"eligibility-adult": "yes", "eligibility-lived": "yes"}).status_code == 303


def from_attitudes_to_the_scenarios(client, participant):
    """Post good attitudes, importance and criteria-ranking pages, then the page before the scenarios."""
    post(client, participant, "attitudes", attitudes_post())
    post(client, participant, "importance", importance_post())
    post(client, participant, "criteria-ranking", ranking_post(criterion_keys()))
    post(client, participant, "before-scenarios", {})


def answer_count(participant):
    return (Answer.objects.filter(participant=participant).count(), ImportanceRating.objects.filter(participant=participant).count(),
            CriteriaRanking.objects.filter(participant=participant).count(), ResponseRanking.objects.filter(participant=participant).count(),
            ConsentRecord.objects.filter(participant=participant).count())


def test_entry_captures_prolific_and_double_start_is_one_participant(client, study):
    participant, fields = start(client, study, "?PROLIFIC_PID=abc123&STUDY_ID=st1&SESSION_ID=se1")
    from survey.prolific import prolific_id_hash, prolific_session_hash

    assert participant.prolific_pid_hash == prolific_id_hash(study_id=study.pk, prolific_id="abc123") != "abc123"
    assert participant.prolific_session_hash == prolific_session_hash(study_id=study.pk, session_id="se1")
    assert participant.prolific_study_id == "st1"
    assert participant.source == Participant.Source.PROLIFIC
    # The Start button pressed twice (same signed nonce): the same participant.
    again = client.post(f"/study/{study.slug}/", fields)
    assert again["Location"].endswith(f"/r/{participant.token}/")
    assert Participant.objects.filter(study=study).count() == 1
    # The resume link leads to the first unanswered step.
    assert client.get(f"/study/r/{participant.token}/")["Location"] == url(participant, "consent")


def test_prolific_id_from_another_submission_gets_no_data(client, study):
    participant, _ = start(client, study, "?PROLIFIC_PID=abc123&STUDY_ID=st1&SESSION_ID=se1")
    page = client.get(f"/study/{study.slug}/?PROLIFIC_PID=abc123&STUDY_ID=st1&SESSION_ID=other")
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.content.decode()))
    response = client.post(f"/study/{study.slug}/", fields)
    assert response.status_code == 409
    assert participant.token not in response.content.decode()


def start_response(client, study, query):
    page = client.get(f"/study/{study.slug}/{query}")
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.content.decode()))
    fields.pop("csrfmiddlewaretoken", None)
    return client.post(f"/study/{study.slug}/", fields)


@pytest.mark.parametrize("leave", ["screen_out", "withdraw"])
def test_a_prolific_id_that_left_cannot_start_again_and_only_its_keyed_hash_is_kept(client, study, leave):
    from survey.models import ProlificExclusion
    from survey.prolific import prolific_id_hash

    participant, _ = start(client, study, "?PROLIFIC_PID=5f1e2d3c4b5a&STUDY_ID=st1&SESSION_ID=se1")
    post(client, participant, "consent", consent_post(participant))
    if leave == "screen_out":
        post(client, participant, "eligibility", {"eligibility-adult": "no", "eligibility-lived": "yes"})
    else:
        client.post(f"/study/r/{participant.token}/withdraw/", {"participant": participant.token, "confirm": "yes"})
    # The record is the keyed hash alone, apart from any participant; the id itself is nowhere.
    exclusion = ProlificExclusion.objects.get()
    assert exclusion.prolific_pid_hash == prolific_id_hash(study_id=study.pk, prolific_id="5f1e2d3c4b5a")
    assert not Participant.objects.filter(prolific_pid_hash=exclusion.prolific_pid_hash).exists()
    assert "5f1e2d3c4b5a" not in str(list(Participant.objects.values()))
    # Back with the same id, from the same or another submission: a kind page, no new participant.
    before = Participant.objects.count()
    for session in ("se1", "se2"):
        response = start_response(client, study, f"?PROLIFIC_PID=5f1e2d3c4b5a&STUDY_ID=st1&SESSION_ID={session}")
        page = response.content.decode()
        assert response.status_code == 409 and "you have already taken part" in page
        assert "cannot start the study again" in page and "Traceback" not in page
    assert Participant.objects.count() == before
    # Another Prolific id, and the same id in another study, start as usual.
    assert start_response(client, study, "?PROLIFIC_PID=other1&STUDY_ID=st1&SESSION_ID=se3").status_code == 303
    from tests.survey.factories import StudyFactory

    assert start_response(client, StudyFactory(), "?PROLIFIC_PID=5f1e2d3c4b5a&STUDY_ID=x&SESSION_ID=se4").status_code == 303


def test_prolific_id_hash_is_keyed_and_per_study(settings):
    from survey.prolific import prolific_id_hash

    first = prolific_id_hash(study_id=1, prolific_id="abc")
    assert first != prolific_id_hash(study_id=2, prolific_id="abc")
    import hashlib

    assert first not in {hashlib.sha256(b"abc").hexdigest(), hashlib.sha256(b"1:abc").hexdigest()}
    settings.PROLIFIC_ID_HASH_KEY = "a dedicated key"
    assert prolific_id_hash(study_id=1, prolific_id="abc") != first


def test_forged_start_nonce_is_refused(client, study):
    response = client.post(f"/study/{study.slug}/", {"start": "made-up"})
    assert response.status_code == 400
    assert Participant.objects.count() == 0


def test_whole_flow_with_back_and_resubmit_saves_one_answer_per_question(client, study):
    participant, _ = start(client, study)
    assert client.get(url(participant, "consent")).status_code == 200
    through_consent_and_eligibility(client, participant)
    # A later step cannot be opened early.
    assert client.get(url(participant, "importance"))["Location"] == url(participant, "background")
    assert client.get(url(participant, "background")).status_code == 200
    assert post(client, participant, "background", background_post())["Location"] == url(participant, "attitudes")
    # Back button: the background page again, shown with the saved answers, resubmitted with a change.
    page = client.get(url(participant, "background")).content.decode()
    assert 'value="25_34" checked' in page
    assert post(client, participant, "background", background_post(**{"background.age_group": "35_44"})).status_code == 303
    # Double submit of the same page.
    assert post(client, participant, "attitudes", attitudes_post()).status_code == 303
    assert post(client, participant, "attitudes", attitudes_post()).status_code == 303
    assert client.get(url(participant, "importance")).status_code == 200
    assert post(client, participant, "importance", importance_post()).status_code == 303
    assert client.get(url(participant, "criteria-ranking")).status_code == 200
    assert post(client, participant, "criteria-ranking", ranking_post(criterion_keys()))["Location"] == url(participant, "before-scenarios")
    page = client.get(url(participant, "before-scenarios")).content.decode()
    assert "Looking after yourself" in page
    assert post(client, participant, "before-scenarios", {}).status_code == 303
    participant.refresh_from_db()
    plan = participant.scenario_plan
    assert len(plan) == study.scenarios_per_participant
    for number, entry in enumerate(plan, start=1):
        page = client.get(url(participant, f"scenario/{number}")).content.decode()
        assert "Content warning" in page and "Skip this one" in page
        if number == 2:
            response = post(client, participant, f"scenario/{number}", {"skip": "1"})
        else:
            response = post(client, participant, f"scenario/{number}", ranking_post(entry["responses"][::-1]))
        assert response.status_code == 303
    page = client.get(url(participant, "closing")).content.decode()
    assert "Looking after yourself" in page
    assert post(client, participant, "closing", {"feedback": "Thanks."})["Location"] == url(participant, "done")
    done = client.get(url(participant, "done")).content.decode()
    # A direct participant gets the study's own ending: no Prolific code or link.
    assert "DONE123" not in done and "prolific.com" not in done and participant.withdrawal_code in done
    participant.refresh_from_db()
    assert participant.status == Participant.Status.COMPLETED
    # Exactly one answer per question.
    keys = list(Answer.objects.filter(participant=participant).values_list("item_key", flat=True))
    expected = [i.key for i in (*questions.BACKGROUND, *questions.ATTITUDES, *questions.ATTENTION_CHECKS)] + [questions.FEEDBACK_KEY]
    assert sorted(keys) == sorted(expected)
    assert Answer.objects.get(participant=participant, item_key="background.age_group").value == "35_44"
    assert ImportanceRating.objects.filter(participant=participant).count() == len(criterion_keys())
    assert ResponseRanking.objects.filter(participant=participant).count() == len(plan)
    skipped = ResponseRanking.objects.get(participant=participant, position=1)
    assert skipped.skipped and skipped.ranking == []
    ranked = ResponseRanking.objects.get(participant=participant, position=0)
    assert ranked.ranking == plan[0]["responses"][::-1] and ranked.shown_order == plan[0]["responses"]
    # After completion an old page resubmitted changes nothing and leads to the end.
    response = post(client, participant, "background", background_post(**{"background.age_group": "18_24"}))
    assert response["Location"] == url(participant, "done")
    assert Answer.objects.get(participant=participant, item_key="background.age_group").value == "35_44"
    progress = client.get(f"/study/r/{participant.token}/progress.json").json()
    assert progress == {"status": "completed", "next_step": None, "done": progress["total"], "total": progress["total"]}


def test_random_orders_are_reproducible_and_stored(client, study):
    participant, _ = start(client, study)
    through_consent_and_eligibility(client, participant)
    post(client, participant, "background", background_post())
    post(client, participant, "attitudes", attitudes_post())
    first = client.get(url(participant, "importance")).content.decode()
    second = client.get(url(participant, "importance")).content.decode()
    order = re.findall(r'name="importance-([a-z_]+)"', first)
    assert order == re.findall(r'name="importance-([a-z_]+)"', second)
    post(client, participant, "importance", importance_post())
    stored = ImportanceRating.objects.filter(participant=participant).first().shown_order
    assert stored == list(dict.fromkeys(order))


# --- Tampered and invalid POSTs: 400, a clear message, nothing saved ----------------------------


@pytest.fixture
def at_ranking(client, study):
    participant, _ = start(client, study)
    through_consent_and_eligibility(client, participant)
    post(client, participant, "background", background_post())
    post(client, participant, "attitudes", attitudes_post())
    post(client, participant, "importance", importance_post())
    return participant


def test_missing_consent_is_400_and_saves_nothing(client, study):
    participant, _ = start(client, study)
    version = selectors.consent_version_current(study)
    response = post(client, participant, "consent", {"consent_version": version.pk, "statement": ["0"]})
    assert response.status_code == 400
    assert "please tick every statement" in response.content.decode()
    response = post(client, participant, "consent", {"consent_version": version.pk})
    assert response.status_code == 400
    assert not ConsentRecord.objects.filter(participant=participant).exists()


def test_consent_for_another_studys_form_is_400(client, study):
    from tests.survey.factories import StudyFactory

    other = selectors.consent_version_current(StudyFactory())
    participant, _ = start(client, study)
    response = post(client, participant, "consent", {"consent_version": other.pk, "statement": ["0", "1", "2"]})
    assert response.status_code == 400 and "does not belong to this study" in response.content.decode()
    assert not ConsentRecord.objects.filter(participant=participant).exists()


def test_consent_to_an_older_version_is_refused_with_a_reload_message(client, study, researcher):
    from survey import services

    participant, _ = start(client, study)
    opened = selectors.consent_version_current(study)  # the page the person opened
    services.consent_version_publish(study=study, information_sheet="A new sheet.", statements="One\nTwo\nThree", actor=researcher)
    response = post(client, participant, "consent", {"consent_version": opened.pk, "statement": ["0", "1", "2"]})
    assert response.status_code == 400
    assert "Please reload the page" in response.content.decode()
    assert not ConsentRecord.objects.filter(participant=participant).exists()
    # After a reload the current version is shown and accepted.
    assert "A new sheet." in client.get(url(participant, "consent")).content.decode()
    assert post(client, participant, "consent", consent_post(participant)).status_code == 303
    assert ConsentRecord.objects.get(participant=participant).consent_version.version == 2


def test_ranking_that_is_not_a_permutation_is_400(client, at_ranking):
    keys = criterion_keys()
    data = ranking_post(keys)
    data[f"rank-{keys[1]}"] = "1"  # two firsts
    before = answer_count(at_ranking)
    response = post(client, at_ranking, "criteria-ranking", data)
    assert response.status_code == 400
    assert "must be used exactly once" in response.content.decode()
    assert answer_count(at_ranking) == before
    data[f"rank-{keys[1]}"] = "9"
    response = post(client, at_ranking, "criteria-ranking", data)
    assert response.status_code == 400 and "whole numbers from 1 to" in response.content.decode()
    missing = ranking_post(keys[:-1])
    response = post(client, at_ranking, "criteria-ranking", missing)
    assert response.status_code == 400 and "give a rank to every criterion" in response.content.decode()
    assert answer_count(at_ranking) == before


def test_unknown_criterion_is_400(client, at_ranking):
    data = {**ranking_post(criterion_keys()), "rank-charisma": "7"}
    response = post(client, at_ranking, "criteria-ranking", data)
    assert response.status_code == 400
    assert "Unknown criterion: charisma" in response.content.decode()
    assert not CriteriaRanking.objects.filter(participant=at_ranking).exists()
    response = post(client, at_ranking, "importance", {**importance_post(), "importance-charisma": "5"})
    assert response.status_code == 400 and "Unknown criterion: charisma" in response.content.decode()


def test_bad_eligibility_answers_are_400_with_the_question_marked_and_nothing_saved(client, study):
    participant, _ = start(client, study)
    assert post(client, participant, "consent", consent_post(participant)).status_code == 303
    response = post(client, participant, "eligibility", {"eligibility-adult": "maybe", "eligibility-lived": "yes"})
    body = response.content.decode()
    assert response.status_code == 400 and "Please answer yes or no:" in body
    assert 'class="question question--error" id="field-eligibility-adult"' in body  # the question is marked
    assert 'value="yes" checked' in body  # the other answer is kept on the page
    response = post(client, participant, "eligibility", {"eligibility-adult": "yes", "eligibility-lived": "yes",
                                                         "eligibility-shoe_size": "yes"})
    assert response.status_code == 400 and "Unknown eligibility question: shoe_size." in response.content.decode()
    response = post(client, participant, "eligibility", {"eligibility-adult": "yes\x00", "eligibility-lived": "yes"})
    assert response.status_code == 400  # the input guard refuses control characters
    participant.refresh_from_db()
    assert participant.eligible_at is None and participant.steps_done == 1


def test_out_of_range_likert_is_400(client, study):
    participant, _ = start(client, study)
    through_consent_and_eligibility(client, participant)
    post(client, participant, "background", background_post())
    before = answer_count(participant)
    response = post(client, participant, "attitudes", attitudes_post(values=("4", "3", "7", "5", "2")))
    assert response.status_code == 400
    assert "“7” is not one of the options" in response.content.decode()
    assert answer_count(participant) == before
    post(client, participant, "attitudes", attitudes_post())
    before = answer_count(participant)
    response = post(client, participant, "importance", importance_post(rating="6"))
    assert response.status_code == 400 and "from 1 to 5" in response.content.decode()
    response = post(client, participant, "importance", importance_post(rating="0"))
    assert response.status_code == 400
    assert answer_count(participant) == before


def test_invalid_background_choices_are_400(client, study):
    participant, _ = start(client, study)
    through_consent_and_eligibility(client, participant)
    for bad in ({"background.diagnoses": ["depression", "prefer_not_to_say"]}, {"background.gender": "robot"},
                {"background.age_group": ""}):
        response = post(client, participant, "background", background_post(**bad))
        assert response.status_code == 400
        assert not Answer.objects.filter(participant=participant).exists()


def test_response_ranking_tampering_is_400(client, at_ranking):
    post(client, at_ranking, "criteria-ranking", ranking_post(criterion_keys()))
    post(client, at_ranking, "before-scenarios", {})
    at_ranking.refresh_from_db()
    shown = at_ranking.scenario_plan[0]["responses"]
    not_permutation = {f"rank-{pk}": "1" for pk in shown}
    response = post(client, at_ranking, "scenario/1", not_permutation)
    assert response.status_code == 400
    other_response = {**ranking_post(shown[:-1]), "rank-999999": "4"}
    response = post(client, at_ranking, "scenario/1", other_response)
    assert response.status_code == 400 and "Unknown response" in response.content.decode()
    assert not ResponseRanking.objects.filter(participant=at_ranking).exists()


HUGE = "9" * 30  # beyond any integer column


def test_huge_numbers_in_consent_rankings_and_screen_numbers_are_4xx_and_save_nothing(client, at_ranking):
    version = selectors.consent_version_current(at_ranking.study)
    fresh, _ = start(client, at_ranking.study)
    response = post(client, fresh, "consent", {"consent_version": HUGE, "statement": ["0", "1", "2"]})
    assert response.status_code == 400 and "does not belong to this study" in response.content.decode()
    response = post(client, fresh, "consent", {"consent_version": version.pk, "statement": [HUGE]})
    assert response.status_code == 400 and "do not match this consent form" in response.content.decode()
    assert not ConsentRecord.objects.filter(participant=fresh).exists()

    post(client, at_ranking, "criteria-ranking", ranking_post(criterion_keys()))
    post(client, at_ranking, "before-scenarios", {})
    at_ranking.refresh_from_db()
    shown = at_ranking.scenario_plan[0]["responses"]
    response = post(client, at_ranking, "scenario/1", {**ranking_post(shown[:-1]), f"rank-{HUGE}": "4"})
    assert response.status_code == 400 and "Unknown response" in response.content.decode()
    response = post(client, at_ranking, "scenario/1", {**ranking_post(shown[:-1]), f"rank-{shown[-1]}": HUGE})
    assert response.status_code == 400 and "whole numbers from 1 to" in response.content.decode()
    assert not ResponseRanking.objects.filter(participant=at_ranking).exists()
    for method in (client.get, lambda path: client.post(path, {"participant": at_ranking.token, "rank": "1"})):
        response = method(f"/study/r/{at_ranking.token}/scenario/{HUGE}/")
        # No such screen is open: sent (303) to the screen that is, never a 500.
        assert response.status_code == 303 and response["Location"].endswith("/scenario/1/")
    assert not ResponseRanking.objects.filter(participant=at_ranking).exists()


def test_another_participants_token_in_the_form_is_400(client, study):
    mine, _ = start(client, study)
    theirs, _ = start(client, study)
    response = client.post(url(mine, "consent"), {"participant": theirs.token, **consent_post(mine)})
    assert response.status_code == 400
    assert "different participant link" in response.content.decode()
    assert not ConsentRecord.objects.exists()


def finish(client, participant):
    through_consent_and_eligibility(client, participant)
    post(client, participant, "background", background_post())
    from_attitudes_to_the_scenarios(client, participant)
    participant.refresh_from_db()
    for number, _ in enumerate(participant.scenario_plan, start=1):
        post(client, participant, f"scenario/{number}", {"skip": "1"})
    assert post(client, participant, "closing", {"feedback": ""})["Location"] == url(participant, "done")


def test_completion_code_only_for_participants_who_arrived_with_a_prolific_id(client, study):
    prolific, _ = start(client, study, "?PROLIFIC_PID=pp7&STUDY_ID=st&SESSION_ID=se7")
    finish(client, prolific)
    page = client.get(url(prolific, "done")).content.decode()
    assert "DONE123" in page and "app.prolific.com/submissions/complete?cc=DONE123" in page
    # A "source=prolific" parameter without a Prolific id does not make a Prolific participant...
    pretender, _ = start(client, study, "?source=prolific")
    assert pretender.source == Participant.Source.DIRECT
    finish(client, pretender)
    # ...and Prolific parameters added at the end page change nothing.
    for query in ("", "?PROLIFIC_PID=pp8&STUDY_ID=st&SESSION_ID=se8", "?source=prolific"):
        page = client.get(url(pretender, "done") + query).content.decode()
        assert "DONE123" not in page and "prolific.com" not in page
        assert "Thank you for taking part" in page


def test_screenout_code_only_for_participants_who_arrived_with_a_prolific_id(client, study):
    direct, _ = start(client, study, "?source=prolific")
    post(client, direct, "consent", consent_post(direct))
    ended = post(client, direct, "eligibility", {"eligibility-adult": "no", "eligibility-lived": "yes"})["Location"]
    for query in ("", "?PROLIFIC_PID=pp9&STUDY_ID=st&SESSION_ID=se9"):
        page = client.get(ended + query).content.decode()
        assert "SCREEN456" not in page and "prolific.com" not in page
        assert "Thank you for your interest" in page
    # The end page's note is signed: claiming to have come from Prolific does not work.
    from django.core import signing

    forged = signing.dumps({"study": study.pk, "prolific": True}, salt="another salt")
    assert client.get(f"/study/ended/{forged}/").status_code == 404


def test_ineligible_person_is_screened_out_and_only_the_record_is_kept(client, study):
    participant, _ = start(client, study, "?PROLIFIC_PID=pp1&STUDY_ID=s&SESSION_ID=x")
    post(client, participant, "consent", consent_post(participant))
    response = post(client, participant, "eligibility", {"eligibility-adult": "yes", "eligibility-lived": "no"})
    assert response["Location"].startswith("/study/ended/") and participant.token not in response["Location"]
    page = client.get(response["Location"]).content.decode()
    assert "Thank you for your interest" in page
    assert "SCREEN456" in page and "app.prolific.com/submissions/complete?cc=SCREEN456" in page
    # Nothing of theirs is kept: not their row, not their answers; the study counts them.
    assert not Participant.objects.filter(pk=participant.pk).exists()
    assert answer_count(participant) == (0, 0, 0, 0, 0)
    assert selectors.study_funnel(study)["screened_out"] == 1 and selectors.study_funnel(study)["started"] == 1
    # Their old link leads to a kind page.
    gone = client.get(url(participant, "background"))
    assert gone.status_code == 404 and "the right fit for you" in gone.content.decode()


def test_crisis_text_shows_helplines_and_flags(client, study, researcher):
    participant, _ = start(client, study)
    through_consent_and_eligibility(client, participant)
    data = background_post(**{"background.gender": "self_describe"})
    data["background.gender-text"] = "honestly some days I want to kill myself"
    response = post(client, participant, "background", data)
    assert response["Location"] == url(participant, "attitudes") + "?support=1"
    page = client.get(response["Location"]).content.decode()
    assert "Support is here if you need it" in page and "Samaritans" in page
    # Not blocked: the answer is saved and the next page is the next step.
    assert Answer.objects.get(participant=participant, item_key="background.gender").text.startswith("honestly")
    assert CrisisFlag.objects.filter(participant=participant, item_key="background.gender").exists()
    # The audit row carries the participant's subject key, no id of theirs, and not what they wrote.
    event = AuditEvent.objects.get(action="survey.crisis_flag")
    participant.refresh_from_db()
    assert event.subject_key == participant.audit_subject.key and event.target_id == ""
    assert participant.pseudonym not in str(event.details) and "kill" not in str(event.details)
    client.force_login(researcher)
    dashboard = client.get(f"/study/manage/{study.slug}/").content.decode()
    assert participant.pseudonym in dashboard and "background.gender" in dashboard


@pytest.mark.parametrize("item, choice", [("background.gender", "self_describe"), ("background.ethnicity", "other"),
                                          ("background.diagnoses", ["other"])])
def test_every_background_text_box_is_checked_for_crisis_language(client, study, item, choice):
    participant, _ = start(client, study)
    through_consent_and_eligibility(client, participant)
    data = background_post(**{item: choice})
    data[f"{item}-text"] = "sometimes I feel like ending it all"
    response = post(client, participant, "background", data)
    assert response["Location"] == url(participant, "attitudes") + "?support=1"
    assert CrisisFlag.objects.filter(participant=participant, item_key=item).exists()


def test_crisis_words_in_an_other_box_whose_option_was_not_ticked_still_show_helplines(client, study):
    participant, _ = start(client, study)
    through_consent_and_eligibility(client, participant)
    data = background_post()  # "woman": the self-description text is not kept
    data["background.gender-text"] = "I keep thinking about killing myself"
    response = post(client, participant, "background", data)
    assert response["Location"] == url(participant, "attitudes") + "?support=1"
    assert Answer.objects.get(participant=participant, item_key="background.gender").text == ""
    assert CrisisFlag.objects.filter(participant=participant, item_key="background.gender").exists()


def test_crisis_words_on_a_page_with_errors_show_helplines_and_save_nothing(client, study):
    participant, _ = start(client, study)
    through_consent_and_eligibility(client, participant)
    data = background_post(**{"background.gender": "self_describe"})
    data["background.gender-text"] = "I don't want to be here anymore"
    data.pop("background.age_group")
    response = post(client, participant, "background", data)
    page = response.content.decode()
    assert response.status_code == 400 and "Support is here if you need it" in page and "Samaritans" in page
    assert "Your answer has been saved" not in page
    assert not Answer.objects.filter(participant=participant).exists()


def test_helpline_numbers_are_each_a_dialable_link(client, study):
    page = client.get("/support/").content.decode()
    for href, display in (("tel:112", "112"), ("tel:911", "911"), ("tel:999", "999"), ("tel:116123", "116 123"),
                          ("tel:131114", "13 11 14"), ("tel:988", "988")):
        assert f'<a href="{href}">{display}</a>' in page
    assert 'tel:112/911/999' not in page
    participant, _ = start(client, study)
    crisis_page = client.get(url(participant, "consent") + "?support=1").content.decode()
    assert '<a href="tel:911">911</a>' in crisis_page and '<a href="tel:116123">116 123</a>' in crisis_page


def test_crisis_text_in_closing_feedback_shows_helplines_on_thank_you_page(client, study):
    participant = complete_participant(study, feedback="")
    assert participant.status == Participant.Status.COMPLETED
    participant2, _ = start(client, study)
    through_consent_and_eligibility(client, participant2)
    post(client, participant2, "background", background_post())
    from_attitudes_to_the_scenarios(client, participant2)
    for number in range(1, study.scenarios_per_participant + 1):
        post(client, participant2, f"scenario/{number}", {"skip": "1"})
    response = post(client, participant2, "closing", {"feedback": "I don't want to be alive any more"})
    assert response["Location"].endswith("/done/?support=1")
    thanks = client.get(response["Location"]).content.decode()
    assert "Samaritans" in thanks
    # The survey is over: the notice says so, not "carry on whenever you are ready".
    assert "the survey is finished" in thanks and "carry on" not in thanks
    assert CrisisFlag.objects.filter(participant=participant2, item_key=questions.FEEDBACK_KEY).exists()


def test_crisis_text_mid_survey_still_says_carry_on_when_ready(client, study):
    participant, _ = start(client, study)
    through_consent_and_eligibility(client, participant)
    response = post(client, participant, "background", background_post(**{"background.diagnoses-text": "I want to die"}))
    page = client.get(response["Location"]).content.decode()
    assert "carry on whenever you are ready" in page and "the survey is finished" not in page


# --- Orientation: step labels, titles, the consent copy -------------------------------------------


def progress_label(page):
    return re.search(r'id="progress-label">([^<]*)<', page).group(1)


def test_step_label_is_the_pages_own_place_after_going_back(client, at_ranking):
    """Five steps are done; going Back to the attitudes page (step 4) must not say "Step 6"."""
    assert progress_label(client.get(url(at_ranking, "criteria-ranking")).content.decode()).startswith("Step 6 of ")
    label = progress_label(client.get(url(at_ranking, "attitudes")).content.decode())
    assert label.startswith("Step 4 of ") and label.endswith(selectors.STEP_TITLES["attitudes"])


def test_scenario_pages_have_their_own_title(client, at_ranking):
    post(client, at_ranking, "criteria-ranking", ranking_post(criterion_keys()))
    post(client, at_ranking, "before-scenarios", {})
    screens = at_ranking.study.scenarios_per_participant
    page = client.get(url(at_ranking, "scenario/1")).content.decode()
    assert re.search(rf"<title>Message 1 of {screens} ·", page)
    assert progress_label(page).endswith(f"Message 1 of {screens}")


def test_consent_copy_is_linked_from_every_later_page_and_the_end_page(client, study):
    participant, _ = start(client, study)
    copy_url = f"/study/r/{participant.token}/consent/copy/"
    assert copy_url not in client.get(url(participant, "consent")).content.decode()  # nothing agreed yet
    through_consent_and_eligibility(client, participant)
    post(client, participant, "background", background_post())
    for step in ("background", "attitudes"):
        page = client.get(url(participant, step)).content.decode()
        assert f'href="{copy_url}"' in page and f'href="{copy_url}?download=1"' in page, step
    assert client.get(copy_url).status_code == 200
    finished = complete_participant(study)
    page = client.get(url(finished, "done")).content.decode()
    assert f'href="/study/r/{finished.token}/consent/copy/"' in page


# --- The criteria ranking: the shown order counts only when confirmed ------------------------------


def test_untouched_criteria_order_is_refused_until_confirmed_and_the_basis_is_stored(client, at_ranking):
    shown = [c.key for c in selectors.criteria_shown_order(at_ranking, selectors.study_criteria(), "ranking")]
    untouched = {f"rank-{k}": str(i + 1) for i, k in enumerate(shown)}
    response = post(client, at_ranking, "criteria-ranking", untouched)
    assert response.status_code == 400 and "This order is right" in response.content.decode()
    assert not CriteriaRanking.objects.filter(participant=at_ranking).exists()
    assert post(client, at_ranking, "criteria-ranking", {**untouched, "order_confirmed": "yes"}).status_code == 303
    saved = CriteriaRanking.objects.get(participant=at_ranking)
    assert (saved.ranking, saved.basis) == (shown, CriteriaRanking.Basis.CONFIRMED)
    # Back to the page: the box is still ticked; a changed order is recorded as the participant's own.
    assert 'id="order-confirmed" aria-describedby="order-confirm-hint" checked' in client.get(url(at_ranking, "criteria-ranking")).content.decode()
    reordered = {f"rank-{k}": str(i + 1) for i, k in enumerate(shown[::-1])}
    assert post(client, at_ranking, "criteria-ranking", reordered).status_code == 303
    saved.refresh_from_db()
    assert (saved.ranking, saved.basis) == (shown[::-1], CriteriaRanking.Basis.REORDERED)


# --- A token reads only its own participant's data ------------------------------------------


def test_unknown_token_gets_404_everywhere(client, study):
    participant = complete_participant(study)
    bogus = "x" * len(participant.token)
    for path in ("", "consent/", "background/", "scenario/1/", "done/", "consent/copy/", "withdraw/", "ended/"):
        assert client.get(f"/study/r/{bogus}/{path}").status_code == 404, path
    api = client.get(f"/study/r/{bogus}/progress.json")
    assert api.status_code == 404 and api.json() == {"error": "not found"}


def test_a_participant_sees_only_their_own_answers(client, study):
    theirs = complete_participant(study, background=None)
    Answer.objects.filter(participant=theirs, item_key="background.ethnicity").update(value="asian")
    mine, _ = start(client, study)
    through_consent_and_eligibility(client, mine)
    page = client.get(url(mine, "background")).content.decode()
    assert " checked" not in page  # nothing prefilled from anyone else
    for content in (page, client.get(f"/study/r/{mine.token}/progress.json").content.decode()):
        assert theirs.token not in content and theirs.pseudonym not in content and theirs.withdrawal_code not in content


def test_consent_copy_is_printable_and_downloadable(client, study):
    participant, _ = start(client, study)
    post(client, participant, "consent", consent_post(participant))
    page = client.get(url(participant, "consent/copy")).content.decode()
    assert "I agree to take part." in page and "version 1" in page.lower()
    download = client.get(url(participant, "consent/copy") + "?download=1")
    assert download["Content-Disposition"].startswith("attachment;")
    assert "I know I can withdraw." in download.content.decode()


def test_home_links_to_the_active_study(client, study):
    assert f'href="/study/{study.slug}/"' in client.get("/").content.decode()
