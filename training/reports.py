"""The experiment report: the study-style win-rate table, the Pareto plot,
reward-model accuracies, and the clinicians' verdict once they have rated."""
from __future__ import annotations

from pathlib import Path

from . import selectors
from .models import Experiment, Job


def _svg(path) -> str:
    path = Path(path)
    if path.suffix == ".svg" and path.is_file():
        text = path.read_text()
        return text[text.find("<svg"):]  # drop the XML prologue so it can sit inline
    return ""


def experiment_report_context(*, experiment: Experiment, request=None) -> dict:
    evaluation = selectors.experiment_evaluation(experiment=experiment)
    evaluate_job = experiment.jobs.filter(kind="evaluate", state=Job.State.SUCCEEDED).first()
    plots = [p for p in (evaluate_job.result.get("plots", []) if evaluate_job else []) if p.endswith(".svg")]
    context = {
        "experiment": experiment,
        "status": selectors.experiment_status(experiment=experiment),
        "evaluation": evaluation,
        "win_rate_rows": _win_rate_rows(evaluation) if evaluation else [],
        "criteria": evaluation.get("criteria", []) if evaluation else [],
        "pairings": evaluation.get("pairings", []) if evaluation else [],
        "synthetic_judge": bool(evaluation and evaluation.get("judge", {}).get("synthetic")),
        "plots_svg": [_svg(p) for p in plots],
        "reward_models": selectors.experiment_reward_models(experiment=experiment),
        "rating": _rating_context(experiment, user=getattr(request, "user", None)),
    }
    return context


def _win_rate_rows(evaluation: dict) -> list[dict]:
    """Average pairwise win rate in percent, per model and criterion (the study's headline table)."""
    table = evaluation.get("table", {})
    criteria = evaluation.get("criteria", [])
    rows = []
    for model, by_criterion in table.items():
        values = []
        for c in criteria:
            rate = by_criterion.get(c, {}).get("average_pairwise_win_rate")
            values.append(None if rate is None else 100.0 * rate)
        rows.append({"model": model, "values": values})
    return rows


def _rating_context(experiment: Experiment, user=None):
    """Clinician results for the rating studies sent from this experiment."""
    from annotation import selectors as annotation_selectors

    links = experiment.rating_links.select_related("rating_study")
    if user is not None:
        # A researcher who also rates in a study never sees its results.
        rated = annotation_selectors.rated_study_ids(user)
        links = links.exclude(rating_study__in=rated)
    return [{"study": link.rating_study, "model_key": link.model_key,
             "results": annotation_selectors.rating_study_results(link.rating_study, chart=True)} for link in links]
