"""Survey services: withdrawal, dataset versions, exports, attention checks,
rotation, personas and weight vectors end to end."""
import csv
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from django.db import connection

from core.models import AuditEvent, AuditSubject
from survey import selectors, services
from survey.exceptions import InvalidAnswer, StepNotAvailable, SurveyError
from survey.models import (
    Answer,
    ConsentRecord,
    CriteriaRanking,
    DatasetVersion,
    ImportanceRating,
    Participant,
    Persona,
    ResponseRanking,
    WeightVector,
)
from tests.survey.factories import StudyFactory, background_data, complete_participant

pytestmark = pytest.mark.django_db


def keys():
    return [c.key for c in selectors.study_criteria()]


# --- Withdrawal --------------------------------------------------------------------------


def test_withdrawal_deletes_answers_marks_versions_and_later_exports_exclude(study, tmp_path):
    stays = complete_participant(study)
    leaves = complete_participant(study)
    services.personas_select(study=study, total=2, train=1, test=1, seed=0, min_quality=0)
    answers = services.survey_answers_export(study=study)
    personas = services.personas_export_jsonl(path=tmp_path / "personas.jsonl", study=study)
    vector = services.weight_vector_create(study=study, name="all", n_boot=10)
    unrelated = services.dataset_version_create(kind="training", participants=[stays], files=[tmp_path / "personas.jsonl"])
    assert selectors.dataset_version_withdrawal_problem(answers) is None

    marked = services.participant_withdraw(participant=leaves, via="resume_link")

    assert sorted(marked) == sorted([answers.pk, personas.pk, vector.dataset_version_id])
    # Nothing of theirs is left: not even the emptied participant row.
    assert not Participant.objects.filter(pk=leaves.pk).exists()
    for model in (Answer, ImportanceRating, CriteriaRanking, ResponseRanking, ConsentRecord, Persona):
        assert not model.objects.filter(participant_id=leaves.pk).exists(), model
    assert selectors.study_funnel(study)["withdrawn"] == 1 and selectors.study_funnel(study)["started"] == 2
    # The versions that held them stay, marked, with their hashes; their files are gone from disk.
    for version in (answers, personas, vector.dataset_version):
        version.refresh_from_db()
        assert version.files_deleted_at is not None and version.sha256 and version.participant_count == 2
        assert not any(Path(f["path"]).exists() for f in version.files)
        assert list(version.participants.all()) == [stays]
    for version in (answers, personas):
        problem = selectors.dataset_version_withdrawal_problem(version)
        assert f"dataset version #{version.pk}" in problem and "withdrew" in problem
    assert selectors.dataset_version_withdrawal_problem(unrelated) is None
    with pytest.raises(ValueError, match="withdrew"):
        selectors.weight_vectors_for_training(study=study, names=["all"])
    # Later exports leave them out.
    later = services.survey_answers_export(study=study)
    rows = list(csv.DictReader(open(later.files[0]["path"])))
    assert [r["participant"] for r in rows] == [stays.pseudonym]
    assert list(later.participants.all()) == [stays]
    # The audit row records the withdrawal and what was marked under a subject key that now leads nowhere,
    # with no id of theirs and nothing they answered.
    event = AuditEvent.objects.get(action="survey.participant_withdraw")
    assert event.target_type == "survey.participant" and event.target_id == "" and event.actor_label == "participant"
    assert event.subject_key and not AuditSubject.objects.filter(key=event.subject_key).exists()
    assert set(event.details) == {"study", "via", "previous_status", "dataset_versions_marked", "files_deleted"}
    assert event.details["files_deleted"] == 3
    # Idempotent.
    assert services.participant_withdraw(participant=leaves, via="code") == []


