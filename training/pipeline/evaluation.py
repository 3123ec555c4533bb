"""Stage 7: head-to-head evaluation of models by persona votes, as in the study.

1. Answers. Every model (a base ref +/- adapter, a trained policy folder, or a
   file of ready answers) answers the test scenarios once (greedy by default),
   saved under ``answers/<model>.jsonl`` (resumable).
2. Votes. For every pair of models and every scenario, each test persona sees
   the two answers (order shuffled per persona, seeded) and the judge ranks
   them on every criterion; the persona votes for the one it ranks first. The
   majority of valid votes decides the scenario: a win, a loss or a tie (equal
   votes). A scenario with no valid vote is not a decision. Every decision is
   written to ``judge_decisions.jsonl`` (one line per scenario, pair and
   criterion, with each persona's vote, both answers and the judge), so the
   annotation app can set judges beside clinicians.
3. Numbers (``evaluation.json``, rules repeated in it):
   - pairwise win rate of A against B = A's wins / all decisions of the pairing
     (ties count as decisions that A did not win, as in the study's table);
   - a model's headline = the mean of its pairwise win rates over all its
     opponents ("average pairwise win rate"); the pooled rate and a
     ties-as-half variant are reported too;
   - McNemar per pairing and criterion: each scenario is a paired binary
     outcome (A preferred?, B preferred?). The 2x2 table is
     [[both, A only], [B only, neither]] = [[0, A wins], [B wins, ties]]; the
     exact test on the discordant cells is a two-sided binomial test of A's
     wins among the decided scenarios (p = 1 when there are none);
   - optional reward-model scores (mean standardised reward per model and
     criterion) via ``rewards.RewardScorer``.
   - uncertainty (``evaluation_statistics``, from the stored per-persona votes
     alone, so ``recompute_statistics(output_dir)`` redoes it from the run
     directory): a 95 % two-level bootstrap interval (scenarios, and personas
     within scenarios; ``stats``) for every average pairwise win rate and
     pairwise rate, tie rates and the number of decisive (non-tie)
     comparisons, Holm-adjusted McNemar p-values over every pairing and
     criterion of the run, mean answer length per model, a length-controlled
     win rate with its interval, and the study's shape checks
     (``shape_checks``).
4. Plots: ``pareto.{png,svg}`` (headline win rate on two criteria with the
   bootstrap intervals as error bars, the non-dominated models joined) and
   ``win_rates.{png,svg}`` (the table).

Everything a synthetic judge produced says so (``synthetic`` in the report,
in each decision, and in plot titles).
"""
from __future__ import annotations

import math
import random
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path

from .control import RunControl, run_control
from .criteria import get_criterion
from .generation import SamplingSettings, generate_answers
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
    read_jsonl,
    read_jsonl_for_resume,
)
from .judges import Judge, JudgeRequest, build_judge, check_same_judge
from .shape_checks import SHAPE_RULES, ShapeRoles, run_shape_checks
from .stats import bootstrap_evaluation, ends_a_sentence, holm_adjust, mcnemar_exact_p, word_count

__all__ = [
    "EvalModel",
    "EvalGenerationSettings",
    "EvaluationConfig",
    "EvaluationResult",
    "run_evaluation",
    "answers_file_name",
    "summarise_decisions",
    "evaluation_statistics",
    "recompute_statistics",
    "answer_lengths",
    "mcnemar_p_value",
    "plot_pareto",
    "plot_win_rate_table",
    "RULES",
]

DEFAULT_EVAL_CRITERIA = ["empathy", "active_listening", "self_motivated_change", "trust_rapport", "patient_autonomy", "safety", "overall"]

