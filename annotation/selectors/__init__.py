"""Reads of the annotation app, by reader:

- ``clinicians``: ``clinician_queue``, ``assignment_for_clinician``,
  ``rating_page`` and the rest return only what a blinded clinician may see:
  the post, two responses labelled by screen position, their own answers,
  their own progress. Nothing in them names, numbers or orders the sources.
- ``results``: ``rating_study_results`` (the dict a later report renders, with
  the template fragment ``annotation/_results.html``) and the screen review.
- ``exports``: ``judgment_export_rows`` and ``preference_pairs``.
"""
from .clinicians import (
    assignment_for_clinician,
    assignment_next,
    clinician_progress,
    clinician_queue,
    rated_study_ids,
    rating_page,
    require_open,
    study_criteria_by_key,
    study_dimension_keys,
    study_dimensions,
    study_for_clinician,
    user_rates_in_any_study,
    user_rates_in_study,
)
from .exports import JUDGMENT_EXPORT_FIELDS, judgment_export_rows, preference_pairs
from .results import rating_study_results, ratings_by_dimension, study_screen_review

__all__ = [
    "JUDGMENT_EXPORT_FIELDS", "assignment_for_clinician", "assignment_next", "clinician_progress",
    "clinician_queue", "judgment_export_rows", "preference_pairs", "rated_study_ids", "rating_page", "rating_study_results",
    "ratings_by_dimension", "require_open", "study_criteria_by_key", "study_dimension_keys", "study_dimensions",
    "study_for_clinician", "study_screen_review", "user_rates_in_any_study", "user_rates_in_study",
]