def test_withdrawal_by_code_page(client, study):
    from tests.core.test_ratelimit import fresh_address

    participant, address = complete_participant(study), fresh_address()  # failures are counted per address too
    response = client.post("/study/withdraw/", REMOTE_ADDR=address, data={"code": participant.withdrawal_code.lower().replace("-", " "), "confirm": "yes"})
    assert response.status_code == 200 and "You have withdrawn" in response.content.decode()
    assert not Participant.objects.filter(pk=participant.pk).exists()
    from survey.models import new_withdrawal_code

    # A fresh unknown code each run: failures are counted per code in the (shared) cache.
    assert client.post("/study/withdraw/", REMOTE_ADDR=address, data={"code": new_withdrawal_code(), "confirm": "yes"}).status_code == 400
    # The same code again: not found, and told kindly that there is nothing more to do.
    again = client.post("/study/withdraw/", REMOTE_ADDR=address, data={"code": participant.withdrawal_code, "confirm": "yes"})
    assert again.status_code == 400 and "If you have already withdrawn" in again.content.decode()


def test_withdrawal_from_the_resume_link_mid_survey(client, study):
    participant = services.participant_start(study=study)
    version = selectors.consent_version_current(study)
    services.consent_give(participant=participant, consent_version_id=version.pk, agreed=[0, 1, 2])
    assert client.post(f"/study/r/{participant.token}/withdraw/", {"participant": participant.token}).status_code == 400
    response = client.post(f"/study/r/{participant.token}/withdraw/", {"participant": participant.token, "confirm": "yes"})
    # The end page is addressed by nothing of theirs; their own link now leads to a kind 404.
    assert response["Location"] == "/study/withdraw/done/"
    assert "You have withdrawn" in client.get(response["Location"]).content.decode()
    assert not ConsentRecord.objects.filter(participant_id=participant.pk).exists()
    gone = client.get(f"/study/r/{participant.token}/background/")
    assert gone.status_code == 404 and "If you withdrew from the study" in gone.content.decode()
    # A page still open in another tab: nothing is saved, and the person is sent to the end page.
    with pytest.raises(StepNotAvailable):
        services.background_save(participant=participant, data=background_data())


def test_dataset_version_create_api(study, tmp_path):
    a, b = complete_participant(study), complete_participant(study)
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("one\n")
    second.write_text("two\n")
    version = services.dataset_version_create(kind="training", participants=[a.pseudonym, f"survey-{b.pseudonym}"],
                                              files=[first, second], note="preferences")
    assert version.participant_count == 2 and len(version.files) == 2 and len(version.sha256) == 64
    assert set(version.participants.all()) == {a, b}
    single = services.dataset_version_create(kind="training", participants=[a.pk], files=[first])
    import hashlib

    assert single.sha256 == hashlib.sha256(b"one\n").hexdigest()
    assert AuditEvent.objects.filter(action="survey.dataset_version_create").count() == 2
    with pytest.raises(SurveyError, match="unknown dataset kind"):
        services.dataset_version_create(kind="nope", participants=[a], files=[first])
    with pytest.raises(SurveyError, match="not found"):
        services.dataset_version_create(kind="training", participants=[a], files=[tmp_path / "missing"])
    services.participant_withdraw(participant=b, via="admin")
    assert not first.exists() and not second.exists()  # the files that held b are deleted
    first.write_text("one\n")
    with pytest.raises(SurveyError, match="withdrawn"):
        services.dataset_version_create(kind="training", participants=[a, b], files=[first])
    with pytest.raises(SurveyError, match="withdrawn"):
        services.dataset_version_create(kind="training", participants=[b.pseudonym], files=[first])
    assert selectors.dataset_version_withdrawal_problem(None) is not None


# --- Exports ----------------------------------------------------------------------------