RULES = {
    "majority": "per scenario, pair and criterion the answer with more valid persona votes wins; equal votes are a tie; "
    "no valid vote is no decision",
    "win_rate": "wins / decisions (ties are decisions, not wins), as in the study's table",
    "headline": "average_pairwise_win_rate: mean over opponents of the pairwise win rate",
    "win_rate_ties_half": "(wins + ties/2) / decisions, for reference",
    "mcnemar": "exact McNemar on [[0, wins_a], [wins_b, ties]]: two-sided binomial test of wins_a among wins_a + wins_b; "
    "p = 1 when no scenario was decided either way",
    "holm": "mcnemar_p_holm: Holm's step-down correction over every pairing and criterion of this evaluation (one family)",
    "interval": "95% interval of a two-level bootstrap: resample the test scenarios, and within each drawn "
    "scenario its personas, with replacement; the majority of the drawn personas' valid votes decides each scenario; "
    "the 2.5/97.5 percentiles are shifted by the replicates' mean offset from the observed rate (redrawing personas "
    "breaks tied majorities, which lifts the replicates of a model with many ties; the shift removes that and keeps the "
    "spread); seeded (bootstrap.seed), so a rerun gives the same interval",
    "tie_rate": "ties / decisions; decisive = wins + losses (decisions that were not ties)",
    "length_controlled_win_rate": "per criterion, logit P(A preferred) = alpha_pair + gamma * tanh(word difference / sd) "
    "fitted on every decided scenario (ties as half, small ridge penalty); the rate is sigmoid(alpha_pair), the preference "
    "at equal length, averaged over opponents like the headline (compare with win_rate_ties_half)",
}


@dataclass
class EvalModel:
    name: str
    model: str | None = None  # base model ref (packaged name or HF dir)
    adapter: str | None = None  # PEFT adapter on top of `model`
    policy: str | None = None  # a trained policy folder (policies.load_policy_model handles SFT-merged bases)
    answers_path: str | None = None  # ready answers in the candidates format (first response per scenario)
    # An OpenAI-compatible server that serves this model (server_generation.ServerConfig settings; a LoRA
    # policy by its adapter name): its answers come from there, and model/policy only say what it is.
    server: dict | None = None

    def __post_init__(self):
        given = [x for x in (self.model, self.policy, self.answers_path) if x]
        if len(given) != 1:
            raise ValueError(f"model {self.name!r}: give exactly one of model, policy, answers_path")
        if self.adapter and not self.model:
            raise ValueError(f"model {self.name!r}: adapter needs model")
        if self.server is not None and self.answers_path:
            raise ValueError(f"model {self.name!r}: ready answers need no server")


@dataclass
class EvalGenerationSettings(SamplingSettings):
    """How every model answers: the sampling settings both backends take (greedy by default; the system prompt
    should be what the policies were trained with, PolicyConfig.system_prompt, None by default), and where the
    local backend runs."""

    batch_size: int = 8
    device: str | None = None
    dtype: str | None = None


@dataclass
class EvaluationConfig:
    models: list[EvalModel]
    scenarios_path: str
    personas_path: str
    output_dir: str
    judge: dict
    criteria: list[str] = field(default_factory=lambda: list(DEFAULT_EVAL_CRITERIA))
    scenario_split: str | None = "test"
    persona_split: str | None = "test"
    personas_per_scenario: int | None = None  # None: every persona of the split (the study: 50)
    limit: int | None = None  # first N scenarios, for smoke runs
    seed: int = 0
    generation: EvalGenerationSettings = field(default_factory=EvalGenerationSettings)
    reward_models: dict[str, str] = field(default_factory=dict)  # criterion -> reward model dir
    pareto: list[str] = field(default_factory=lambda: ["empathy", "safety"])
    chunk_size: int = 16  # (scenario, pair) units per judge batch
    progress_bar: bool = True
    bootstrap_samples: int = 1000  # replicates behind every interval (0: no intervals)

    def __post_init__(self):
        names = [m.name for m in self.models]
        if len(names) < 2:
            raise ValueError("evaluation needs at least two models")
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique: {names}")
        if len(self.pareto) != 2:
            raise ValueError("pareto names two criteria (x, y)")


@dataclass
class EvaluationResult:
    output_dir: str
    report_path: str | None
    decisions_path: str
    plots: list[str]
    table: dict
    stopped: bool
    seconds: float
    synthetic: bool


# ---------------------------------------------------------------------------
# Statistics


def mcnemar_p_value(wins_a: int, wins_b: int, ties: int) -> float:
    """Exact McNemar on [[0, wins_a], [wins_b, ties]]: ties are concordant and do not enter the test."""
    return mcnemar_exact_p(wins_a, wins_b)


