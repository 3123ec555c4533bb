"""Rating-study services: assignment, answers saved once with history, undo,
bad input that changes nothing, judge import, audited exports."""
import json
import random
from collections import Counter

import pytest
from django.db import IntegrityError

from annotation import services
from annotation.exceptions import InvalidInput, InvalidTransition, JudgeImportError, NotAssigned, NothingToUndo, StudyNotOpen
from annotation.models import Assignment, JudgeDecision, Judgment, JudgmentChoice, JudgmentRevision, RatingStudy
from annotation.selectors import study_dimension_keys
from core.models import AuditEvent
from tests.factories import ClinicianFactory, ResearcherFactory, ResponseFactory, ScenarioFactory, UserFactory

from .factories import FixedSourceFactory, make_study, paired_scenarios, screen_answers, small_criteria_set

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "n_items,n_clinicians,overlap",
    [(7, 3, 2), (5, 5, 3), (9, 7, 4), (11, 3, 3), (1, 3, 1), (13, 5, 1), (3, 7, 5), (101, 6, 2)],
)
def test_assignment_plan_meets_overlap_exactly_with_balanced_load(n_items, n_clinicians, overlap):
    queues = services.assignment_plan(n_items=n_items, n_clinicians=n_clinicians, overlap=overlap, rng=random.Random(5))
    per_item = Counter(item for queue in queues for item in queue)
    assert set(per_item) == set(range(n_items))
    assert all(count == overlap for count in per_item.values())
    for queue in queues:
        assert len(queue) == len(set(queue))  # nobody sees an item twice
    loads = [len(q) for q in queues]
    assert max(loads) - min(loads) <= 1
    assert sum(loads) == n_items * overlap


def test_study_create_assigns_every_item_to_overlap_distinct_clinicians():
    study = make_study(n_items=7, n_clinicians=5, overlap=3)
    assert study.state == RatingStudy.State.OPEN
    assert study.items.count() == 7
    per_item = Counter(Assignment.objects.filter(study=study).values_list("item_id", flat=True))
    assert len(per_item) == 7 and set(per_item.values()) == {3}
    loads = Counter(Assignment.objects.filter(study=study).values_list("clinician_id", flat=True))
    assert max(loads.values()) - min(loads.values()) <= 1
    # Each clinician's queue is numbered 1..n; left/right comes from the stored seed.
    for clinician_id in loads:
        positions = sorted(Assignment.objects.filter(study=study, clinician_id=clinician_id).values_list("position", flat=True))
        assert positions == list(range(1, len(positions) + 1))
    for assignment in Assignment.objects.filter(study=study):
        assert assignment.left_is_a == (random.Random(assignment.position_seed).random() < 0.5)
    assert study_dimension_keys(study) == ["empathy", "safety", "overall"]
    event = AuditEvent.objects.get(action="annotation.study.create")
    assert event.target_id == str(study.pk) and event.details["items"] == 7


def _layout(study):
    """The study's assignments as (scenario, clinician, position, left_is_a)."""
    return sorted(Assignment.objects.filter(study=study).values_list("item__scenario_id", "clinician_id", "position", "left_is_a"))


def test_overlap_all_and_the_stored_seed_reproduces_the_layout():
    clinicians = [ClinicianFactory() for _ in range(3)]
    a, b = FixedSourceFactory(), FixedSourceFactory()
    scenarios = paired_scenarios(5, a, b)
    study = services.rating_study_create(
        name="one", overlap="all", source_a=a, source_b=b, scenarios=scenarios, criteria_set=small_criteria_set(),
        clinicians=clinicians, actor=None,
    )
    assert study.overlap == 3 and study.overlap_all
    assert Assignment.objects.filter(study=study).count() == 15
    # For audit after close: the seed alone recomputes every assignment, order and side.
    members = sorted(clinicians, key=lambda u: u.pk)
    items = list(study.items.order_by("order"))
    recomputed = sorted(
        (items[p.item].scenario_id, members[p.clinician].pk, p.position, p.left_is_a)
        for p in services.study_layout(seed=study.seed, n_items=5, n_clinicians=3, overlap=3)
    )
    assert recomputed == _layout(study)


