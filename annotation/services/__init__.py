"""Writes of the annotation app, one module per area. Every state change and
its audit row share one transaction (core.audit.audit_record).

- ``studies``: ``rating_study_create`` sets up a blinded A/B study (items,
  balanced assignments from ``annotation.layout``, per-clinician left/right
  order); researchers use it through the admin, training's orchestration
  calls it directly. ``rating_study_open`` / ``rating_study_close``; opening
  is refused while the self-identification screen has unreviewed hits.
- ``screen_review``: ``rating_item_screen_review`` keeps or excludes a flagged
  item, ``rating_study_screen`` runs the screen again.
- ``judgments``: clinician writes (``assignment_mark_shown``,
  ``assignment_draft_save``, ``judgment_submit``, ``judgment_undo``) take
  answers in SCREEN terms ("left" is what the page calls Response A) and
  store them in SOURCE terms.
- ``judge_import``: ``judge_decisions_import``, an automatic judge's
  decisions from the pipeline's ``judge_decisions.jsonl`` or a CSV.
- ``exports``: ``judgments_export`` / ``preference_pairs_export``, audited.

Callers use the package: ``from annotation import services;
services.judgment_submit(...)``.
"""
from ..layout import assignment_plan, seed_commitment, study_layout, study_rng
from .exports import judgments_export, preference_pairs_export
from ..judge_rows import JudgeImportReport, parse_judge_file, parse_judge_text
from .judge_import import judge_decisions_import
from .judgments import SCREEN_CHOICES, assignment_draft_save, assignment_mark_shown, judgment_submit, judgment_undo
from .screen_review import rating_item_screen_review, rating_study_screen
from .studies import rating_study_close, rating_study_create, rating_study_open

__all__ = [
    "JudgeImportReport", "SCREEN_CHOICES", "assignment_draft_save", "assignment_mark_shown", "assignment_plan",
    "judge_decisions_import", "judgment_submit", "judgment_undo", "judgments_export", "parse_judge_file", "parse_judge_text",
    "preference_pairs_export", "rating_item_screen_review", "rating_study_close", "rating_study_create", "rating_study_open",
    "rating_study_screen", "seed_commitment", "study_layout", "study_rng",
]
