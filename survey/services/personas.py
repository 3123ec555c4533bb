"""Personas: built from a participant's answers, edited by researchers, selected and split, exported."""
from __future__ import annotations

import json
from pathlib import Path

from django.db import transaction

from core.models import Criterion
from core.audit import AuditAction, actor_user, audit_record

from .. import questions, selectors
from ..exceptions import InvalidAnswer, SurveyError
from ..models import Answer, DatasetVersion, Participant, Persona, PersonaSelection, Study
from ..personas import persona_scores, persona_text, persona_weights, select_diverse, split_balanced
from ..statistics import rating_ranking_agreement
from .datasets import dataset_version_write
from .participants import participant_audit_subject
from ..prepared import PreparedInsert


def _profile(participant: Participant, criteria: list[Criterion]) -> tuple[dict, float | None]:
    answers = selectors.participant_answer_values(participant)
    ratings = selectors.participant_importance(participant)
    record = selectors.participant_criteria_ranking(participant)
    ranking = record.ranking if record else None
    profile = {
        "background": {i.key.split(".", 1)[1]: answers.get(i.key) for i in questions.BACKGROUND},
        "attitudes": {i.key.split(".", 1)[1]: answers.get(i.key) for i in questions.ATTITUDES},
        "ratings": ratings,
        "ranking": ranking,
        "names": {c.key: c.name for c in criteria},
        "attention_failures": participant.attention_failures,
    }
    tau = None
    keys = [c.key for c in criteria]
    if ranking and set(ratings) == set(keys):
        import numpy as np

        agreement = rating_ranking_agreement(np.array([[ratings[k] for k in keys]]), [[keys.index(k) for k in ranking]])
        tau = agreement.taus[0] if agreement.taus else None
    return profile, tau


_PERSONA_INSERT = PreparedInsert(Persona)  # a participant's first persona: once, on their closing page


def persona_build(*, participant: Participant, criteria: list[Criterion] | None = None, new: bool = False) -> Persona:
    """Build (or refresh) the persona of a completed participant. A text a
    researcher edited is kept; the scores and weights are refreshed. ``new``: the
    participant has just completed, so there is no persona yet to look for."""
    criteria = criteria if criteria is not None else selectors.study_criteria()
    profile, tau = _profile(participant, criteria)
    completeness, consistency, quality = persona_scores(profile, tau)
    values = dict(weights=persona_weights(profile["ratings"]), completeness=completeness, consistency=consistency, quality=quality)
    persona = None if new else Persona.objects.filter(participant=participant).first()
    if persona is None:
        [persona] = _PERSONA_INSERT.save([Persona(participant=participant, text=persona_text(profile), **values)])
        return persona
    if not persona.edited:
        values["text"] = persona_text(profile)
    for name, value in values.items():
        setattr(persona, name, value)
    persona.save()
    return persona


def personas_build(*, study: Study, actor=None) -> int:
    """(Re)build the persona of every completed participant of the study."""
    criteria = selectors.study_criteria()
    count = 0
    with transaction.atomic():
        for participant in Participant.objects.filter(study=study, status=Participant.Status.COMPLETED).order_by("sequence"):
            persona_build(participant=participant, criteria=criteria)
            count += 1
        audit_record(actor=actor, action=AuditAction.SURVEY_PERSONAS_BUILD, target=study, details={"personas": count})
    return count


@transaction.atomic
def persona_update(*, persona: Persona, text: str, split: str | None = None, actor=None) -> Persona:
    """A researcher's edit of a persona's text (kept on rebuild) or split."""
    text = (text or "").strip()
    if not text:
        raise InvalidAnswer({"text": "A persona needs some text."})
    changed = []
    if text != persona.text:
        persona.text, persona.edited = text, True
        changed.append("text")
    if split is not None and split != persona.split:
        if split not in Persona.Split.values:
            raise InvalidAnswer({"split": f"split must be one of {Persona.Split.values}"})
        persona.split, persona.selected = split, bool(split)
        changed.append("split")
    if changed:
        persona.save()
        audit_record(actor=actor, action=AuditAction.SURVEY_PERSONA_EDIT, target_type="survey.persona",
                     subject=participant_audit_subject(persona.participant), details={"changed": changed})
    return persona