def _same_settings_study(name, a, b, scenarios, clinicians, **kwargs):
    return services.rating_study_create(
        name=name, source_a=a, source_b=b, scenarios=scenarios, criteria_set=small_criteria_set(),
        clinicians=clinicians, overlap=2, actor=None, **kwargs,
    )


def test_studies_with_identical_settings_get_fresh_secret_seeds_and_different_positions():
    clinicians = [ClinicianFactory() for _ in range(3)]
    a, b = FixedSourceFactory(), FixedSourceFactory()
    scenarios = paired_scenarios(12, a, b)
    first = _same_settings_study("first", a, b, scenarios, clinicians, keep_source_order=True)
    second = _same_settings_study("second", a, b, scenarios, clinicians, keep_source_order=True)
    assert first.seed != second.seed
    # 24 assignments: the chance two independent layouts coincide is negligible (< 2**-24 on sides alone).
    assert _layout(first) != _layout(second)
    sides = lambda study: [x[3] for x in _layout(study)]  # noqa: E731
    assert sides(first) != sides(second)


def test_a_coin_decides_which_source_is_a_unless_the_caller_keeps_the_order():
    clinicians = [ClinicianFactory() for _ in range(2)]
    a, b = FixedSourceFactory(), FixedSourceFactory()
    scenarios = paired_scenarios(2, a, b)
    firsts = {_same_settings_study(f"coin {i}", a, b, scenarios, clinicians).source_a_id for i in range(20)}
    assert firsts == {a.pk, b.pk}  # all 20 coins landing the same way: p = 2**-19
    kept = {_same_settings_study(f"kept {i}", a, b, scenarios, clinicians, keep_source_order=True).source_a_id
            for i in range(5)}
    assert kept == {a.pk}


def test_items_keep_each_source_s_own_response_whichever_is_a():
    clinicians = [ClinicianFactory() for _ in range(2)]
    a, b = FixedSourceFactory(), FixedSourceFactory()
    scenarios = paired_scenarios(3, a, b)
    for i in range(6):
        study = _same_settings_study(f"map {i}", a, b, scenarios, clinicians)
        for item in study.items.select_related("response_a", "response_b"):
            assert item.response_a.model_version_id == study.source_a_id
            assert item.response_b.model_version_id == study.source_b_id


def test_the_scenario_sample_comes_from_the_study_seed():
    clinicians = [ClinicianFactory() for _ in range(2)]
    a, b = FixedSourceFactory(), FixedSourceFactory()
    scenarios = paired_scenarios(30, a, b)
    samples = set()
    for i in range(4):
        study = _same_settings_study(f"sample {i}", a, b, scenarios, clinicians, sample_size=5)
        chosen = tuple(study.items.order_by("scenario_id").values_list("scenario_id", flat=True))
        assert len(chosen) == 5
        samples.add(chosen)
    assert len(samples) > 1  # the same five of thirty four times running: p < 1e-15
    with pytest.raises(InvalidInput, match="sample"):
        _same_settings_study("bad sample", a, b, scenarios, clinicians, sample_size=0)


def test_no_caller_can_choose_the_seed():
    a, b = FixedSourceFactory(), FixedSourceFactory()
    with pytest.raises(TypeError):
        _same_settings_study("chosen", a, b, paired_scenarios(1, a, b), [ClinicianFactory()], seed=1)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"overlap": 4}, "overlap"),
        ({"overlap": 0}, "overlap"),
        ({"overlap": "most"}, "overlap"),
        ({"scenarios": []}, "scenario"),
        ({"clinicians": []}, "clinician"),
        ({"name": " "}, "name"),
        ("same_sources", "two different sources"),
        ("not_clinician", "not active clinicians"),
        ("missing_response", "lack a response"),
    ],
)
def test_study_create_rejects_bad_settings_and_writes_nothing(change, message):
    a, b = FixedSourceFactory(), FixedSourceFactory()
    scenarios = paired_scenarios(3, a, b)
    kwargs = dict(name="bad", source_a=a, source_b=b, scenarios=scenarios, criteria_set=small_criteria_set(),
                  clinicians=[ClinicianFactory() for _ in range(3)], overlap=2, actor=None)
    if change == "same_sources":
        kwargs["source_b"] = a
    elif change == "not_clinician":
        kwargs["clinicians"] = kwargs["clinicians"][:2] + [UserFactory()]
    elif change == "missing_response":
        lonely = ScenarioFactory()
        ResponseFactory(scenario=lonely, model_version=a)
        kwargs["scenarios"] = scenarios + [lonely]
    else:
        kwargs.update(change)
    with pytest.raises(InvalidInput, match=message):
        services.rating_study_create(**kwargs)
    assert not RatingStudy.objects.exists() and not AuditEvent.objects.filter(action="annotation.study.create").exists()


