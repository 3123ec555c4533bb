"""Reads of the survey app, by area: ``participants`` (a participant's place and
answers), ``cohorts`` (dataset versions, cohorts, weight vectors), ``reports``
(the researchers' dashboard).

The ones other parts of the platform call:

- ``dataset_version_withdrawal_problem(version) -> str | None`` — a message
  naming the version when a participant in it has withdrawn (orchestration
  refuses to start a job on it).
- ``weight_vector_latest(study=..., name=...)`` and ``weight_vectors_for_training``
  — survey weight vectors in the training plans' format (name -> {criterion: weight}).
- ``participant_progress(participant)`` — where a participant is: the steps done,
  kept on their row by every save (``participant_progress_counted`` recounts
  them from the saved answers).
- ``study_criteria()`` — the criteria participants rate and rank, cached per
  process (``vocabulary``: dropped when a criterion is saved or deleted).
"""
from .cohorts import (
    COHORT_FIELDS,
    cohort_participants,
    cohort_validate,
    dataset_version_withdrawal_problem,
    dataset_versions_containing,
    weight_vector_latest,
    weight_vector_problem,
    weight_vectors_for_training,
)
from .participants import (
    FIXED_STEPS,
    PAGE_DEFERRED,
    STEP_TITLES,
    Progress,
    active_study,
    consent_version_current,
    criteria_shown_order,
    criterion_by_key,
    participant_answer,
    participant_answer_values,
    participant_answers,
    participant_by_token,
    participant_by_withdrawal_code,
    participant_consent,
    participant_criteria_ranking,
    participant_importance,
    participant_progress,
    participant_progress_counted,
    participant_steps,
    participant_with_progress,
    progress_columns,
    response_screen,
    scenario_candidates,
    scenario_plan_compute,
    step_title,
    study_criteria,
    study_eligibility_questions,
    study_for_entry,
)
from .reports import cohort_matrices, crisis_flag_text, crisis_flags_open, study_funnel, study_report, study_report_forget

__all__ = [
    "COHORT_FIELDS", "FIXED_STEPS", "PAGE_DEFERRED", "STEP_TITLES", "Progress", "active_study", "cohort_matrices", "cohort_participants",
    "cohort_validate", "consent_version_current", "crisis_flag_text", "crisis_flags_open", "criteria_shown_order", "criterion_by_key",
    "dataset_version_withdrawal_problem", "dataset_versions_containing", "participant_answer", "participant_answer_values", "participant_answers", "participant_by_token",
    "participant_by_withdrawal_code", "participant_consent", "participant_criteria_ranking", "participant_importance",
    "participant_progress", "participant_progress_counted", "participant_steps", "participant_with_progress", "progress_columns", "response_screen", "scenario_candidates", "scenario_plan_compute", "step_title", "study_criteria", "study_eligibility_questions",
    "study_for_entry", "study_funnel", "study_report", "study_report_forget", "weight_vector_latest", "weight_vector_problem",
    "weight_vectors_for_training",
]
