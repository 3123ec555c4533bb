"""Personas (survey.services.personas): built on completion, edited, selected, exported."""
import numpy as np
import pytest

from core.models import AuditEvent
from survey import services
from survey.exceptions import InvalidAnswer, SurveyError
from survey.models import Answer, Persona
from tests.survey.factories import _cohort, complete_participant, keys

pytestmark = pytest.mark.django_db


def test_persona_export_needs_a_selection(study, tmp_path):
    complete_participant(study)
    with pytest.raises(SurveyError, match="no selected personas"):
        services.personas_export_jsonl(path=tmp_path / "p.jsonl")


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
