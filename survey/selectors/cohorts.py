"""Dataset versions' withdrawal marks, cohorts of participants and the survey weight vectors training reads."""
from __future__ import annotations

from .. import questions
from ..models import DatasetVersion, Participant, Study, WeightVector


# --- Datasets -----------------------------------------------------------------


def dataset_version_withdrawal_problem(version: DatasetVersion | None) -> str | None:
    """None when the version may be used; otherwise why not, naming the version."""
    if version is None:
        return "the dataset version does not exist"
    version.refresh_from_db(fields=["affected_by_withdrawal_at"])
    if version.affected_by_withdrawal_at is None:
        return None
    return (
        f"{version.label} contains data from a participant who withdrew from the study on "
        f"{version.affected_by_withdrawal_at:%Y-%m-%d %H:%M} UTC; it must not be used. "
        "Build a new version (later exports leave withdrawn participants out)."
    )


def dataset_versions_containing(participant: Participant):
    return DatasetVersion.objects.filter(members__participant=participant)


# --- Cohorts, weight vectors ---------------------------------------------------

COHORT_FIELDS = {
    "age_group": "background.age_group",
    "gender": "background.gender",
    "ethnicity": "background.ethnicity",
    "diagnoses": "background.diagnoses",
    "severity": "background.severity",
    "treatment": "background.treatment",
    "ai_use": "background.ai_use",
}


def cohort_validate(cohort: dict) -> dict:
    """Check a cohort filter: {field: choice key} with field among COHORT_FIELDS or "source"."""
    from ..exceptions import InvalidAnswer

    cohort = dict(cohort or {})
    for name, value in cohort.items():
        if name == "source":
            allowed = Participant.Source.values
        elif name in COHORT_FIELDS:
            allowed = questions.ALL_CHOICE_ITEMS[COHORT_FIELDS[name]].choice_keys
        else:
            raise InvalidAnswer({"cohort": f"unknown cohort field {name!r}; use one of: source, {', '.join(COHORT_FIELDS)}"})
        if value not in allowed:
            raise InvalidAnswer({"cohort": f"{value!r} is not a value of {name!r} (choose from {', '.join(allowed)})"})
    return cohort


def cohort_participants(study: Study, cohort: dict | None = None, *, exclude_flagged: bool = False) -> list[Participant]:
    """Completed participants (withdrawn ones are never included) matching a cohort filter."""
    cohort = cohort_validate(cohort or {})
    participants = Participant.objects.filter(study=study, status=Participant.Status.COMPLETED).order_by("sequence")
    if exclude_flagged:
        participants = participants.filter(attention_flagged=False)
    participants = list(participants.prefetch_related("answers"))
    if not cohort:
        return participants
    selected = []
    for participant in participants:
        answers = {a.item_key: a.value for a in participant.answers.all()}
        if all(_matches(name, value, participant, answers) for name, value in cohort.items()):
            selected.append(participant)
    return selected


def _matches(name, value, participant, answers) -> bool:
    if name == "source":
        return participant.source == value
    given = answers.get(COHORT_FIELDS[name])
    return value in given if isinstance(given, list) else given == value


def weight_vector_latest(*, study: Study, name: str) -> WeightVector | None:
    return WeightVector.objects.filter(study=study, name=name).order_by("-version").first()


def weight_vector_problem(vector: WeightVector) -> str | None:
    if vector.dataset_version_id is None:
        return None
    return dataset_version_withdrawal_problem(vector.dataset_version)


def weight_vectors_for_training(*, study: Study, names: list[str] | None = None) -> dict[str, dict[str, float]]:
    """{name: {criterion: weight}} from the newest version of each named vector,
    in the training plans' ``weight_vectors`` format. Raises ValueError when a
    vector is missing or built from a withdrawn participant's data."""
    vectors = {}
    all_names = names if names is not None else sorted(set(study.weight_vectors.values_list("name", flat=True)))
    for name in all_names:
        vector = weight_vector_latest(study=study, name=name)
        if vector is None:
            raise ValueError(f"no weight vector named {name!r} in study {study.slug!r}")
        problem = weight_vector_problem(vector)
        if problem:
            raise ValueError(f"weight vector {name!r} v{vector.version}: {problem}")
        vectors[name] = dict(vector.weights)
    return vectors
