"""The experiment report: the study's shape checks, the study-style win-rate
table with bootstrap intervals, tie rates and length control, the Pareto plot,
reward-model accuracies with their intervals, and the clinicians' verdict once
they have rated."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from training.pipeline.stats import accuracy_with_interval

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
        "pairings": _pairing_rows(evaluation) if evaluation else [],
        "shape_checks": _shape_check_rows(evaluation) if evaluation else [],
        "shape_rules": evaluation.get("shape_rules", {}) if evaluation else {},
        "bootstrap": evaluation.get("bootstrap") if evaluation else None,
        "multiple_comparisons": evaluation.get("multiple_comparisons") if evaluation else None,
        "scenario_split": _scenario_split(experiment),
        "synthetic_judge": bool(evaluation and evaluation.get("judge", {}).get("synthetic")),
        "plots_svg": [_svg(p) for p in plots],
        "reward_models": _reward_model_rows(selectors.experiment_reward_models(experiment=experiment)),
        "rating": _rating_context(experiment, user=getattr(request, "user", None)),
    }
    return context


def _percent(value):
    return None if value is None else 100.0 * value


def _percent_interval(interval):
    return None if not interval else [100.0 * interval[0], 100.0 * interval[1]]


def _win_rate_rows(evaluation: dict) -> list[dict]:
    """Per model: mean answer length, and per criterion the average pairwise win rate with its 95% bootstrap
    interval, the tie rate, decisive comparisons, and the length-controlled rate (all in percent)."""
    table = evaluation.get("table", {})
    criteria = evaluation.get("criteria", [])
    lengths = evaluation.get("lengths", {})
    rows = []
    for model, by_criterion in table.items():
        cells = []
        for c in criteria:
            entry = by_criterion.get(c, {})
            cells.append({
                "rate": _percent(entry.get("average_pairwise_win_rate")),
                "interval": _percent_interval(entry.get("interval")),
                "tie_rate": _percent(entry.get("tie_rate")),
                "decisive": entry.get("decisive"),
                "decisions": entry.get("decisions"),
                "ties_half": _percent(entry.get("win_rate_ties_half")),
                "length_controlled": _percent(entry.get("length_controlled_win_rate")),
                "length_controlled_interval": _percent_interval(entry.get("length_controlled_interval")),
            })
        length = lengths.get(model, {})
        rows.append({"model": model, "values": [cell["rate"] for cell in cells], "cells": cells,
                     "mean_words": length.get("mean_words"), "mean_characters": length.get("mean_characters"),
                     "unfinished": _percent(length.get("unfinished_share"))})
    return rows


def _pairing_rows(evaluation: dict) -> list[dict]:
    return [{**p, "win_rate_a_percent": _percent(p.get("win_rate_a")),
             "win_rate_a_interval_percent": _percent_interval(p.get("win_rate_a_interval"))}
            for p in evaluation.get("pairings", [])]


def _shape_check_rows(evaluation: dict) -> list[dict]:
    rows = []
    for check in evaluation.get("shape_checks", []):
        parts = [{**part, "estimate_percent": _percent(part.get("estimate")),
                  "interval_percent": _percent_interval(part.get("interval"))} for part in check.get("parts", [])]
        rows.append({**check, "estimate_percent": _percent(check.get("estimate")),
                     "interval_percent": _percent_interval(check.get("interval")), "parts": parts,
                     "status_label": check["status"].replace("_", " ").lower() if check["status"] == "NOT_APPLICABLE"
                     else check["status"]})
    return rows


def _reward_model_rows(rows: list[dict]) -> list[dict]:
    """Held-out accuracy with the pairs behind it, a 95% Wilson interval and a warning when there are too few."""
    out = []
    for row in rows:
        pairs = row.get("validation_pairs") or 0
        accuracy = row.get("validation_accuracy")
        correct = round(accuracy * pairs) if accuracy is not None and pairs else 0
        held_out = accuracy_with_interval(correct, pairs)
        out.append({**row, "validation_interval": held_out["interval"], "validation_warning": held_out["warning"]})
    return out


def _scenario_split(experiment: Experiment) -> dict | None:
    """How many train and test scenarios the experiment used, and the test set by risk level and topic."""
    job = experiment.jobs.filter(kind="export_inputs", state=Job.State.SUCCEEDED).first()
    path = Path(job.result.get("scenarios_path", "")) if job else None
    if not path or not path.is_file():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    test = [r for r in records if r.get("split") == "test"]
    return {"train": sum(1 for r in records if r.get("split") == "train"), "test": len(test),
            "test_by_risk": sorted(Counter(r.get("risk_level") or "none" for r in test).items()),
            "test_topics": len({t for r in test for t in r.get("topics", [])}),
            "stratified": (job.result.get("test_split") or "") == "stratified"}


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