def summarise_decisions(decisions: Sequence[dict], models: Sequence[str], criteria: Sequence[str]) -> dict:
    """Decision lines -> {"table": model -> criterion -> numbers, "pairings": [...]} (rules in ``RULES``)."""
    counts: dict[tuple[str, str, str], dict[str, int]] = {}
    for a, b in combinations(models, 2):
        for c in criteria:
            counts[(a, b, c)] = {"wins_a": 0, "wins_b": 0, "ties": 0, "no_decision": 0}
    for d in decisions:
        key = (d["model_a"], d["model_b"], d["criterion"])
        if key not in counts:
            continue
        slot = {"a": "wins_a", "b": "wins_b", "tie": "ties"}.get(d["majority"], "no_decision")
        counts[key][slot] += 1

    pairings = []
    per_model: dict[str, dict[str, dict]] = {m: {c: {"wins": 0, "losses": 0, "ties": 0, "rates": [], "half_rates": []}
                                                  for c in criteria} for m in models}
    for (a, b, c), n in counts.items():
        decided = n["wins_a"] + n["wins_b"] + n["ties"]
        p = mcnemar_p_value(n["wins_a"], n["wins_b"], n["ties"])
        rate_a = n["wins_a"] / decided if decided else None
        rate_b = n["wins_b"] / decided if decided else None
        pairings.append({"model_a": a, "model_b": b, "criterion": c, **n, "decisions": decided,
                         "win_rate_a": rate_a, "win_rate_b": rate_b, "mcnemar_p": p})
        for me, wins, losses in ((a, n["wins_a"], n["wins_b"]), (b, n["wins_b"], n["wins_a"])):
            slot = per_model[me][c]
            slot["wins"] += wins
            slot["losses"] += losses
            slot["ties"] += n["ties"]
            if decided:
                slot["rates"].append(wins / decided)
                slot["half_rates"].append((wins + n["ties"] / 2) / decided)
    table: dict[str, dict[str, dict]] = {}
    for m in models:
        table[m] = {}
        for c in criteria:
            s = per_model[m][c]
            decided = s["wins"] + s["losses"] + s["ties"]
            table[m][c] = {
                "average_pairwise_win_rate": sum(s["rates"]) / len(s["rates"]) if s["rates"] else None,
                "win_rate": s["wins"] / decided if decided else None,
                "win_rate_ties_half": sum(s["half_rates"]) / len(s["half_rates"]) if s["half_rates"] else None,
                "wins": s["wins"],
                "losses": s["losses"],
                "ties": s["ties"],
                "decisions": decided,
                "opponents": len(s["rates"]),
            }
    return {"table": table, "pairings": pairings}


def answer_lengths(decisions: Sequence[dict], models: Sequence[str]) -> dict:
    """Mean answer length per model (words and characters), over the distinct scenarios it answered."""
    texts: dict[str, dict[str, str]] = {m: {} for m in models}
    for d in decisions:
        for side in ("a", "b"):
            model, text = d.get(f"model_{side}"), d.get(f"response_{side}")
            if model in texts and isinstance(text, str):
                texts[model][d["scenario_id"]] = text
    out = {}
    for m in models:
        answers = list(texts[m].values())
        out[m] = {"answers": len(answers),
                  "mean_words": sum(word_count(t) for t in answers) / len(answers) if answers else None,
                  "mean_characters": sum(len(t) for t in answers) / len(answers) if answers else None,
                  # Answers that stop mid-sentence (cut by max_new_tokens, or a policy that learned to stop early).
                  "unfinished_share": sum(1 for t in answers if not ends_a_sentence(t)) / len(answers) if answers else None}
    return out


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def evaluation_statistics(decisions: Sequence[dict], models: Sequence[str], criteria: Sequence[str], *,
                          samples: int = 1000, seed: int = 0, roles: ShapeRoles | None = None) -> dict:
    """Counts, rates, intervals, Holm-adjusted McNemar, lengths and shape checks from the decision lines.

    The rules are in ``RULES`` (and ``SHAPE_RULES``); every number comes from the stored votes, so the same
    decisions, samples and seed give the same result."""
    models, criteria = list(models), list(criteria)
    latest: dict[tuple, dict] = {}
    for d in decisions:  # a pair redone after an interruption: its latest line counts, once
        latest[(d["scenario_id"], d["model_a"], d["model_b"], d["criterion"])] = d
    decisions = list(latest.values())
    summary = summarise_decisions(decisions, models, criteria)
    boot = bootstrap_evaluation(decisions, models, criteria, samples=samples, seed=seed)
    for m in models:
        for c in criteria:
            row = summary["table"][m][c]
            mi, ci = boot.model_index(m), boot.criterion_index(c)
            row["interval"] = boot.interval_at("apwr", mi, ci) if samples else None
            row["tie_rate"] = row["ties"] / row["decisions"] if row["decisions"] else None
            row["decisive"] = row["wins"] + row["losses"]
            if "lc" in boot.observed:
                row["length_controlled_win_rate"] = _finite(boot.observed["lc"][mi, ci])
                row["length_controlled_interval"] = boot.interval_at("lc", mi, ci) if samples else None
    pair_index = {pair: i for i, pair in enumerate(boot.table.pairs)}
    adjusted = holm_adjust([p["mcnemar_p"] for p in summary["pairings"]])
    for pairing, p_holm in zip(summary["pairings"], adjusted):
        pi, ci = pair_index[(pairing["model_a"], pairing["model_b"])], boot.criterion_index(pairing["criterion"])
        pairing["mcnemar_p_holm"] = p_holm
        pairing["tie_rate"] = pairing["ties"] / pairing["decisions"] if pairing["decisions"] else None
        pairing["decisive"] = pairing["wins_a"] + pairing["wins_b"]
        pairing["win_rate_a_interval"] = boot.interval_at("pair_rate_a", pi, ci) if samples else None
        if "pair_lc_a" in boot.observed:
            pairing["length_controlled_win_rate_a"] = _finite(boot.observed["pair_lc_a"][pi, ci])
    return {
        "table": summary["table"],
        "pairings": summary["pairings"],
        "lengths": answer_lengths(decisions, models),
        "bootstrap": {"samples": samples, "seed": seed, "level": 0.95, "method": "two-level bootstrap, recentred percentile interval",
                      "scenarios": len(boot.table.scenarios)},
        "multiple_comparisons": {"method": "holm", "family_size": len(summary["pairings"]),
                                 "family": "every pairing and criterion of this evaluation"},
        "shape_checks": run_shape_checks(boot, roles) if samples else [],
        "shape_rules": SHAPE_RULES,
    }