def _first(study, clinician):
    return Assignment.objects.filter(study=study, clinician=clinician).order_by("position").first()


def test_submit_stores_source_terms_and_resubmission_keeps_history():
    study = make_study(n_items=3, n_clinicians=2, overlap=2)
    clinician = study.memberships.first().clinician
    assignment = _first(study, clinician)
    judgment = services.judgment_submit(
        assignment=assignment, clinician=clinician, choices=screen_answers(study, "left", safety="tie"),
        unsafe_left=True, comment=" careful ", time_on_task_ms=4200,
    )
    expected_left_source = "a" if assignment.left_is_a else "b"
    stored = dict(judgment.choices.values_list("criterion__key", "choice"))
    assert stored == {"empathy": expected_left_source, "safety": "tie", "overall": expected_left_source}
    assert (judgment.unsafe_a, judgment.unsafe_b) == ((True, False) if assignment.left_is_a else (False, True))
    assert judgment.comment == "careful" and judgment.time_on_task_ms == 4200
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.DONE

    # The same answer again (refresh, double submit) changes nothing.
    services.judgment_submit(assignment=assignment, clinician=clinician, choices=screen_answers(study, "left", safety="tie"),
                             unsafe_left=True, comment="careful", time_on_task_ms=4200)
    assert JudgmentRevision.objects.filter(assignment=assignment).count() == 1

    # A changed answer changes the one judgment and adds a history row.
    services.judgment_submit(assignment=assignment, clinician=clinician, choices=screen_answers(study, "right"))
    assert Judgment.objects.filter(assignment=assignment).count() == 1
    judgment.refresh_from_db()
    assert judgment.revision == 2 and not judgment.unsafe_a and not judgment.unsafe_b
    history = list(JudgmentRevision.objects.filter(assignment=assignment).order_by("number"))
    assert [h.event for h in history] == ["submitted", "changed"]
    assert history[0].answers["choices"]["safety"] == "tie"
    assert set(history[1].answers["choices"].values()) == {"b" if assignment.left_is_a else "a"}
    assert AuditEvent.objects.filter(action="annotation.judgment.change", target_id=str(judgment.pk)).count() == 1


def test_one_judgment_per_clinician_and_item_is_a_database_constraint():
    study = make_study(n_items=1, n_clinicians=1, overlap=1)
    clinician = study.memberships.first().clinician
    assignment = _first(study, clinician)
    judgment = services.judgment_submit(assignment=assignment, clinician=clinician, choices=screen_answers(study))
    with pytest.raises(IntegrityError):
        Judgment.objects.create(assignment=assignment, study=study, item=judgment.item, clinician=clinician, left_is_a=True)


def _state(study):
    return (
        Judgment.objects.filter(study=study).count(),
        JudgmentChoice.objects.filter(judgment__study=study).count(),
        JudgmentRevision.objects.filter(assignment__study=study).count(),
        list(Assignment.objects.filter(study=study).order_by("pk").values_list("status", "draft")),
        AuditEvent.objects.count(),
    )


@pytest.mark.parametrize(
    "case,error",
    [
        ("unknown_dimension", InvalidInput),
        ("missing_dimension", InvalidInput),
        ("bad_value", InvalidInput),
        ("source_terms", InvalidInput),
        ("not_yours", NotAssigned),
        ("closed", StudyNotOpen),
        ("draft_study", StudyNotOpen),
    ],
)
def test_bad_submissions_change_nothing(case, error):
    study = make_study(n_items=2, n_clinicians=2, overlap=1, open_now=case != "draft_study")
    owner, other = [m.clinician for m in study.memberships.all()]
    assignment = _first(study, owner)
    clinician, choices = owner, screen_answers(study)
    if case == "unknown_dimension":
        choices["charisma"] = "left"
    elif case == "missing_dimension":
        choices.pop("safety")
    elif case == "bad_value":
        choices["empathy"] = "both"
    elif case == "source_terms":
        choices["empathy"] = "a"
    elif case == "not_yours":
        clinician = other
    elif case == "closed":
        services.rating_study_close(study=study, actor=None)
    before = _state(study)
    with pytest.raises(error):
        services.judgment_submit(assignment=assignment, clinician=clinician, choices=choices)
    if case != "missing_dimension":  # a draft may be partial; everything else is refused there too
        with pytest.raises(error):
            services.assignment_draft_save(assignment=assignment, clinician=clinician, choices=choices)
    assert _state(study) == before