def test_exports_are_deidentified_and_in_the_pipeline_formats(study, tmp_path):
    from training.pipeline.io import load_personas
    from training.pipeline.preferences import pairs_from_survey

    data = background_data(gender="self_describe")
    data["background.gender"]["text"] = "genderfluid, and my name is Alex"
    people = [complete_participant(study, background=data, prolific={"PROLIFIC_PID": f"pid{i}", "SESSION_ID": "s"}) for i in range(3)]
    answers = services.survey_answers_export(study=study)
    content = open(answers.files[0]["path"]).read()
    assert "Alex" not in content and "pid0" not in content and people[0].token not in content
    rows = list(csv.DictReader(content.splitlines()))
    assert len(rows) == 3 and rows[0]["background.diagnoses"] == "depression;anxiety" and rows[0]["importance.empathy"] == "4"
    with_text = services.survey_answers_export(study=study, include_free_text=True)
    assert "Alex" in open(with_text.files[0]["path"]).read()

    ranking = services.criteria_rankings_export(study=study)
    rows = list(csv.DictReader(open(ranking.files[0]["path"])))
    assert len(rows) == 3 * len(keys()) and {r["rank"] for r in rows} == {str(i) for i in range(1, len(keys()) + 1)}

    responses = services.response_rankings_export(study=study)
    records = [json.loads(line) for line in open(responses.files[0]["path"])]
    assert len(records) == 3 * study.scenarios_per_participant
    record = records[0]
    assert set(record) == {"prompt", "scenario_id", "criterion", "ranking", "participant", "shown_order"}
    assert record["ranking"] == record["shown_order"] and len(record["ranking"]) == 4
    pairs_from_survey(records)  # the pipeline accepts it

    services.personas_select(study=study, total=3, train=2, test=1, seed=1, min_quality=0)
    version = services.personas_export_dataset(path=tmp_path / "p.jsonl")
    loaded = load_personas(tmp_path / "p.jsonl")
    assert len(loaded) == 3 and {p.split for p in loaded} == {"train", "test"}
    assert abs(sum(loaded[0].weights.values()) - 1) < 1e-6 and "Alex" not in loaded[0].text
    assert version.kind == DatasetVersion.Kind.PERSONAS and version.participant_count == 3
    assert AuditEvent.objects.filter(action="survey.dataset_version_create").count() == 5


def test_persona_export_needs_a_selection(study, tmp_path):
    complete_participant(study)
    with pytest.raises(SurveyError, match="no selected personas"):
        services.personas_export_jsonl(path=tmp_path / "p.jsonl")


# --- Attention checks, rotation, plans ------------------------------------------------------------


def test_attention_checks_flag_only_after_two_failures_and_keep_the_person(study):
    one = complete_participant(study, attention=("agree", "strongly_agree"))
    two = complete_participant(study, attention=("agree", "disagree"))
    assert (one.attention_failures, one.attention_flagged) == (1, False)
    assert (two.attention_failures, two.attention_flagged) == (2, True)
    assert two.status == Participant.Status.COMPLETED
    assert selectors.study_funnel(study)["attention_flagged"] == 1
    assert two in selectors.cohort_participants(study)
    assert two not in selectors.cohort_participants(study, exclude_flagged=True)


def test_criteria_rotate_so_every_criterion_is_covered(study):
    people = [complete_participant(study) for _ in range(4)]
    counts = {}
    for p in people:
        for entry in p.scenario_plan:
            counts[entry["criterion"]] = counts.get(entry["criterion"], 0) + 1
    # 4 people x 3 screens over 6 criteria: every criterion twice.
    assert counts == {k: 2 for k in keys()}


def test_scenario_plan_is_reproducible_and_fixed_once(study):
    participant = services.participant_start(study=study)
    assert selectors.scenario_plan_compute(participant) == selectors.scenario_plan_compute(participant)
    other = services.participant_start(study=study)
    participant.seed, other.seed = 1, 2
    assert selectors.scenario_plan_compute(participant) != selectors.scenario_plan_compute(other)


def test_consent_versions_are_new_rows_and_old_answers_keep_theirs(study, researcher):
    early = complete_participant(study)
    v2 = services.consent_version_publish(study=study, information_sheet="New sheet", statements="A\nB", actor=researcher)
    assert v2.version == 2
    late = services.participant_start(study=study)
    with pytest.raises(InvalidAnswer):
        services.consent_give(participant=late, consent_version_id=v2.pk, agreed=[0])
    with pytest.raises(InvalidAnswer, match="reload the page"):
        services.consent_give(participant=late, consent_version_id=early.consent.consent_version_id, agreed=[0, 1, 2])
    assert not ConsentRecord.objects.filter(participant=late).exists()
    services.consent_give(participant=late, consent_version_id=v2.pk, agreed=[0, 1])
    assert early.consent.consent_version.version == 1
    assert ConsentRecord.objects.get(participant=late).consent_version.version == 2
    assert AuditEvent.objects.filter(action="survey.consent_publish").count() == 1