def _strata(participants: list[Participant]) -> list[tuple[str, str, str]]:
    keys = ("background.gender", "background.ethnicity")
    answers = {}
    for pid, key, value in Answer.objects.filter(participant__in=participants, item_key__in=keys).values_list("participant_id", "item_key", "value"):
        answers[(pid, key)] = value
    return [(p.source, answers.get((p.pk, keys[0]), ""), answers.get((p.pk, keys[1]), "")) for p in participants]


def personas_select(*, study: Study, total: int | None = None, train: int | None = None, test: int | None = None,
                    seed: int = 0, min_quality: float = 0.5, actor=None) -> PersonaSelection:
    """Choose a diverse subset of good personas and split it train/test.

    Candidates: personas of completed participants not flagged by the
    attention checks, with quality >= min_quality. Selection: greedy max-min
    TF-IDF distance (deterministic for a seed). Split: balanced by source,
    gender and ethnicity. If there are fewer candidates than ``total``, all
    are selected and the split keeps the train:test proportion."""
    total = study.persona_total if total is None else total
    train = study.persona_train if train is None else train
    test = study.persona_test if test is None else test
    if total <= 0 or train < 0 or test < 0 or train + test != total:
        raise InvalidAnswer("Persona sizes must be positive and train + test must equal the total.")
    candidates = list(
        Persona.objects.filter(participant__study=study, participant__status=Participant.Status.COMPLETED,
                               participant__attention_flagged=False, quality__gte=min_quality)
        .select_related("participant").order_by("participant__sequence")
    )
    if not candidates:
        raise SurveyError("No personas qualify for selection yet (build them first, or lower the minimum quality).")
    picked = [candidates[i] for i in select_diverse([p.text for p in candidates], total, seed=seed)]
    n_test = test if len(picked) == total else round(len(picked) * test / total)
    labels = split_balanced(_strata([p.participant for p in picked]), n_test=n_test, seed=seed)
    with transaction.atomic():
        Persona.objects.filter(participant__study=study).update(selected=False, split="")
        for persona, label in zip(picked, labels):
            Persona.objects.filter(pk=persona.pk).update(selected=True, split=label)
        selection = PersonaSelection.objects.create(
            study=study, seed=seed, total=total, train=train, test=test, min_quality=min_quality, candidates=len(candidates),
            details={"selected": len(picked), "train": labels.count("train"), "test": labels.count("test")},
            created_by=actor_user(actor),
        )
        audit_record(actor=actor, action=AuditAction.SURVEY_PERSONAS_SELECT, target=selection,
                     details={"study": study.slug, "seed": seed, **selection.details, "candidates": len(candidates)})
    return selection


def personas_export_jsonl(*, path, study: Study | None = None, split: str | None = None, actor=None, note: str = "",
                          include_synthetic: bool = False) -> DatasetVersion:
    """Write the selected personas as {"persona_id", "text", "split", "weights"} lines
    (training.pipeline.io.load_personas) and record the DatasetVersion.
    ``study`` None: every study's; ``split`` None: train and test; simulated
    participants' personas (the demo cohort) only with ``include_synthetic``."""
    personas = Persona.objects.filter(selected=True, participant__status=Participant.Status.COMPLETED).exclude(split="")
    if study is not None:
        personas = personas.filter(participant__study=study)
    if split is not None:
        personas = personas.filter(split=split)
    synthetic_left_out = 0 if include_synthetic else personas.filter(participant__synthetic=True).count()
    if not include_synthetic:
        personas = personas.filter(participant__synthetic=False)
    personas = list(personas.select_related("participant").order_by("participant__study_id", "participant__sequence"))
    if not personas:
        if synthetic_left_out:
            raise SurveyError(f"The only selected personas are {synthetic_left_out} synthetic ones, which exports leave out; "
                              "include the synthetic participants to export them.")
        raise SurveyError("There are no selected personas to export; build and select personas first.")
    content = "".join(
        json.dumps({"persona_id": p.persona_id, "text": p.text, "split": p.split, "weights": p.weights}, ensure_ascii=False) + "\n"
        for p in personas
    )
    return dataset_version_write(path=Path(path), content=content, kind=DatasetVersion.Kind.PERSONAS,
                              participants=[p.participant for p in personas], actor=actor, study=study,
                              note=note or f"{len(personas)} personas" + (f" ({split})" if split else ""))


def personas_export_dataset(*, path, actor=None, study: Study | None = None, include_synthetic: bool = False) -> DatasetVersion:
    """What orchestration calls to get the survey's personas for a training run."""
    return personas_export_jsonl(path=path, study=study, actor=actor, include_synthetic=include_synthetic)