def recompute_statistics(output_dir: str | Path, *, samples: int | None = None, seed: int | None = None) -> dict:
    """Redo every number of ``evaluation.json`` from ``judge_decisions.jsonl`` in the same folder (rewrites the
    report and the plots). The latest line for a (scenario, pair, criterion) counts, as in a resumed run."""
    out_dir = Path(output_dir)
    from .io import read_json

    report = read_json(out_dir / "evaluation.json")
    previous = report.get("bootstrap", {})
    samples = previous.get("samples", 1000) if samples is None else samples
    seed = previous.get("seed", 0) if seed is None else seed
    names = [m["name"] for m in report["models"]]
    numbers = evaluation_statistics(read_jsonl(out_dir / "judge_decisions.jsonl"), names, report["criteria"],
                                    samples=samples, seed=seed)
    report.update(numbers)
    report["rules"] = RULES
    pareto = report.get("pareto") or [c for c in ("empathy", "safety") if c in report["criteria"]] or report["criteria"][:2]
    if len(pareto) == 2:
        synthetic = report.get("synthetic", False)
        plots = plot_pareto(report["table"], pareto[0], pareto[1], out_dir / "pareto", synthetic=synthetic)
        plots += plot_win_rate_table(report["table"], report["criteria"], out_dir / "win_rates", synthetic=synthetic)
        report["plots"] = [p.name for p in plots]
    atomic_write_json(out_dir / "evaluation.json", report)
    return report


# ---------------------------------------------------------------------------
# Plots


def _headline(table: dict, model: str, criterion: str) -> float:
    value = table[model].get(criterion, {}).get("average_pairwise_win_rate")
    return float("nan") if value is None else 100.0 * value


