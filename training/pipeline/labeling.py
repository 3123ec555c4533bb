"""Stage 3: a judge ranks every scenario's candidates as each persona, per criterion.

Output: labels JSONL, one line per (persona, scenario), rankings in the
ORIGINAL candidate order. Responses are shown to the judge in a per-(persona,
scenario) seeded shuffle, recorded as ``shown_order`` (``shown_order[p]`` is
the original index of the response shown at position p).

Two sidecars sit next to the output:
- ``<output>.rejected.jsonl``: (persona, scenario) pairs whose judge reply was
  invalid after its retries - counted, never guessed. A rerun does not retry
  them unless ``retry_invalid`` is set (an HTTP judge would replay the same
  cached replies anyway).
- ``<output>.summary.json``: counts (labelled, rejected and why, unavailable
  this run, expected), judge info, criteria.

Resume: lines already in the output or the rejected file are skipped; the
output is appended chunk by chunk, so an interrupted run loses at most one
chunk of work (and with an HTTP cache, not even the judge calls).
"""
from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .control import RunControl, run_control
from .criteria import ALL_CRITERIA_SETS, CriterionSpec, get_criterion
from .io import (
    PipelineConfigError,
    Scenario,
    append_jsonl,
    atomic_write_json,
    derive_seed,
    load_candidates,
    load_personas,
    load_scenarios,
    personas_for_scenario,
    read_jsonl_for_resume,
)
from .judges import Judge, JudgeRequest, build_judge, check_same_judge

__all__ = ["LabelingConfig", "LabelingResult", "run_labeling", "resolve_criteria", "shown_order_for", "sidecar_paths"]


@dataclass
class LabelingConfig:
    candidates_path: str
    scenarios_path: str  # for risk level and split
    personas_path: str
    output_path: str
    judge: dict  # {"backend": "http" | "local" | "rubric", ...backend settings}
    criteria: list[str] | None = None  # criterion keys; None: the criteria_set's
    criteria_set: str = "therapeutic_five_safety"
    persona_split: str | None = "train"
    scenario_split: str | None = "train"
    personas_per_scenario: int | None = None  # None: every persona of the split (the study: 50)
    seed: int = 0
    chunk_size: int = 32  # (persona, scenario) requests per judge batch / append
    retry_invalid: bool = False
    progress_bar: bool = True


@dataclass
class LabelingResult:
    output_path: str
    summary_path: str
    rejected_path: str
    total: int  # (persona, scenario) pairs asked for
    labeled: int  # written by this run
    rejected: int  # invalid replies counted by this run
    unavailable: int  # judge backend unreachable for these this run; a rerun tries again
    skipped: int  # already done before this run
    stopped: bool
    seconds: float
    judge: dict


def resolve_criteria(criteria: list[str] | None, criteria_set: str | None) -> tuple[CriterionSpec, ...]:
    if criteria:
        try:
            return tuple(get_criterion(k) for k in criteria)
        except KeyError as exc:
            raise PipelineConfigError(str(exc.args[0])) from None
    if criteria_set not in ALL_CRITERIA_SETS:
        raise PipelineConfigError(f"unknown criteria_set {criteria_set!r}; known: {', '.join(ALL_CRITERIA_SETS)}")
    return tuple(get_criterion(k) for k in ALL_CRITERIA_SETS[criteria_set].criteria)


def sidecar_paths(output_path: str | Path) -> tuple[Path, Path]:
    output = Path(output_path)
    return output.with_name(output.name + ".rejected.jsonl"), output.with_name(output.name + ".summary.json")


def shown_order_for(seed: int, persona_id: str, scenario_id: str, k: int) -> tuple[list[int], int]:
    """The seeded order responses are shown in for one (persona, scenario), and the seed that made it."""
    order_seed = derive_seed("shown-order", seed, persona_id, scenario_id)
    order = list(range(k))
    random.Random(order_seed).shuffle(order)
    return order, order_seed


def _check_same_run(existing: list[dict], judge_info: dict, keys: list[str], path: Path) -> None:
    check_same_judge(existing, judge_info, path, what="labels", instead="a new output_path")
    for record in existing[:1]:
        if sorted(record.get("criteria", {})) != sorted(keys):
            raise PipelineConfigError(f"{path} holds labels for criteria {sorted(record.get('criteria', {}))}, not {sorted(keys)}")


