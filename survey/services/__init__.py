"""Writes of the survey app, one module per sub-domain:

- ``studies``: a study's settings and consent text;
- ``participants``: start, consent, eligibility, and the row lock (a page's
  POST takes it with its lookup: ``participant_lock_by_token``), the progress
  on the row, audit subject and erasure every participant write shares;
- ``answers``: the survey's pages, each saved once (upserts under the
  participant's row lock), to completion;
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
from .answers import (
    attitudes_save,
    background_save,
    crisis_flag_review,
    criteria_ranking_save,
    importance_save,
    participant_complete,
    response_ranking_save,
    scenario_plan_fix,
    scenarios_begin,
)
from .datasets import dataset_version_create, export_path
from .exports import criteria_rankings_export, response_rankings_export, survey_answers_export
from .participants import consent_give, eligibility_submit, participant_lock_by_token, participant_start
from .personas import persona_build, persona_update, personas_build, personas_export_dataset, personas_export_jsonl, personas_select
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