def test_draft_is_partial_and_resumes():
    study = make_study(n_items=2, n_clinicians=1, overlap=1)
    clinician = study.memberships.first().clinician
    assignment = _first(study, clinician)
    services.assignment_draft_save(assignment=assignment, clinician=clinician, choices={"empathy": "right"},
                                   unsafe_right=True, comment="half", time_on_task_ms=1500)
    services.assignment_draft_save(assignment=assignment, clinician=clinician, choices={"empathy": "right"}, time_on_task_ms=900)
    assignment.refresh_from_db()
    assert assignment.draft["choices"] == {"empathy": "right"}
    assert assignment.status == Assignment.Status.PENDING
    assert assignment.time_on_task_ms == 1500  # time only grows
    assert not Judgment.objects.exists()


def test_undo_withdraws_the_last_answer_and_keeps_history():
    study = make_study(n_items=3, n_clinicians=1, overlap=1)
    clinician = study.memberships.first().clinician
    first, second, third = Assignment.objects.filter(study=study, clinician=clinician).order_by("position")
    services.judgment_submit(assignment=first, clinician=clinician, choices=screen_answers(study, "left"))
    services.judgment_submit(assignment=second, clinician=clinician, choices=screen_answers(study, "tie"), unsafe_right=True)
    undone = services.judgment_undo(study=study, clinician=clinician)
    assert undone.pk == second.pk
    undone.refresh_from_db()
    assert undone.status == Assignment.Status.PENDING
    assert undone.draft["choices"] == screen_answers(study, "tie") and undone.draft["unsafe_right"] is True
    assert not Judgment.objects.filter(assignment=second).exists()
    assert Judgment.objects.filter(assignment=first).exists()
    assert [r.event for r in JudgmentRevision.objects.filter(assignment=second).order_by("number")] == ["submitted", "undone"]
    assert AuditEvent.objects.filter(action="annotation.judgment.undo").count() == 1
    # The withdrawn item is next in the queue; resubmitting continues its history.
    from annotation.selectors import assignment_next

    assert assignment_next(study=study, user=clinician).pk == second.pk
    services.judgment_submit(assignment=second, clinician=clinician, choices=screen_answers(study, "right"))
    assert JudgmentRevision.objects.filter(assignment=second).order_by("-number").first().number == 3
    # Undo again takes the newest answer (the second item again), then the first.
    assert services.judgment_undo(study=study, clinician=clinician).pk == second.pk
    assert services.judgment_undo(study=study, clinician=clinician).pk == first.pk
    with pytest.raises(NothingToUndo):
        services.judgment_undo(study=study, clinician=clinician)
    services.judgment_submit(assignment=first, clinician=clinician, choices=screen_answers(study))
    services.rating_study_close(study=study, actor=None)
    with pytest.raises(StudyNotOpen):
        services.judgment_undo(study=study, clinician=clinician)
    with pytest.raises(NotAssigned):
        services.judgment_undo(study=study, clinician=ClinicianFactory())


def test_study_transitions_are_audited():
    study = make_study(n_items=1, n_clinicians=1, overlap=1, open_now=False)
    researcher = ResearcherFactory()
    assert study.state == "draft"
    with pytest.raises(InvalidTransition):
        services.rating_study_close(study=study, actor=researcher)
    services.rating_study_open(study=study, actor=researcher)
    services.rating_study_close(study=study, actor=researcher)
    study = services.rating_study_open(study=study, actor=researcher)
    assert study.state == "open" and study.closed_at is None
    actions = list(AuditEvent.objects.filter(target_id=str(study.pk), action__startswith="annotation.study.").order_by("id")
                   .values_list("action", flat=True))
    assert actions == ["annotation.study.create", "annotation.study.open", "annotation.study.close", "annotation.study.open"]


