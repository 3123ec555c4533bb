"""Stage 4: persona rankings (and human answers) -> a versioned preference dataset.

Symmetric weighted voting. With K responses, the response a voter ranks at
position i (0 = best) scores ``10 * (K - 1 - 2i) / (K - 1)``: +10 for the best,
-10 for the worst, evenly spaced and summing to zero. K=5 gives +10, +5, 0,
-5, -10; K=4 gives +10, +10/3, -10/3, -10; K=2 gives +10, -10.

Per scenario and criterion the response with the highest total becomes
``chosen`` and the one with the lowest ``rejected``. Ties:
- top: the tied response with more first places wins, then the one with fewer
  last places; if still tied the scenario is dropped and counted ``tied_top``;
- bottom: the tied response with more last places loses, then the one with
  fewer first places; if still tied, dropped as ``tied_bottom``;
- if chosen and rejected would be the same response (all totals equal), it is
  dropped as ``tied_top``.
``chosen_score`` / ``rejected_score`` are the mean per-voter scores (the same
+-10 scale for every source).

Sources: ``judge:<name>`` (labels JSONL), ``survey`` (human rankings, voted the
same way per scenario and criterion, each participant with their own K) and
``clinician`` (majority pairs as given, scored +10/-10). Every pair keeps its
source.

Output: ``DatasetDict.save_to_disk(output_dir)``, one split per criterion, plus
``card.json``. The version is the content hash of the rows (not of the creation
time), so rebuilding from the same inputs gives the same version and a rerun
leaves the directory alone.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .control import RunControl, run_control
from .criteria import get_criterion
from .io import (
    PipelineConfigError,
    atomic_write_json,
    load_candidates,
    load_personas,
    load_scenarios,
    read_json,
    read_jsonl,
    sha256_file,
    sha256_json,
)

__all__ = [
    "PreferenceConfig",
    "PreferenceResult",
    "VoteTally",
    "PairChoice",
    "PREFERENCE_COLUMNS",
    "rank_position_scores",
    "tally_votes",
    "select_pair",
    "pairs_from_labels",
    "pairs_from_survey",
    "pairs_from_clinicians",
    "build_preference_dataset",
]

PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected", "scenario_id", "criterion", "source", "chosen_score", "rejected_score")
CARD_FORMAT = 1


@dataclass
class PreferenceConfig:
    output_dir: str
    labels_path: str | None = None  # judge labels (labeling stage output)
    candidates_path: str | None = None  # required with labels_path
    scenarios_path: str | None = None  # required with labels_path: only scenario_split scenarios are used
    personas_path: str | None = None  # optional: restrict label voters to persona_split
    scenario_split: str = "train"
    persona_split: str | None = "train"
    criteria: list[str] | None = None  # None: every criterion found in the inputs
    survey_path: str | None = None
    clinician_path: str | None = None
    min_votes: int = 1  # fewer voters than this for a scenario and criterion: dropped
    overwrite: bool = False  # replace an existing dataset with a different version


@dataclass
class PreferenceResult:
    output_dir: str
    version: str
    counts: dict  # criterion -> {"total", "by_source"}
    dropped: dict  # criterion -> {reason: n}
    unchanged: bool  # the directory already held this version
    seconds: float
    card: dict = field(repr=False, default_factory=dict)


# ---------------------------------------------------------------------------
# Voting


def rank_position_scores(k: int) -> list[float]:
    """Score of each rank position (best first) under symmetric linear voting."""
    if k < 1:
        raise ValueError("k must be at least 1")
    if k == 1:
        return [0.0]
    return [10.0 * (k - 1 - 2 * i) / (k - 1) for i in range(k)]


@dataclass
class VoteTally:
    totals: list[float]
    firsts: list[int]
    lasts: list[int]
    voters: int


@dataclass(frozen=True)
class PairChoice:
    chosen: int
    rejected: int
    chosen_score: float  # mean per voter
    rejected_score: float


def tally_votes(rankings: Sequence[Sequence[int]], k: int) -> VoteTally:
    """Sum position scores over voters; each ranking lists all k indices best first."""
    scores = rank_position_scores(k)
    totals = [0.0] * k
    firsts = [0] * k
    lasts = [0] * k
    for ranking in rankings:
        if sorted(ranking) != list(range(k)):
            raise ValueError(f"ranking {list(ranking)} is not a permutation of 0..{k - 1}")
        for position, index in enumerate(ranking):
            totals[index] += scores[position]
        firsts[ranking[0]] += 1
        lasts[ranking[-1]] += 1
    return VoteTally(totals, firsts, lasts, len(rankings))


def _narrow(candidates: list[int], key) -> list[int]:
    best = max(key(i) for i in candidates)
    return [i for i in candidates if key(i) == best]


def select_pair(tally: VoteTally) -> PairChoice | str:
    """The chosen/rejected pair, or the reason it is dropped ("tied_top", "tied_bottom")."""
    k = len(tally.totals)
    if k < 2 or tally.voters == 0:
        return "tied_top"
    # Totals are sums of multiples of 10/(k-1); rounding keeps float noise from breaking real ties.
    total = [round(t, 6) for t in tally.totals]
    top = _narrow(list(range(k)), lambda i: total[i])
    top = _narrow(top, lambda i: tally.firsts[i])
    top = _narrow(top, lambda i: -tally.lasts[i])
    if len(top) > 1:
        return "tied_top"
    bottom = _narrow(list(range(k)), lambda i: -total[i])
    bottom = _narrow(bottom, lambda i: tally.lasts[i])
    bottom = _narrow(bottom, lambda i: -tally.firsts[i])
    if len(bottom) > 1:
        return "tied_bottom"
    chosen, rejected = top[0], bottom[0]
    if chosen == rejected:
        return "tied_top"
    n = tally.voters
    return PairChoice(chosen, rejected, tally.totals[chosen] / n, tally.totals[rejected] / n)


# ---------------------------------------------------------------------------
# Sources -> rows


def _row(prompt, chosen, rejected, scenario_id, criterion, source, chosen_score, rejected_score) -> dict:
    return {
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "scenario_id": scenario_id,
        "criterion": criterion,
        "source": source,
        "chosen_score": float(chosen_score),
        "rejected_score": float(rejected_score),
    }


def pairs_from_labels(
    labels: Sequence[dict],
    candidates: dict[str, tuple[str, Sequence[str]]],
    *,
    criteria: Sequence[str] | None = None,
    min_votes: int = 1,
) -> tuple[list[dict], dict[str, Counter], dict]:
    """Judge labels -> rows. ``candidates``: scenario_id -> (prompt, responses). Returns (rows, dropped, judge)."""
    judges = {sha256_json(r["judge"]): r["judge"] for r in labels if "judge" in r}
    if len(judges) > 1:
        raise PipelineConfigError("the labels come from more than one judge; build one dataset per judge")
    judge = next(iter(judges.values()), None)
    source = f"judge:{judge['name']}" if judge else "judge:unknown"
    grouped: dict[tuple[str, str], list[list[int]]] = defaultdict(list)
    for record in labels:
        for key, ranking in record["criteria"].items():
            if criteria is None or key in criteria:
                grouped[(record["scenario_id"], key)].append(ranking)
    rows: list[dict] = []
    dropped: dict[str, Counter] = defaultdict(Counter)
    for (scenario_id, key), rankings in sorted(grouped.items()):
        if scenario_id not in candidates:
            dropped[key]["no_candidates"] += 1
            continue
        prompt, responses = candidates[scenario_id]
        if len(rankings) < min_votes:
            dropped[key]["too_few_votes"] += 1
            continue
        choice = select_pair(tally_votes(rankings, len(responses)))
        if isinstance(choice, str):
            dropped[key][choice] += 1
            continue
        if responses[choice.chosen] == responses[choice.rejected]:
            dropped[key]["identical_texts"] += 1
            continue
        rows.append(_row(prompt, responses[choice.chosen], responses[choice.rejected], scenario_id, key, source,
                         choice.chosen_score, choice.rejected_score))
    return rows, dropped, judge


def pairs_from_survey(records: Sequence[dict], *, criteria: Sequence[str] | None = None, min_votes: int = 1):
    """Survey rankings (response texts best first, one record per participant) -> (rows, dropped)."""
    grouped: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for number, record in enumerate(records, start=1):
        for key in ("prompt", "scenario_id", "criterion", "ranking"):
            if key not in record:
                raise PipelineConfigError(f"survey record {number}: missing {key!r}")
        if not isinstance(record["ranking"], list) or len(record["ranking"]) < 2:
            raise PipelineConfigError(f"survey record {number}: ranking must list at least two response texts")
        if criteria is None or record["criterion"] in criteria:
            grouped[(record["scenario_id"], record["criterion"])].append(record)
    rows: list[dict] = []
    dropped: dict[str, Counter] = defaultdict(Counter)
    for (scenario_id, key), group in sorted(grouped.items()):
        texts: list[str] = []
        for record in group:
            texts.extend(t for t in record["ranking"] if t not in texts)
        index = {t: i for i, t in enumerate(texts)}
        totals, firsts, lasts = [0.0] * len(texts), [0] * len(texts), [0] * len(texts)
        for record in group:
            ranking = record["ranking"]
            for position, score in enumerate(rank_position_scores(len(ranking))):
                totals[index[ranking[position]]] += score
            firsts[index[ranking[0]]] += 1
            lasts[index[ranking[-1]]] += 1
        if len(group) < min_votes:
            dropped[key]["too_few_votes"] += 1
            continue
        choice = select_pair(VoteTally(totals, firsts, lasts, len(group)))
        if isinstance(choice, str):
            dropped[key][choice] += 1
            continue
        rows.append(_row(group[0]["prompt"], texts[choice.chosen], texts[choice.rejected], scenario_id, key, "survey",
                         choice.chosen_score, choice.rejected_score))
    return rows, dropped


def pairs_from_clinicians(records: Sequence[dict], *, criteria: Sequence[str] | None = None) -> list[dict]:
    rows = []
    for number, record in enumerate(records, start=1):
        for key in ("prompt", "scenario_id", "criterion", "chosen", "rejected"):
            if key not in record:
                raise PipelineConfigError(f"clinician record {number}: missing {key!r}")
        if criteria is None or record["criterion"] in criteria:
            rows.append(_row(record["prompt"], record["chosen"], record["rejected"], record["scenario_id"],
                             record["criterion"], "clinician", 10.0, -10.0))
    return rows


# ---------------------------------------------------------------------------
# The dataset


def _features():
    from datasets import Features, Value

    return Features(
        {
            "prompt": Value("string"),
            "chosen": Value("string"),
            "rejected": Value("string"),
            "scenario_id": Value("string"),
            "criterion": Value("string"),
            "source": Value("string"),
            "chosen_score": Value("float64"),
            "rejected_score": Value("float64"),
        }
    )


def build_preference_dataset(config: PreferenceConfig, control: RunControl | None = None) -> PreferenceResult:
    """Build (or find, if already built from the same inputs) the preference dataset; progress 1/1 when done."""
    control = run_control(control)
    started = time.monotonic()
    if not (config.labels_path or config.survey_path or config.clinician_path):
        raise PipelineConfigError("give at least one source: labels_path, survey_path or clinician_path")
    criteria = list(config.criteria) if config.criteria else None
    if criteria:
        for key in criteria:
            try:
                get_criterion(key)
            except KeyError as exc:
                raise PipelineConfigError(str(exc.args[0])) from None

    rows: list[dict] = []
    dropped: dict[str, Counter] = defaultdict(Counter)
    inputs: dict[str, dict] = {}
    judge = None
    persona_ids: list[str] = []
    scenario_splits: dict[str, str] = {}
    if config.scenarios_path:
        scenario_splits = {s.scenario_id: s.split for s in load_scenarios(config.scenarios_path)}
        inputs["scenarios"] = {"path": str(config.scenarios_path), "sha256": sha256_file(config.scenarios_path)}

    def in_split(scenario_id: str) -> bool:
        # Unknown ids (e.g. survey scenarios missing from the file) are kept; known ones must match the split.
        split = scenario_splits.get(scenario_id)
        return split is None or split == config.scenario_split

    if config.labels_path:
        if not (config.candidates_path and config.scenarios_path):
            raise PipelineConfigError("labels_path needs candidates_path and scenarios_path")
        labels = read_jsonl(config.labels_path)
        if config.personas_path:
            allowed = {p.persona_id for p in load_personas(config.personas_path, split=config.persona_split)}
            inputs["personas"] = {"path": str(config.personas_path), "sha256": sha256_file(config.personas_path)}
            labels = [r for r in labels if r["persona_id"] in allowed]
        labels = [r for r in labels if scenario_splits.get(r["scenario_id"]) == config.scenario_split]
        persona_ids = sorted({r["persona_id"] for r in labels})
        candidates = {c.scenario_id: (c.prompt, c.responses) for c in load_candidates(config.candidates_path)}
        label_rows, label_dropped, judge = pairs_from_labels(labels, candidates, criteria=criteria, min_votes=config.min_votes)
        rows += label_rows
        for key, counter in label_dropped.items():
            dropped[key].update(counter)
        inputs["labels"] = {"path": str(config.labels_path), "sha256": sha256_file(config.labels_path)}
        inputs["candidates"] = {"path": str(config.candidates_path), "sha256": sha256_file(config.candidates_path)}
    if config.survey_path:
        records = read_jsonl(config.survey_path)
        kept = [r for r in records if in_split(r.get("scenario_id", ""))]
        for r in records:
            if r not in kept:
                dropped[r.get("criterion", "?")]["survey_not_in_split"] += 1
        survey_rows, survey_dropped = pairs_from_survey(kept, criteria=criteria, min_votes=config.min_votes)
        rows += survey_rows
        for key, counter in survey_dropped.items():
            dropped[key].update(counter)
        inputs["survey"] = {"path": str(config.survey_path), "sha256": sha256_file(config.survey_path)}
    if config.clinician_path:
        records = read_jsonl(config.clinician_path)
        kept = [r for r in records if in_split(r.get("scenario_id", ""))]
        rows += pairs_from_clinicians(kept, criteria=criteria)
        inputs["clinician"] = {"path": str(config.clinician_path), "sha256": sha256_file(config.clinician_path)}

    split_names = criteria or sorted({r["criterion"] for r in rows} | set(dropped))
    by_split = {key: sorted((r for r in rows if r["criterion"] == key), key=lambda r: (r["source"], r["scenario_id"], r["chosen"]))
                for key in split_names}
    content_sha = sha256_json({"format": CARD_FORMAT, "splits": by_split})
    version = content_sha[:16]
    counts = {
        key: {"total": len(split_rows), "by_source": dict(Counter(r["source"] for r in split_rows))}
        for key, split_rows in by_split.items()
    }
    dropped_plain = {key: dict(dropped.get(key, {})) for key in split_names}

    output = Path(config.output_dir)
    card_path = output / "card.json"
    if card_path.exists():
        old = read_json(card_path)
        if old.get("version") == version:
            control.progress(1, 1)
            return PreferenceResult(str(output), version, counts, dropped_plain, True, time.monotonic() - started, old)
        if not config.overwrite:
            raise PipelineConfigError(
                f"{output} already holds preference dataset version {old.get('version')}; the inputs give {version}. "
                "Choose a new output_dir or set overwrite = true."
            )
    elif output.exists() and any(output.iterdir()) and not config.overwrite:
        raise PipelineConfigError(f"{output} exists and is not a preference dataset; choose an empty or new output_dir")

    card = {
        "format": CARD_FORMAT,
        "version": version,
        "content_sha256": content_sha,
        "created": datetime.now(timezone.utc).isoformat(),
        "criteria": split_names,
        "counts": counts,
        "sources": sorted({r["source"] for r in rows}),
        "judge": judge,
        "synthetic": bool(judge and judge.get("synthetic")),
        "personas": {"split": config.persona_split if config.personas_path else None, "count": len(persona_ids), "ids": persona_ids},
        "scenarios": {"split": config.scenario_split, "count": len({r["scenario_id"] for r in rows})},
        "dropped": dropped_plain,
        "tied": {key: d.get("tied_top", 0) + d.get("tied_bottom", 0) for key, d in dropped_plain.items()},
        "voting": {
            "rule": "position i of K scores 10*(K-1-2i)/(K-1); chosen = highest total, rejected = lowest; "
            "ties: more firsts, then fewer lasts (top) / more lasts, then fewer firsts (bottom), else dropped",
            "scores_k5": rank_position_scores(5),
            "min_votes": config.min_votes,
        },
        "inputs": inputs,
    }
    _write_dataset(output, by_split, card)
    control.progress(1, 1)
    return PreferenceResult(str(output), version, counts, dropped_plain, False, time.monotonic() - started, card)


def _write_dataset(output: Path, by_split: dict[str, list[dict]], card: dict) -> None:
    """save_to_disk into a sibling temp dir, then swap it in: readers never see half a dataset."""
    from datasets import Dataset, DatasetDict

    features = _features()
    dataset = DatasetDict(
        {key: Dataset.from_list(rows, features=features) if rows else Dataset.from_dict({c: [] for c in PREFERENCE_COLUMNS}, features=features)
         for key, rows in by_split.items()}
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    import datasets

    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # one bar per split per run is noise in logs
    try:
        dataset.save_to_disk(str(tmp))
        atomic_write_json(tmp / "card.json", card)
        old = None
        if output.exists():
            old = output.with_name(f".{output.name}.old.{os.getpid()}")
            os.rename(output, old)
        os.rename(tmp, output)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if bars:
            datasets.enable_progress_bars()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