def test_steps_must_be_reached_in_order(study):
    participant = services.participant_start(study=study)
    with pytest.raises(StepNotAvailable):
        services.background_save(participant=participant, data=background_data())
    with pytest.raises(StepNotAvailable):
        services.participant_complete(participant=participant)


@pytest.mark.django_db(transaction=True)
def test_two_tabs_saving_at_once_keep_one_answer(study):
    from tests.survey.factories import attitudes_data

    participant = services.participant_start(study=study)
    version = selectors.consent_version_current(study)
    services.consent_give(participant=participant, consent_version_id=version.pk, agreed=[0, 1, 2])
    services.eligibility_submit(participant=participant, answers={"adult": "yes", "lived": "yes"})
    services.background_save(participant=participant, data=background_data())
    barrier = threading.Barrier(4)
    errors = []

    def save(value):
        try:
            barrier.wait()
            services.attitudes_save(participant=participant, data=attitudes_data(values=(value,) * 5))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=save, args=(v,)) for v in (1, 2, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = Answer.objects.filter(participant=participant, item_key="attitude.trust")
    assert rows.count() == 1 and rows.get().value in (1, 2, 3, 4)


# --- Personas and weight vectors ----------------------------------------------------------------


def test_completion_builds_a_persona_and_edits_survive_rebuilds(study, researcher):
    participant = complete_participant(study)
    persona = participant.persona
    assert persona.text.startswith("I am a woman, aged 25–34, from a White background.")
    assert "depression and anxiety" in persona.text
    assert persona.weights == pytest.approx({k: 1 / len(keys()) for k in keys()})
    services.persona_update(persona=persona, text="Edited by hand.", actor=researcher)
    services.personas_build(study=study, actor=researcher)
    persona.refresh_from_db()
    assert persona.text == "Edited by hand." and persona.edited
    assert AuditEvent.objects.filter(action="survey.persona_edit").exists()


def _cohort(study, n, order, rng, gender_cycle=("woman", "man", "non_binary"), sources=("prolific", "university")):
    """Participants whose rankings follow a Plackett–Luce model with strengths decreasing along ``order``."""
    strengths = np.exp(np.linspace(1.5, -1.5, len(order)))
    people = []
    for i in range(n):
        remaining, ranking = list(range(len(order))), []
        while remaining:
            p = strengths[remaining] / strengths[remaining].sum()
            pick = rng.choice(remaining, p=p)
            ranking.append(order[pick])
            remaining.remove(pick)
        ratings = {k: max(1, 5 - ranking.index(k) // 2) for k in order}
        people.append(complete_participant(
            study, ranking=ranking, ratings=ratings, source=sources[i % len(sources)],
            background=background_data(gender=gender_cycle[i % len(gender_cycle)], ethnicity=("white", "asian", "black")[i % 3],
                                       age_group=("18_24", "35_44")[i % 2]),
        ))
    return people


def test_weight_vector_from_a_known_ordering_comes_out_in_order(study, researcher):
    order = ["safety", "empathy", "trust_rapport", "active_listening", "patient_autonomy", "self_motivated_change"]
    _cohort(study, 40, order, np.random.default_rng(7))
    vector = services.weight_vector_create(study=study, name="all", actor=researcher, n_boot=30)
    assert sorted(vector.weights, key=lambda k: -vector.weights[k]) == order
    assert abs(sum(vector.weights.values()) - 1) < 1e-5
    for key, (low, high) in vector.intervals.items():
        assert low <= vector.weights[key] <= high
    importance = services.weight_vector_create(study=study, name="all-importance", method="importance", n_boot=50)
    ordered = sorted(importance.weights, key=lambda k: -importance.weights[k])
    assert ordered[0] in order[:2] and ordered[-1] in order[-2:]
    again = services.weight_vector_create(study=study, name="all", n_boot=5)
    assert again.version == 2
    subgroup = services.weight_vector_create(study=study, name="young", cohort={"age_group": "18_24"}, n_boot=5)
    assert subgroup.participant_count == 20 and subgroup.dataset_version.participant_count == 20
    assert selectors.weight_vectors_for_training(study=study, names=["all"]) == {"all": again.weights}
    with pytest.raises(InvalidAnswer, match="unknown cohort field"):
        services.weight_vector_create(study=study, name="bad", cohort={"shoe_size": "9"})
    with pytest.raises(InvalidAnswer, match="not a value"):
        services.weight_vector_create(study=study, name="bad", cohort={"diagnoses": "flu"})
    with pytest.raises(InvalidAnswer, match="short name"):
        services.weight_vector_create(study=study, name="Not A Slug")
    assert WeightVector.objects.filter(study=study).count() == 4


def test_persona_selection_is_deterministic_for_a_seed_and_balanced(study):
    order = keys()
    _cohort(study, 24, order, np.random.default_rng(3))
    first = services.personas_select(study=study, total=18, train=12, test=6, seed=11, min_quality=0)
    chosen_first = dict(Persona.objects.filter(selected=True).values_list("participant_id", "split"))
    services.personas_select(study=study, total=18, train=12, test=6, seed=99, min_quality=0)
    services.personas_select(study=study, total=18, train=12, test=6, seed=11, min_quality=0)
    chosen_again = dict(Persona.objects.filter(selected=True).values_list("participant_id", "split"))
    assert chosen_again == chosen_first
    assert first.details == {"selected": 18, "train": 12, "test": 6}
    # Balanced: each source, gender and ethnicity gets its proportional share of test personas, within one.
    selected = Persona.objects.filter(selected=True).select_related("participant")
    for field in ("source", "background.gender", "background.ethnicity"):
        groups = {}
        for persona in selected:
            if field == "source":
                value = persona.participant.source
            else:
                value = Answer.objects.get(participant=persona.participant, item_key=field).value
            groups.setdefault(value, []).append(persona.split)
        for value, splits in groups.items():
            assert abs(splits.count("test") - len(splits) * 6 / 18) <= 1.01, (field, value, splits)


def test_persona_selection_leaves_out_flagged_and_low_quality(study):
    good = complete_participant(study)
    flagged = complete_participant(study, attention=("agree", "agree"))
    services.personas_select(study=study, total=2, train=1, test=1, seed=0, min_quality=0)
    assert set(Persona.objects.filter(selected=True).values_list("participant_id", flat=True)) == {good.pk}
    assert flagged.persona.selected is False
    with pytest.raises(SurveyError, match="No personas qualify"):
        services.personas_select(study=study, total=2, train=1, test=1, min_quality=1.1)
    with pytest.raises(InvalidAnswer):
        services.personas_select(study=study, total=3, train=1, test=1)


def test_screen_out_keeps_only_the_record(study):
    participant = services.participant_start(study=study, prolific={"PROLIFIC_PID": "pp", "SESSION_ID": "s1"})
    version = selectors.consent_version_current(study)
    services.consent_give(participant=participant, consent_version_id=version.pk, agreed=[0, 1, 2])
    subject = participant.audit_subject
    assert services.eligibility_submit(participant=participant, answers={"adult": "no", "lived": "yes"}) is False
    assert not Participant.objects.filter(pk=participant.pk).exists()
    assert not ConsentRecord.objects.filter(participant_id=participant.pk).exists()
    assert not AuditSubject.objects.filter(pk=subject.pk).exists()
    from survey.models import ProlificExclusion

    assert list(ProlificExclusion.objects.values_list("study_id", flat=True)) == [study.pk]  # the whole record
    with pytest.raises(InvalidAnswer):
        services.eligibility_submit(participant=participant, answers={"adult": "maybe", "lived": "yes"})
    with pytest.raises(StepNotAvailable):
        services.eligibility_submit(participant=participant, answers={"adult": "yes", "lived": "yes"})
    from survey.exceptions import ProlificExcluded

    for session in ("s1", "s2"):
        with pytest.raises(ProlificExcluded):
            services.participant_start(study=study, prolific={"PROLIFIC_PID": "pp", "SESSION_ID": session})


def test_closed_study_takes_no_one_new():
    closed = StudyFactory(is_active=False)
    with pytest.raises(SurveyError, match="not taking new participants"):
        services.participant_start(study=closed)