# --- judge decisions ---


def _rated_study():
    study = make_study(n_items=3, n_clinicians=2, overlap=2, keys=("empathy",))
    items = list(study.items.order_by("order"))
    return study, items


def test_judge_import_csv_in_source_terms(tmp_path):
    study, items = _rated_study()
    path = tmp_path / "judge.csv"
    lines = ["scenario_id,criterion,choice"]
    lines += [f"{items[0].scenario.external_id},overall,source_a", f"s{items[1].scenario_id},overall,tie",
              f"{items[2].token},empathy,source_b"]
    path.write_text("\n".join(lines) + "\n")
    report = services.judge_decisions_import(study=study, path=path, judge_name="gpt-judge", actor=ResearcherFactory())
    assert report.imported == 3
    stored = {(d.item_id, d.criterion.key): d.choice for d in JudgeDecision.objects.filter(study=study)}
    assert stored == {(items[0].pk, "overall"): "a", (items[1].pk, "overall"): "tie", (items[2].pk, "empathy"): "b"}
    assert AuditEvent.objects.filter(action="annotation.judge.import").count() == 1
    # Importing under the same name replaces, it does not add.
    services.judge_decisions_import(study=study, rows=[{"scenario_id": f"s{items[0].scenario_id}", "criterion": "overall",
                                                        "choice": "source_b"}], judge_name="gpt-judge", actor=None)
    assert list(JudgeDecision.objects.filter(study=study).values_list("choice", flat=True)) == ["b"]


def test_judge_import_reads_the_pipeline_file_in_either_orientation(tmp_path):
    study, items = _rated_study()
    a_name, b_name = "dpo_empathy", "base"
    lines = []
    for index, item in enumerate(items):
        # The pipeline lists source B first for odd items: model_a is then the study's source B.
        flip = index % 2 == 1
        model_a, model_b = (b_name, a_name) if flip else (a_name, b_name)
        text_a, text_b = (item.response_b.text, item.response_a.text) if flip else (item.response_a.text, item.response_b.text)
        lines.append({"scenario_id": f"s{item.scenario_id}", "prompt": item.scenario.text, "criterion": "overall",
                      "model_a": model_a, "model_b": model_b, "response_a": text_a, "response_b": text_b,
                      "majority": "a", "winner": model_a, "judge": {"name": "rubric"}, "synthetic": True})
    lines.append({**lines[0], "model_b": "sft_empathy"})  # another pairing
    lines.append({**lines[0], "criterion": "empathy", "majority": "none"})  # no decision
    lines.append({**lines[0], "scenario_id": "s999999"})  # outside the study
    path = tmp_path / "judge_decisions.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = services.judge_decisions_import(
        study=study, path=path, judge_name="rubric", actor=None, skip_unmatched=True,
        source_names={a_name: "source_a", b_name: "source_b"},
    )
    assert (report.imported, report.skipped_other_pairs, report.skipped_no_decision, report.skipped_unmatched) == (3, 1, 1, 1)
    assert report.synthetic
    decisions = dict(JudgeDecision.objects.filter(study=study).values_list("item_id", "choice"))
    # "a" means the pipeline's model_a: source A for even items, source B for the odd one.
    assert decisions == {items[0].pk: "a", items[1].pk: "b", items[2].pk: "a"}


