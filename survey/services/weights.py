"""Survey weight vectors over the criteria, for a cohort of participants."""
from __future__ import annotations

import json

from django.db import transaction
from django.db.models import Max

from core.audit import AuditAction, actor_user, audit_record

from .. import selectors
from ..exceptions import InvalidAnswer
from ..models import DatasetVersion, Study, WeightVector
from ..statistics import importance_weights, plackett_luce_weights
from .datasets import dataset_version_write, export_path


def weight_vector_create(*, study: Study, name: str, cohort: dict | None = None, method: str = WeightVector.Method.PLACKETT_LUCE,
                         exclude_flagged: bool = False, actor=None, n_boot: int = 200, seed: int = 0) -> WeightVector:
    """Compute a weight vector over the criteria from a cohort of completed
    participants and store it as the next version of ``name``.

    plackett_luce: w_c = exp(θ_c) / Σ exp(θ_j) from the criteria rankings
    (survey.statistics); importance: mean ratings normalised to sum 1."""
    from django.utils.text import slugify

    if not name or slugify(name) != name:
        raise InvalidAnswer({"name": "Use a short name of lower-case letters, digits and hyphens, e.g. 'depression'."})
    if method not in WeightVector.Method.values:
        raise InvalidAnswer({"method": f"method must be one of {', '.join(WeightVector.Method.values)}"})
    cohort = selectors.cohort_validate(cohort or {})
    criteria = selectors.study_criteria()
    participants = selectors.cohort_participants(study, cohort, exclude_flagged=exclude_flagged)
    ratings, rankings = selectors.cohort_matrices(participants, criteria)
    if method == WeightVector.Method.PLACKETT_LUCE:
        members = [p for p, r in zip(participants, rankings) if r is not None]
        estimate = plackett_luce_weights([r for r in rankings if r is not None], len(criteria), n_boot=n_boot, seed=seed)
    else:
        import numpy as np

        complete = ~np.isnan(ratings).any(axis=1) if len(participants) else np.zeros(0, dtype=bool)
        members = [p for p, ok in zip(participants, complete) if ok]
        estimate = importance_weights(ratings[complete], n_boot=max(n_boot, 200), seed=seed) if members else None
    if not members:
        raise InvalidAnswer({"cohort": "No completed participants in this cohort have the answers this method needs."})
    weights = {c.key: round(float(w), 6) for c, w in zip(criteria, estimate.value)}
    intervals = {c.key: [round(float(lo), 6), round(float(hi), 6)] for c, lo, hi in zip(criteria, estimate.low, estimate.high)}
    with transaction.atomic():
        Study.objects.select_for_update().get(pk=study.pk)  # serialise version numbers
        number = (WeightVector.objects.filter(study=study, name=name).aggregate(n=Max("version"))["n"] or 0) + 1
        document = {"study": study.slug, "name": name, "version": number, "method": method, "cohort": cohort,
                    "exclude_flagged": exclude_flagged, "participants": len(members), "weights": weights, "intervals": intervals,
                    "formula": "w_c = exp(theta_c) / sum_j exp(theta_j), theta = Plackett-Luce MLE (choix.ilsr_rankings, alpha=0.01)"
                    if method == WeightVector.Method.PLACKETT_LUCE else "w_c = mean rating_c / sum_j mean rating_j"}
        path = export_path(study, f"weights-{name}-v{number}", ".json")
        version = dataset_version_write(path=path, content=json.dumps(document, indent=2) + "\n", kind=DatasetVersion.Kind.WEIGHT_VECTOR,
                                     participants=members, actor=actor, study=study, note=f"weight vector {name} v{number}")
        vector = WeightVector.objects.create(
            study=study, name=name, version=number, cohort=cohort, method=method, weights=weights, intervals=intervals,
            participant_count=len(members), dataset_version=version,
            created_by=actor_user(actor),
        )
        audit_record(actor=actor, action=AuditAction.SURVEY_WEIGHT_VECTOR_CREATE, target=vector,
                     details={"study": study.slug, "name": name, "version": number, "method": method, "cohort": cohort})
    return vector