def run_labeling(config: LabelingConfig, control: RunControl | None = None, *, judge: Judge | None = None) -> LabelingResult:
    control = run_control(control)
    started = time.monotonic()
    criteria = resolve_criteria(config.criteria, config.criteria_set)
    keys = [c.key for c in criteria]
    judge = judge or build_judge(config.judge)
    judge_info = judge.info()

    scenarios: dict[str, Scenario] = {s.scenario_id: s for s in load_scenarios(config.scenarios_path)}
    personas = load_personas(config.personas_path, split=config.persona_split)
    if not personas:
        raise PipelineConfigError(f"{config.personas_path}: no personas in split {config.persona_split!r}")
    candidates = load_candidates(config.candidates_path)
    units = []
    for candidate in candidates:
        scenario = scenarios.get(candidate.scenario_id)
        if scenario is None:
            raise PipelineConfigError(f"scenario {candidate.scenario_id!r} of {config.candidates_path} is not in {config.scenarios_path}")
        if config.scenario_split is not None and scenario.split != config.scenario_split:
            continue
        for persona in personas_for_scenario(candidate.scenario_id, personas, config.personas_per_scenario,
                                             config.seed, purpose="personas"):
            units.append((persona, scenario, candidate))

    output = Path(config.output_path)
    rejected_path, summary_path = sidecar_paths(output)
    existing = read_jsonl_for_resume(output)
    rejected_before = read_jsonl_for_resume(rejected_path)
    _check_same_run(existing, judge_info, keys, output)
    done = {(r["persona_id"], r["scenario_id"]) for r in existing}
    if not config.retry_invalid:
        done |= {(r["persona_id"], r["scenario_id"]) for r in rejected_before}
    todo = [u for u in units if (u[0].persona_id, u[1].scenario_id) not in done]
    total = len(units)
    skipped = total - len(todo)

    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=skipped, disable=not config.progress_bar, desc="label", unit="label")
    control.progress(skipped, total)
    labeled = rejected = unavailable = 0
    stopped = False
    # Counts kept incrementally: re-reading the output after every chunk would be quadratic on a full run.
    counts = {"labels": len(existing), "rejected": len(rejected_before),
              "reasons": Counter(_reason(r.get("error")) for r in rejected_before)}

    def summary() -> None:
        _write_summary(summary_path, counts, total, unavailable, judge_info, keys, config)
    try:
        for start in range(0, len(todo), config.chunk_size):
            if control.should_stop():
                stopped = True
                break
            chunk = todo[start : start + config.chunk_size]
            requests, orders = [], []
            for persona, scenario, candidate in chunk:
                order, order_seed = shown_order_for(config.seed, persona.persona_id, scenario.scenario_id, len(candidate.responses))
                orders.append((order, order_seed))
                requests.append(JudgeRequest(persona, scenario, tuple(candidate.responses[i] for i in order), criteria))
            results = judge.rank_many(requests)
            good, bad = [], []
            for (persona, scenario, _), (order, order_seed), result in zip(chunk, orders, results):
                if result.ok:
                    good.append(
                        {
                            "persona_id": persona.persona_id,
                            "scenario_id": scenario.scenario_id,
                            "criteria": {key: [order[p] for p in result.rankings[key]] for key in keys},
                            "shown_order": order,
                            "seed": order_seed,
                            "judge": judge_info,
                        }
                    )
                elif result.retryable:
                    unavailable += 1
                else:
                    counts["reasons"][_reason(result.error)] += 1
                    bad.append(
                        {
                            "persona_id": persona.persona_id,
                            "scenario_id": scenario.scenario_id,
                            "error": result.error,
                            "attempts": result.attempts,
                            "shown_order": order,
                            "judge": judge_info,
                        }
                    )
            append_jsonl(output, good)
            append_jsonl(rejected_path, bad)
            labeled += len(good)
            rejected += len(bad)
            counts["labels"] += len(good)
            counts["rejected"] += len(bad)
            bar.update(len(good) + len(bad))
            control.progress(skipped + labeled + rejected, total)
            summary()
    finally:
        bar.close()
    if not todo:
        summary()
    return LabelingResult(
        str(output), str(summary_path), str(rejected_path), total, labeled, rejected, unavailable, skipped, stopped,
        time.monotonic() - started, judge_info,
    )


def _reason(error: str | None) -> str:
    return (error or "invalid").split(":")[0]


def _write_summary(summary_path: Path, counts: dict, total: int, unavailable: int, judge_info: dict, keys, config) -> None:
    atomic_write_json(
        summary_path,
        {
            "labels": counts["labels"],
            "rejected": counts["rejected"],
            "rejected_reasons": dict(counts["reasons"]),
            "unavailable_last_run": unavailable,
            "expected": total,
            "complete": counts["labels"] + counts["rejected"] >= total,
            "judge": judge_info,
            "synthetic": bool(judge_info.get("synthetic")),
            "criteria": list(keys),
            "persona_split": config.persona_split,
            "scenario_split": config.scenario_split,
            "personas_per_scenario": config.personas_per_scenario,
            "seed": config.seed,
            "updated": datetime.now(timezone.utc).isoformat(),
        },
    )