@pytest.mark.parametrize(
    "rows,message",
    [
        ([{"scenario_id": "X", "criterion": "charisma", "choice": "source_a"}], "unknown dimension"),
        ([{"scenario_id": "X", "criterion": "overall", "choice": "left"}], "choice must be"),
        ([{"scenario_id": "nope", "criterion": "overall", "choice": "tie"}], "not in this study"),
        ([{"criterion": "overall", "choice": "tie"}], "needs item or scenario_id"),
        ([{"scenario_id": "X", "criterion": "overall"}], "needs choice"),
        ([{"scenario_id": "X", "criterion": "overall", "choice": "tie"}] * 2, "second decision"),
        ([{"scenario_id": "X", "criterion": "overall", "model_a": "A", "model_b": "B", "majority": "maybe"}], "majority must be"),
        ([{"scenario_id": "X", "criterion": "overall", "model_a": "A", "model_b": "B", "majority": "a",
           "response_a": "something else", "response_b": "entirely"}], "different responses"),
        ([{"scenario_id": "X", "criterion": "overall", "model_a": "A", "model_b": "other", "majority": "a"}], "no decision"),
        ([], "no decision"),
    ],
)
def test_judge_import_rejects_bad_rows_and_imports_nothing(rows, message):
    study, items = _rated_study()
    good = {"scenario_id": f"s{items[0].scenario_id}", "criterion": "overall", "choice": "source_a"}
    rows = [dict(r, scenario_id=f"s{items[1].scenario_id}") if r.get("scenario_id") == "X" else r for r in rows]
    with pytest.raises(JudgeImportError) as caught:
        services.judge_decisions_import(
            study=study, rows=([good] + rows) if "no decision" not in message else rows, judge_name="j", actor=None,
            source_names={"A": "source_a", "B": "source_b"},
        )
    assert message in " ".join(caught.value.errors + [caught.value.message])
    assert not JudgeDecision.objects.exists()
    assert not AuditEvent.objects.filter(action="annotation.judge.import").exists()


def test_judge_import_rejects_malformed_files(tmp_path):
    study, _ = _rated_study()
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"scenario_id": "s1"\n')
    with pytest.raises(JudgeImportError, match="line 1: not valid JSON"):
        services.judge_decisions_import(study=study, path=bad_json, judge_name="j", actor=None)
    wrong = tmp_path / "judge.txt"
    wrong.write_text("x")
    with pytest.raises(JudgeImportError, match="expected a .jsonl"):
        services.judge_decisions_import(study=study, path=wrong, judge_name="j", actor=None)
    with pytest.raises(JudgeImportError, match="name"):
        services.judge_decisions_import(study=study, rows=[{}], judge_name=" ", actor=None)
    assert not JudgeDecision.objects.exists()


# --- exports ---


def test_exports_are_audited_and_carry_the_order_shown():
    study = make_study(n_items=3, n_clinicians=3, overlap=3, keys=("empathy",))
    researcher = ResearcherFactory()
    for membership in study.memberships.all():
        for assignment in Assignment.objects.filter(study=study, clinician=membership.clinician):
            services.judgment_submit(assignment=assignment, clinician=membership.clinician,
                                     choices={"empathy": assignment.side_of("a"), "overall": assignment.side_of("b")})
    csv_text = services.judgments_export(study=study, actor=researcher)
    header, *rows = csv_text.strip().splitlines()
    assert "shown_left" in header and "choice_shown" in header and "choice_source" in header and "normalisation" in header
    assert len(rows) == 3 * 3 * 2
    import csv as csv_module
    import io

    for row in csv_module.DictReader(io.StringIO(csv_text)):
        expected = "source_a" if row["criterion"] == "empathy" else "source_b"
        assert row["choice_source"] == expected
        shown_as = "A" if row["shown_left"] == expected else "B"
        assert row["choice_shown"] == shown_as
    pairs = [json.loads(line) for line in services.preference_pairs_export(study=study, actor=researcher).splitlines()]
    assert len(pairs) == 6
    assert set(pairs[0]) == {"prompt", "scenario_id", "criterion", "chosen", "rejected", "normalisation"}
    assert pairs[0]["normalisation"] == "display-v1"
    # A coin decided which factory source is A; the pairs follow the sources, not the labels.
    a_prefix = "Warm" if study.items.first().response_a.text.startswith("Warm") else "Brief"
    b_prefix = "Brief" if a_prefix == "Warm" else "Warm"
    for pair in pairs:
        assert pair["chosen"].startswith(a_prefix if pair["criterion"] == "empathy" else b_prefix)
    actions = set(AuditEvent.objects.filter(actor=researcher).values_list("action", flat=True))
    assert actions == {"annotation.export.judgments", "annotation.export.pairs"}


