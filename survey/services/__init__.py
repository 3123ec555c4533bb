"""Writes of the survey app, one module per sub-domain:

- ``studies``: a study's settings and consent text;
- ``participants``: start, and the audit subject and erasure every
  participant write shares;
- ``answers``: how a page is saved (a page's POST locks the participant's row
  with its lookup, ``participant_lock_by_token``; the save checks the step,
  upserts and records the progress on the row in that transaction) and the
  response-ranking screens;
- ``questionnaire``: the other pages (consent, eligibility, background,
  attitudes, importance, criteria ranking, closing) and crisis flags;
- ``withdrawal``: ``participant_withdraw(*, participant, via, actor=None)``;
- ``datasets``: ``dataset_version_create(*, kind, participants, files, actor,
  study=None, note="")`` records a dataset built from participants' data; a
  later withdrawal of any of them marks it affected (see
  selectors.dataset_version_withdrawal_problem);
- ``exports``: de-identified answer and ranking exports;
- ``personas``: build, edit, select and export personas
  (``personas_export_dataset(*, path, actor)`` is what training calls);
- ``weights``: ``weight_vector_create(*, study, name, cohort, ...)``
  (normalised Plackett–Luce weights; survey.statistics).

Callers use the package: ``from survey import services;
services.participant_start(...)``.
"""
from .answers import participant_lock_by_token, response_ranking_save, scenario_plan_fix, scenarios_begin
from .datasets import dataset_version_create, export_path
from .exports import criteria_rankings_export, response_rankings_export, survey_answers_export
from .participants import participant_start
from .personas import persona_build, persona_update, personas_build, personas_export_dataset, personas_export_jsonl, personas_select
from .questionnaire import (
    attitudes_save,
    background_save,
    consent_give,
    crisis_flag_review,
    criteria_ranking_save,
    eligibility_submit,
    importance_save,
    participant_complete,
)
from .studies import consent_version_publish, study_save
from .weights import weight_vector_create
from .withdrawal import participant_withdraw

__all__ = [
    "attitudes_save", "background_save", "consent_give", "consent_version_publish", "crisis_flag_review", "criteria_ranking_save",
    "criteria_rankings_export", "dataset_version_create", "eligibility_submit", "export_path", "importance_save",
    "participant_complete", "participant_lock_by_token", "participant_start", "participant_withdraw", "persona_build", "persona_update", "personas_build",
    "personas_export_dataset", "personas_export_jsonl", "personas_select", "response_ranking_save", "response_rankings_export",
    "scenario_plan_fix", "scenarios_begin", "study_save", "survey_answers_export", "weight_vector_create",
]
