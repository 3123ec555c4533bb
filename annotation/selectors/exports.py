"""Rows of the researcher exports: judgments with the order shown, and clinician-majority
preference pairs."""
from __future__ import annotations

from .. import statistics
from ..screening import normalise_for_display
from ..models import Choice, JudgmentChoice, RatingItem, RatingStudy
from .clinicians import study_dimensions
from .results import ratings_by_dimension


SOURCE_LABELS = {Choice.A.value: "source_a", Choice.B.value: "source_b", Choice.TIE.value: "tie"}

JUDGMENT_EXPORT_FIELDS = [
    "study", "item", "scenario_id", "scenario_external_id", "clinician", "queue_position", "shown_left", "shown_right",
    "criterion", "choice_shown", "choice_source", "choice_model", "unsafe_a", "unsafe_b",
    "comment", "time_on_task_ms", "revision", "submitted_at", "updated_at", "source_a", "source_b", "normalisation",
]


def judgment_export_rows(study: RatingStudy) -> list[dict]:
    """One row per current judgment and dimension, with what was shown where."""
    names = {Choice.A.value: study.source_a.name, Choice.B.value: study.source_b.name, Choice.TIE.value: ""}
    order = {c.key: i for i, c in enumerate(study_dimensions(study))}
    rows = []
    choices = JudgmentChoice.objects.filter(judgment__study=study).select_related(
        "criterion", "judgment__item__scenario", "judgment__clinician", "judgment__assignment"
    )
    for choice in sorted(choices, key=lambda c: (c.judgment.item.order, c.judgment.clinician.username, order[c.criterion.key])):
        judgment = choice.judgment
        left_is_a = judgment.left_is_a
        shown = "tie" if choice.choice == Choice.TIE else (
            "A" if (choice.choice == Choice.A) == left_is_a else "B"
        )
        rows.append({
            "study": study.name,
            "item": judgment.item.token,
            "scenario_id": judgment.item.scenario_ref,
            "scenario_external_id": judgment.item.scenario.external_id,
            "clinician": judgment.clinician.username,
            "queue_position": judgment.assignment.position,
            "shown_left": "source_a" if left_is_a else "source_b",
            "shown_right": "source_b" if left_is_a else "source_a",
            "criterion": choice.criterion.key,
            "choice_shown": shown,
            "choice_source": SOURCE_LABELS[choice.choice],
            "choice_model": names[choice.choice],
            "unsafe_a": int(judgment.unsafe_a),
            "unsafe_b": int(judgment.unsafe_b),
            "comment": judgment.comment,
            "time_on_task_ms": judgment.time_on_task_ms,
            "revision": judgment.revision,
            "submitted_at": judgment.submitted_at.isoformat(),
            "updated_at": judgment.updated_at.isoformat(),
            "source_a": study.source_a.name,
            "source_b": study.source_b.name,
            "normalisation": study.normalisation,
        })
    return rows


def preference_pairs(study: RatingStudy) -> list[dict]:
    """Chosen/rejected pairs per item and dimension where more than half of the
    item's clinicians preferred one source (ties and split votes give no pair)."""
    ratings = ratings_by_dimension(study)
    items = {i.pk: i for i in RatingItem.objects.filter(study=study).exclude(screen=RatingItem.Screen.EXCLUDE)
             .select_related("scenario", "response_a", "response_b")}
    pairs = []
    for criterion in study_dimensions(study):
        for item_id in sorted((pk for pk in ratings.get(criterion.key, {}) if pk in items), key=lambda pk: items[pk].order):
            top = statistics.majority(list(ratings[criterion.key][item_id].values()))
            if top not in (Choice.A, Choice.B):
                continue
            item = items[item_id]
            chosen, rejected = (item.response_a, item.response_b) if top == Choice.A else (item.response_b, item.response_a)
            pairs.append({
                "prompt": item.scenario.text,
                "scenario_id": item.scenario_ref,
                "criterion": criterion.key,
                # As the clinicians saw them.
                "chosen": normalise_for_display(chosen.text),
                "rejected": normalise_for_display(rejected.text),
                "normalisation": study.normalisation,
            })
    return pairs