@pytest.mark.parametrize("access", ["staff", "superuser", "researchers_group"])
def test_people_with_researcher_access_cannot_be_raters(access):
    from django.contrib.auth.models import Group

    from core import roles

    a, b = FixedSourceFactory(), FixedSourceFactory()
    rater = ClinicianFactory()
    if access == "researchers_group":
        rater.groups.add(Group.objects.get_or_create(name=roles.RESEARCHERS)[0])
    else:
        setattr(rater, "is_staff" if access == "staff" else "is_superuser", True)
        rater.save()
    with pytest.raises(InvalidInput, match=f"researcher access .*cannot rate.*{rater.username}"):
        services.rating_study_create(
            name="with a researcher", source_a=a, source_b=b, scenarios=paired_scenarios(2, a, b),
            criteria_set=small_criteria_set(), clinicians=[ClinicianFactory(), rater], overlap=1, actor=None,
        )
    assert not RatingStudy.objects.exists() and not Assignment.objects.exists()
    assert not AuditEvent.objects.filter(action="annotation.study.create").exists()


# --- The self-identification screen ------------------------------------------------------


def _study_with_flagged_items(*, open_now=False, n_clinicians=3, overlap=2):
    """Five items; item 1's source-A reply names its model, item 3's source-B reply has template debris."""
    from annotation.models import RatingItem

    a, b = FixedSourceFactory(), FixedSourceFactory()
    scenarios = paired_scenarios(5, a, b)
    from core.models import Response

    Response.objects.filter(scenario=scenarios[1], model_version=a).update(text="As an AI developed by OpenAI, I hear you.")
    Response.objects.filter(scenario=scenarios[3], model_version=b).update(text="Try resting.<|im_end|>\n\n\n")
    study = services.rating_study_create(
        name="flagged", source_a=a, source_b=b, scenarios=scenarios, criteria_set=small_criteria_set(),
        clinicians=[ClinicianFactory() for _ in range(n_clinicians)], overlap=overlap, actor=ResearcherFactory(),
        keep_source_order=True, open_now=open_now,
    )
    items = {i.scenario_id: i for i in RatingItem.objects.filter(study=study)}
    return study, items[scenarios[1].pk], items[scenarios[3].pk]


def test_the_screen_stores_each_hit_and_the_study_cannot_open_until_reviewed():
    from annotation.models import RatingItem, ScreeningHit

    study, named, debris = _study_with_flagged_items(open_now=True)
    assert study.state == RatingStudy.State.DRAFT  # asked to open at once, but there are hits to review
    assert study.normalisation == "display-v1" and study.screened_at is not None
    hits = {(h.item_id, h.source, h.kind, h.matched) for h in ScreeningHit.objects.filter(study=study)}
    assert (named.pk, "a", "self_description", "As an AI") in hits and (named.pk, "a", "vendor", "OpenAI") in hits
    assert (debris.pk, "b", "special_token", "<|im_end|>") in hits
    assert {i.screen for i in RatingItem.objects.filter(study=study) if i.pk not in (named.pk, debris.pk)} == {"clear"}
    assert named.screen == debris.screen == "pending"
    with pytest.raises(InvalidTransition, match="2 item.*not reviewed|2 item.*nobody has reviewed"):
        services.rating_study_open(study=study, actor=None)
    services.rating_item_screen_review(item=named, decision="keep", actor=None)
    with pytest.raises(InvalidTransition, match="1 item"):
        services.rating_study_open(study=study, actor=None)
    services.rating_item_screen_review(item=debris, decision="keep", actor=None)
    assert services.rating_study_open(study=study, actor=None).state == RatingStudy.State.OPEN


def test_a_study_without_hits_opens_at_once():
    study = make_study(n_items=3, n_clinicians=2, overlap=1)
    assert study.state == RatingStudy.State.OPEN and not study.screening_hits.exists()


