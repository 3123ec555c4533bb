"""The first stage: the experiment's scenarios and personas, written to its folder."""
from __future__ import annotations

import random
from pathlib import Path

from core.models import Scenario
from training.jobs.errors import JobRefused
from training.models import Artifact, Job
from training.pipeline.criteria import ALL_CRITERIA, THERAPEUTIC
from training.pipeline.io import write_jsonl_atomic
from training.plans import ExperimentConfig

from .common import StageOutcome, experiment_config, survey_study


SYNTHETIC_PERSONA_TEMPLATE = (
    "Synthetic persona {n} (built from criteria weights, not from a participant). "
    "What matters most to me in a reply is {top}; I also care about {second}. "
    "{style}"
)
PERSONA_STYLES = (
    "I prefer short, plain answers.",
    "I like it when someone takes time to understand me before suggesting anything.",
    "I don't want to be told what to do.",
    "I want practical next steps when I'm ready for them.",
    "I need to feel safe before I open up.",
)


def synthetic_personas(*, train: int, test: int, seed: int) -> list[dict]:
    """Personas with varied criteria weights, for runs with no survey cohort.
    Every one says it is synthetic, in its id and its text."""
    rng = random.Random(seed)
    keys = [c.key for c in THERAPEUTIC]
    personas = []
    for n in range(train + test):
        weights = {k: round(rng.uniform(0.5, 1.5), 3) for k in keys}
        weights[keys[n % len(keys)]] += 1.0
        ordered = sorted(keys, key=lambda k: -weights[k])
        personas.append({
            "persona_id": f"synthetic-{n:03d}",
            "text": SYNTHETIC_PERSONA_TEMPLATE.format(
                n=n, top=ALL_CRITERIA[ordered[0]].name.lower(), second=ALL_CRITERIA[ordered[1]].name.lower(),
                style=PERSONA_STYLES[n % len(PERSONA_STYLES)],
            ),
            "split": "train" if n < train else "test",
            "weights": weights,
        })
    return personas


def scenario_record(scenario: Scenario) -> dict:
    return {"scenario_id": f"s{scenario.pk}", "prompt": scenario.text, "split": scenario.split,
            "risk_level": scenario.risk_level, "topics": list(scenario.topics)}


def scenario_from_id(scenario_id: str) -> Scenario:
    return Scenario.objects.get(pk=int(scenario_id.removeprefix("s")))


def run_export_inputs(job: Job, run) -> StageOutcome:
    config = experiment_config(job)
    work = job.work_dir()
    rng = random.Random(config.seed)
    if config.test_split == "stratified":
        # The whole bank, re-split: the test set stratified by risk level and topic (validation runs).
        from training.pipeline.splits import stratified_split

        pool = [scenario_record(s) for s in Scenario.objects.order_by("pk")]
        try:
            train_records, test_records = stratified_split(pool, train=config.train_scenarios, test=config.test_scenarios,
                                                           seed=config.seed)
        except ValueError as exc:
            raise JobRefused(f"{exc}; import more or lower the numbers") from None
        records = train_records + test_records
    else:
        records = []
        for split, count in (("train", config.train_scenarios), ("test", config.test_scenarios)):
            pool = list(Scenario.objects.filter(split=split).order_by("pk"))
            if len(pool) < count:
                raise JobRefused(f"the experiment asks for {count} {split} scenarios but only {len(pool)} exist; import more or lower the number")
            records += [scenario_record(s) for s in rng.sample(pool, count)]
    scenarios_path = work / "scenarios.jsonl"
    write_jsonl_atomic(scenarios_path, records)
    lineage = {"scenario_ids": [int(r["scenario_id"].removeprefix("s")) for r in records]}
    personas_path = work / "personas.jsonl"
    if config.persona_source == "survey":
        personas, dataset_version = _survey_personas(job, config, personas_path)
        lineage["dataset_versions"] = [dataset_version]
    else:
        personas = synthetic_personas(train=config.personas_train, test=config.personas_test, seed=config.seed)
        write_jsonl_atomic(personas_path, personas)
        lineage["personas"] = "synthetic"
    run.progress(1, 1)
    return StageOutcome(
        result={"scenarios_path": str(scenarios_path), "personas_path": str(personas_path),
                "train_scenarios": config.train_scenarios, "test_scenarios": config.test_scenarios, "personas": len(personas),
                "test_split": config.test_split},
        lineage=lineage,
        artifacts=[
            {"kind": Artifact.Kind.SCENARIOS, "name": "scenarios", "path": scenarios_path},
            {"kind": Artifact.Kind.PERSONAS, "name": "personas", "path": personas_path},
        ],
    )


def _survey_personas(job: Job, config: ExperimentConfig, path: Path):
    """Export the survey's selected personas as a dataset version (withdrawals
    mark it affected) and refuse to go on if one already is."""
    from survey import selectors as survey_selectors
    from survey import services as survey_services

    version = survey_services.personas_export_dataset(path=path, actor=None, study=survey_study(config))
    problem = survey_selectors.dataset_version_withdrawal_problem(version)
    if problem:
        raise JobRefused(problem)
    from training.pipeline.io import load_personas

    return load_personas(path), version.pk