def plot_pareto(table: dict, x: str, y: str, out_stem: Path, *, synthetic: bool) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    models = list(table)
    points = [(m, _headline(table, m, x), _headline(table, m, y)) for m in models]
    valid = [(m, px, py) for m, px, py in points if px == px and py == py]
    frontier = [p for p in valid if not any((q[1] >= p[1] and q[2] >= p[2]) and (q[1] > p[1] or q[2] > p[2]) for q in valid)]
    frontier.sort(key=lambda p: p[1])
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.scatter([p[1] for p in valid], [p[2] for p in valid], color="#4c72b0", zorder=3)
    # The 95% bootstrap intervals (when the table has them) as segments from their ends on both axes. Not
    # as error bars around the point: an interval need not be symmetric about its point.
    for m, px, py in valid:
        xi, yi = table[m][x].get("interval"), table[m][y].get("interval")
        if xi:
            ax.plot([100 * xi[0], 100 * xi[1]], [py, py], color="#4c72b0", alpha=0.5, linewidth=1, zorder=2)
        if yi:
            ax.plot([px, px], [100 * yi[0], 100 * yi[1]], color="#4c72b0", alpha=0.5, linewidth=1, zorder=2)
    for m, px, py in valid:
        ax.annotate(m, (px, py), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if len(frontier) > 1:
        ax.plot([p[1] for p in frontier], [p[2] for p in frontier], color="#dd8452", linestyle="--", zorder=2, label="Pareto front")
        ax.legend(loc="lower left", fontsize=8)
    ax.set_xlabel(f"{get_criterion(x).name} win rate (%)")
    ax.set_ylabel(f"{get_criterion(y).name} win rate (%)")
    ax.set_xlim(-5, 105)
    ax.set_ylim(-5, 105)
    ax.grid(alpha=0.3)
    has_intervals = any(table[m][c].get("interval") for m in models for c in (x, y) if c in table[m])
    ax.set_title("Average pairwise win rate" + (" (95% bootstrap intervals)" if has_intervals else "")
                 + (" - SYNTHETIC judge" if synthetic else ""), fontsize=10)
    return _save_figure(fig, out_stem)


def _save_figure(fig, out_stem: Path) -> list[Path]:
    """Write a plot as PNG and SVG beside each other and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    paths = []
    for suffix in (".png", ".svg"):
        path = out_stem.with_suffix(suffix)
        fig.savefig(path, dpi=120)
        paths.append(path)
    plt.close(fig)
    return paths


def plot_win_rate_table(table: dict, criteria: Sequence[str], out_stem: Path, *, synthetic: bool) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    models = list(table)
    values = np.array([[_headline(table, m, c) for c in criteria] for m in models], dtype=float)
    fig, ax = plt.subplots(figsize=(1.3 * len(criteria) + 2.5, 0.45 * len(models) + 1.6))
    ax.imshow(np.nan_to_num(values, nan=50.0), cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(criteria)), [get_criterion(c).name for c in criteria], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(models)), models, fontsize=8)
    for i in range(len(models)):
        for j in range(len(criteria)):
            text = "-" if values[i, j] != values[i, j] else f"{values[i, j]:.1f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
    ax.set_title("Average pairwise win rate (%)" + (" - SYNTHETIC judge" if synthetic else ""), fontsize=10)
    return _save_figure(fig, out_stem)


# ---------------------------------------------------------------------------
# The stage


def answers_file_name(name: str) -> str:
    """The file stem a model's answers get under ``answers/`` (names are sanitised for the file system)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


_file_name = answers_file_name  # older callers


def _answers_for(model: EvalModel, scenarios: list[Scenario], settings: EvalGenerationSettings, out_dir: Path,
                 control: RunControl) -> dict[str, str]:
    if model.answers_path:
        ready = {c.scenario_id: c.responses[0] for c in load_candidates(model.answers_path)}
        missing = [s.scenario_id for s in scenarios if s.scenario_id not in ready]
        if missing:
            raise PipelineConfigError(f"{model.answers_path} has no answer for scenarios {missing[:5]}{'...' if len(missing) > 5 else ''}")
        return {s.scenario_id: ready[s.scenario_id] for s in scenarios}

    out_path = out_dir / "answers" / f"{_file_name(model.name)}.jsonl"
    if model.server is not None:
        from .server_generation import generate_answers_with_server

        answers = generate_answers_with_server(model.server, scenarios, n=1, sampling=settings, output_path=out_path,
                                               control=control)
        return {sid: texts[0] for sid, texts in answers.items()}
    loaded = None
    label = model.model
    if model.policy:
        # Only load when something is left to generate; generate_answers skips loading on a complete file.
        existing = {r["scenario_id"] for r in read_jsonl(out_path)} if out_path.exists() else set()
        if any(s.scenario_id not in existing for s in scenarios):
            from .policies import load_policy_model

            from .generation import _resolve_dtype

            loaded = load_policy_model(model.policy, dtype=_resolve_dtype(settings.dtype))
            loaded[0].to(_device(settings.device)).eval()
        else:
            loaded = ("unused", None)
        label = f"policy:{model.policy}"
    answers = generate_answers(label, model.adapter, scenarios, n=1, sampling=settings, batch_size=settings.batch_size,
                               device=settings.device, dtype=settings.dtype, output_path=out_path, control=control,
                               loaded=loaded)
    return {sid: texts[0] for sid, texts in answers.items()}


def _device(device: str | None) -> str:
    from .generation import _resolve_device

    return _resolve_device(device)


def run_evaluation(config: EvaluationConfig, control: RunControl | None = None, *,
                   judge: Judge | None = None) -> EvaluationResult:
    control = run_control(control)
    started = time.monotonic()
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        criteria = [get_criterion(c) for c in config.criteria]
        for key in config.pareto:
            get_criterion(key)
    except KeyError as exc:
        raise PipelineConfigError(str(exc.args[0])) from None
    keys = [c.key for c in criteria]
    judge = judge or build_judge(config.judge)
    judge_info = judge.info()
    synthetic = bool(judge_info.get("synthetic"))

    scenarios = load_scenarios(config.scenarios_path, split=config.scenario_split)
    if config.limit is not None:
        scenarios = scenarios[: config.limit]
    personas = load_personas(config.personas_path, split=config.persona_split)
    if not scenarios or not personas:
        raise PipelineConfigError(f"no scenarios in split {config.scenario_split!r} or no personas in split {config.persona_split!r}")
    names = [m.name for m in config.models]
    pairs = list(combinations(names, 2))
    units = [(s, a, b) for s in scenarios for a, b in pairs]
    total = len(config.models) * len(scenarios) + len(units)
    done_work = 0

    def report_progress(extra: int = 0):
        control.progress(done_work + extra, total)

    # 1. Answers
    answers: dict[str, dict[str, str]] = {}
    for model in config.models:
        if control.should_stop():
            return _stopped(out_dir, started, synthetic)
        # The answers' own progress counts within this model's share of the work.
        answers_control = replace(control, on_progress=lambda done, _total, _loss: report_progress(done))
        answers[model.name] = _answers_for(model, scenarios, config.generation, out_dir, answers_control)
        if len(answers[model.name]) < len(scenarios):
            return _stopped(out_dir, started, synthetic)
        done_work += len(scenarios)
        report_progress()

    # 2. Votes
    decisions_path = out_dir / "judge_decisions.jsonl"
    existing = read_jsonl_for_resume(decisions_path)
    check_same_judge(existing, judge_info, decisions_path, what="decisions", instead="a new output_dir")
    current = {(s.scenario_id, a, b): (answers[a][s.scenario_id], answers[b][s.scenario_id]) for s, a, b in units}
    done_units = set()
    by_unit: dict[tuple, set] = defaultdict(set)
    for record in existing:
        unit = (record["scenario_id"], record["model_a"], record["model_b"])
        # A decision made on different answers (a model was regenerated) does not count.
        if current.get(unit) == (record.get("response_a"), record.get("response_b")):
            by_unit[unit].add(record["criterion"])
    done_units = {u for u, have in by_unit.items() if set(keys) <= have}
    todo = [u for u in units if (u[0].scenario_id, u[1], u[2]) not in done_units]
    done_work += len(units) - len(todo)
    report_progress()

    from tqdm.auto import tqdm

    bar = tqdm(total=len(units), initial=len(units) - len(todo), disable=not config.progress_bar, desc="evaluate", unit="pair")
    stopped = False
    try:
        for start in range(0, len(todo), config.chunk_size):
            if control.should_stop():
                stopped = True
                break
            chunk = todo[start : start + config.chunk_size]
            requests, meta = [], []
            for scenario, a, b in chunk:
                texts = (answers[a][scenario.scenario_id], answers[b][scenario.scenario_id])
                for persona in personas_for_scenario(scenario.scenario_id, personas, config.personas_per_scenario,
                                                     config.seed, purpose="eval-personas"):
                    flip = random.Random(derive_seed("eval-order", config.seed, persona.persona_id, scenario.scenario_id, a, b)).random() < 0.5
                    shown = (texts[1], texts[0]) if flip else texts
                    requests.append(JudgeRequest(persona, scenario, shown, tuple(criteria)))
                    meta.append((scenario.scenario_id, a, b, persona.persona_id, flip))
            results = judge.rank_many(requests)
            grouped: dict[tuple, list] = defaultdict(list)
            for (sid, a, b, pid, flip), result in zip(meta, results):
                grouped[(sid, a, b)].append((pid, flip, result))
            lines = []
            for scenario, a, b in chunk:
                votes_here = grouped[(scenario.scenario_id, a, b)]
                if any(r.retryable for _, _, r in votes_here):
                    continue  # the judge backend was unavailable for someone: decide this pair in a later run
                texts = (answers[a][scenario.scenario_id], answers[b][scenario.scenario_id])
                for key in keys:
                    votes, invalid = {}, 0
                    for pid, flip, result in votes_here:
                        if not result.ok:
                            invalid += 1
                            continue
                        first_shown = result.rankings[key][0]
                        votes[pid] = ("b" if first_shown == 0 else "a") if flip else ("a" if first_shown == 0 else "b")
                    votes_a = sum(1 for v in votes.values() if v == "a")
                    votes_b = len(votes) - votes_a
                    majority = "none" if not votes else ("a" if votes_a > votes_b else "b" if votes_b > votes_a else "tie")
                    lines.append({
                        "scenario_id": scenario.scenario_id,
                        "prompt": scenario.prompt,
                        "criterion": key,
                        "model_a": a,
                        "model_b": b,
                        "response_a": texts[0],
                        "response_b": texts[1],
                        "votes": votes,
                        "votes_a": votes_a,
                        "votes_b": votes_b,
                        "invalid": invalid,
                        "majority": majority,
                        "winner": {"a": a, "b": b}.get(majority),
                        "judge": judge_info,
                        "synthetic": synthetic,
                    })
            append_jsonl(decisions_path, lines)
            bar.update(len(chunk))
            done_work += len(chunk)
            report_progress()
    finally:
        bar.close()
    if stopped:
        return _stopped(out_dir, started, synthetic)

    # 3. Numbers, plots, report
    decisions = [d for d in read_jsonl(decisions_path)
                 if current.get((d["scenario_id"], d["model_a"], d["model_b"])) == (d.get("response_a"), d.get("response_b"))]
    summary = evaluation_statistics(decisions, names, keys, samples=config.bootstrap_samples,
                                    seed=derive_seed("eval-bootstrap", config.seed))
    reward_scores = _reward_scores(config, scenarios, answers) if config.reward_models else {}
    plots = plot_pareto(summary["table"], config.pareto[0], config.pareto[1], out_dir / "pareto", synthetic=synthetic)
    plots += plot_win_rate_table(summary["table"], keys, out_dir / "win_rates", synthetic=synthetic)
    report = {
        "created": datetime.now(timezone.utc).isoformat(),
        "synthetic": synthetic,
        "judge": judge_info,
        "models": [{k: v for k, v in vars(m).items() if v is not None} for m in config.models],
        "criteria": keys,
        "scenarios": {"split": config.scenario_split, "count": len(scenarios)},
        "personas": {"split": config.persona_split, "count": len(personas), "per_scenario": config.personas_per_scenario},
        "generation": vars(config.generation),
        "rules": RULES,
        "pareto": list(config.pareto),
        "table": summary["table"],
        "pairings": summary["pairings"],
        "lengths": summary["lengths"],
        "bootstrap": summary["bootstrap"],
        "multiple_comparisons": summary["multiple_comparisons"],
        "shape_checks": summary["shape_checks"],
        "shape_rules": summary["shape_rules"],
        "reward_scores": reward_scores,
        "plots": [p.name for p in plots],
    }
    report_path = atomic_write_json(out_dir / "evaluation.json", report)
    return EvaluationResult(str(out_dir), str(report_path), str(decisions_path), [str(p) for p in plots], summary["table"],
                            False, time.monotonic() - started, synthetic)


def _stopped(out_dir: Path, started: float, synthetic: bool) -> EvaluationResult:
    return EvaluationResult(str(out_dir), None, str(out_dir / "judge_decisions.jsonl"), [], {}, True, time.monotonic() - started, synthetic)


def _reward_scores(config: EvaluationConfig, scenarios: list[Scenario], answers: dict[str, dict[str, str]]) -> dict:
    from .rewards import RewardScorer

    prompts = [s.prompt for s in scenarios]
    scores: dict[str, dict[str, float]] = {name: {} for name in answers}
    for criterion, model_dir in config.reward_models.items():
        scorer = RewardScorer.load(model_dir)
        for name, by_scenario in answers.items():
            values = scorer.score(prompts, [by_scenario[s.scenario_id] for s in scenarios], standardised=True)
            values = [float(v) for v in values]
            scores[name][criterion] = sum(values) / len(values)
    return scores