def test_excluding_an_item_takes_it_out_of_every_queue_and_the_results_and_is_audited():
    from annotation.selectors import preference_pairs, rating_study_results

    study, named, debris = _study_with_flagged_items(n_clinicians=3, overlap=2)
    researcher = ResearcherFactory()
    before = Assignment.objects.filter(study=study).count()
    services.rating_item_screen_review(item=named, decision="exclude", actor=researcher)
    services.rating_item_screen_review(item=debris, decision="keep", actor=researcher)
    assignments = Assignment.objects.filter(study=study)
    assert before == 10 and assignments.count() == 8
    assert not assignments.filter(item=named).exists()
    per_item = Counter(assignments.values_list("item_id", flat=True))
    assert set(per_item.values()) == {2} and len(per_item) == 4  # every remaining item still has its overlap
    loads = Counter(assignments.values_list("clinician_id", flat=True))
    assert max(loads.values()) - min(loads.values()) <= 1
    for clinician_id in loads:
        positions = sorted(assignments.filter(clinician_id=clinician_id).values_list("position", flat=True))
        assert positions == list(range(1, len(positions) + 1))
    events = AuditEvent.objects.filter(action="annotation.item.screen_review").order_by("pk")
    assert [(e.details["item"], e.details["decision"], e.actor_id) for e in events] == [
        (named.token, "exclude", researcher.pk), (debris.token, "keep", researcher.pk)]

    services.rating_study_open(study=study, actor=None)
    for assignment in Assignment.objects.filter(study=study):
        services.judgment_submit(assignment=assignment, clinician=assignment.clinician, choices=screen_answers(study, "left"))
    results = rating_study_results(study, use_cache=False)
    assert results["study"]["items"] == 4 and results["study"]["excluded_items"] == 1
    assert named.scenario_ref not in {p["scenario_id"] for p in preference_pairs(study)}
    with pytest.raises(InvalidTransition, match="draft"):
        services.rating_item_screen_review(item=named, decision="keep", actor=None)


def test_a_screen_decision_and_its_audit_row_share_one_transaction(monkeypatch):
    from annotation.models import RatingItem

    study, named, _ = _study_with_flagged_items()

    def failing_audit(**kwargs):
        raise RuntimeError("audit log unavailable")

    monkeypatch.setattr(services.screen_review, "audit_record", failing_audit)
    with pytest.raises(RuntimeError):
        services.rating_item_screen_review(item=named, decision="exclude", actor=None)
    assert RatingItem.objects.get(pk=named.pk).screen == "pending"
    assert Assignment.objects.filter(study=study, item=named).exists()


def test_bad_screen_decisions_change_nothing():
    from annotation.models import RatingItem

    study, named, _ = _study_with_flagged_items()
    with pytest.raises(InvalidInput, match="keep or exclude"):
        services.rating_item_screen_review(item=named, decision="delete", actor=None)
    clear = RatingItem.objects.filter(study=study, screen="clear").first()
    with pytest.raises(InvalidInput, match="no self-identification hit"):
        services.rating_item_screen_review(item=clear, decision="exclude", actor=None)
    assert not AuditEvent.objects.filter(action="annotation.item.screen_review").exists()


def test_a_study_with_every_item_excluded_cannot_open():
    a, b = FixedSourceFactory(), FixedSourceFactory()
    scenario = ScenarioFactory()
    ResponseFactory(scenario=scenario, model_version=a, text="I'm ChatGPT.")
    ResponseFactory(scenario=scenario, model_version=b, text="Hello.")
    study = services.rating_study_create(name="all out", source_a=a, source_b=b, scenarios=[scenario],
                                         criteria_set=small_criteria_set(), clinicians=[ClinicianFactory()], overlap=1,
                                         actor=None)
    services.rating_item_screen_review(item=study.items.get(), decision="exclude", actor=None)
    assert not Assignment.objects.filter(study=study).exists()
    with pytest.raises(InvalidTransition, match="nothing to rate"):
        services.rating_study_open(study=study, actor=None)


def test_opening_screens_again_and_known_hits_keep_their_decision():
    from annotation.models import RatingItem, ScreeningHit
    from core.models import Response

    study, named, debris = _study_with_flagged_items()
    services.rating_item_screen_review(item=named, decision="keep", actor=None)
    services.rating_item_screen_review(item=debris, decision="keep", actor=None)
    clear = RatingItem.objects.filter(study=study, screen="clear").select_related("response_b").first()
    Response.objects.filter(pk=clear.response_b_id).update(text="Hi! I'm Gemma. Rest well.")
    with pytest.raises(InvalidTransition, match="1 item"):
        services.rating_study_open(study=study, actor=None)
    assert RatingItem.objects.get(pk=clear.pk).screen == "pending"
    assert RatingItem.objects.get(pk=named.pk).screen == "keep"  # unchanged text: still kept
    assert ScreeningHit.objects.filter(item=clear, matched="Gemma").exists()
    assert AuditEvent.objects.filter(action="annotation.study.screen", target_id=str(study.pk)).exists()
