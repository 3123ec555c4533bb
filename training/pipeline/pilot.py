"""The step pilot: judged win rate against training steps for one policy, to choose ``policy_max_steps``.

``run_step_pilot`` takes an experiment's preference dataset and SFT adapter and

1. holds out the same whole scenarios the criterion's reward model holds out
   (``rewards.split_by_scenario`` with the reward model's fraction and seed), so
   the steps are never chosen on the test set, and DPO here never trains on the
   scenarios it is judged on;
2. trains DPO on the criterion's other pairs, on top of the SFT adapter (the
   experiment's recipe), for ``max(steps)`` steps with a checkpoint every
   ``gcd(steps)`` steps, all kept (``dpo/checkpoints/checkpoint-N``);
3. turns each asked-for checkpoint into a policy folder (``policies/dpo-N``:
   the checkpoint's adapter plus the card that puts it back on the SFT-merged
   base) and evaluates SFT (0 DPO steps), every checkpoint and the base model
   on the held-out scenarios with the experiment's judge and training personas
   (``evaluation/``: ``evaluation.run_evaluation``, so the same majority rule
   and two-level bootstrap as the real evaluation);
4. reports each policy's pairwise win rate against the base model (ties count
   as non-wins, as in the study's table) with its 95 % bootstrap interval, its
   ties and decisive comparisons, McNemar's p, and mean answer length
   (``pilot.json``; ``format_pilot_table`` prints it) and a suggested step
   count (``suggest_steps``).

One run with checkpoints, not one run per step count: the learning rate follows
the recipe's schedule over ``max(steps)``, so the checkpoint at step k has had
more learning-rate mass than a k-step run would get (linear decay: about 1.5x at
k = max/2). The pilot answers "does the win rate still rise at k steps", which
is what choosing ``policy_max_steps`` needs; the run itself is the measurement.

The SFT adapter comes from the experiment, which trained it on every training
scenario (held-out ones included); the SFT row shows where DPO starts from.
"""
from __future__ import annotations

import dataclasses
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .io import atomic_write_json, read_json, read_jsonl, write_jsonl_atomic

__all__ = ["StepPilotConfig", "run_step_pilot", "suggest_steps", "format_pilot_table", "PILOT_RULES", "BASE", "SFT"]

BASE = "base"
SFT = "sft"

PILOT_RULES = {
    "held_out": "the criterion's pairs are split by whole scenarios exactly as its reward model splits them "
    "(same fraction and seed); DPO trains on the rest and every model is judged on the held-out scenarios only",
    "win_rate": "pairwise win rate against the base model = wins / decisions (ties are decisions, not wins); "
    "95% interval: the evaluation's two-level bootstrap (scenarios, and personas within them)",
    "checkpoints": "one DPO run of max(steps) steps with the recipe's learning-rate schedule, checkpoints kept; "
    "the checkpoint at step k has seen more learning-rate mass than a k-step run",
    "suggestion": "the smallest step count whose win rate on the criterion reaches the lower end of the best "
    "step count's interval; when that is the largest count tried, more steps may still help",
}


@dataclass
class StepPilotConfig:
    dataset_dir: str  # the preference DatasetDict (one split per criterion)
    criterion: str  # the policy's criterion (DPO on its pairs) and the one the steps are chosen on
    scenarios_path: str  # every scenario of the experiment; the held-out ones are taken from it
    personas_path: str
    output_dir: str
    policy: object  # policies.PolicyConfig: the experiment's recipe, base_adapter = the SFT adapter
    base_model: str  # the base policy model the win rates are against
    judge: dict
    steps: list[int] = field(default_factory=lambda: [10, 20, 40, 80])
    validation_fraction: float = 0.25  # the reward models' held-out share (reward_validation_fraction)
    split_seed: int = 0  # the reward models' seed
    criteria: list[str] | None = None  # judged criteria; None: the criterion, safety and overall
    persona_split: str = "train"  # never the test personas
    personas_per_scenario: int | None = None
    max_new_tokens: int = 256
    system_prompt: str | None = None
    seed: int = 0
    bootstrap_samples: int = 1000

    def __post_init__(self):
        steps = self.steps
        if not steps or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in steps):
            raise ValueError(f"steps must be whole numbers of at least 1 (got {steps!r})")
        if len(set(steps)) != len(steps):
            raise ValueError(f"steps must not repeat (got {steps!r})")
        self.steps = sorted(steps)
        if not 0 < self.validation_fraction < 1:
            raise ValueError("validation_fraction must be above 0 and below 1: the pilot is judged on held-out scenarios")


def _policy_name(steps: int) -> str:
    return f"dpo-{steps}"


def _criteria(config: StepPilotConfig) -> list[str]:
    if config.criteria:
        return list(dict.fromkeys(config.criteria))
    return list(dict.fromkeys([config.criterion, "safety", "overall"]))


def _export_checkpoint(checkpoint: Path, target: Path, card: dict) -> Path:
    """A checkpoint's adapter as a policy folder that ``load_policy_model`` puts back on the SFT-merged base."""
    from .policies.common import POLICY_CARD

    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        shutil.copy2(checkpoint / name, target / name)
    atomic_write_json(target / POLICY_CARD, card, sort_keys=True)
    return target


def run_step_pilot(config: StepPilotConfig) -> dict:
    """Train, evaluate and report (see the module docstring); writes ``pilot.json`` and returns it."""
    from datasets import DatasetDict

    from .evaluation import EvalGenerationSettings, EvalModel, EvaluationConfig, run_evaluation
    from .policies import DPOConfig, PolicyConfig, train_dpo
    from .policies.common import POLICY_CARD, load_preference_split
    from .rewards import split_by_scenario

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    # 1. The reward model's held-out scenarios.
    pairs = load_preference_split(config.dataset_dir, config.criterion)
    train_pairs, held_pairs = split_by_scenario(pairs, config.validation_fraction, config.split_seed)
    if held_pairs is None or "scenario_id" not in pairs.column_names:
        raise ValueError(f"{config.dataset_dir}[{config.criterion}]: too few scenarios to hold any out")
    held_out = sorted(set(held_pairs["scenario_id"]))
    records = [r for r in read_jsonl(config.scenarios_path) if r.get("scenario_id") in set(held_out)]
    if len(records) != len(held_out):
        raise ValueError(f"{config.scenarios_path} lacks some held-out scenarios of {config.dataset_dir}")
    scenarios_path = write_jsonl_atomic(out / "held_out_scenarios.jsonl", records)
    train_dir = out / "train_pairs"
    DatasetDict({config.criterion: train_pairs}).save_to_disk(str(train_dir))

    # 2. One DPO run, every checkpoint kept.
    every = math.gcd(*config.steps)
    recipe = {f.name: getattr(config.policy, f.name) for f in dataclasses.fields(PolicyConfig)}
    policy = DPOConfig(**{**recipe, "output_dir": out / "dpo", "max_steps": max(config.steps), "save_steps": every,
                          "save_total_limit": None}, dataset_dir=train_dir, criterion=config.criterion)
    result = train_dpo(policy)
    if not result.completed:
        raise RuntimeError(f"the pilot's DPO run stopped at step {result.metrics.get('global_step')}")
    card = read_json(Path(result.adapter_dir) / POLICY_CARD)

    # 3. Policies at each asked-for step, judged against the base on the held-out scenarios.
    models = []
    if policy.base_adapter is not None:
        models.append(EvalModel(name=SFT, policy=str(policy.base_adapter)))
    for steps in config.steps:
        checkpoint = Path(result.checkpoint_dir) / f"checkpoint-{steps}"
        folder = _export_checkpoint(checkpoint, out / "policies" / _policy_name(steps), card)
        models.append(EvalModel(name=_policy_name(steps), policy=str(folder)))
    models.append(EvalModel(name=BASE, model=config.base_model))  # last: every pairing with it has it as model B
    criteria = _criteria(config)
    pareto = (criteria + criteria)[:2] if len(criteria) == 1 else criteria[:2]
    evaluation = run_evaluation(EvaluationConfig(
        models=models, scenarios_path=str(scenarios_path), personas_path=config.personas_path,
        output_dir=str(out / "evaluation"), judge=config.judge, criteria=criteria, scenario_split=None,
        persona_split=config.persona_split, personas_per_scenario=config.personas_per_scenario, seed=config.seed,
        generation=EvalGenerationSettings(max_new_tokens=config.max_new_tokens, system_prompt=config.system_prompt,
                                          seed=config.seed),
        pareto=pareto, progress_bar=False, bootstrap_samples=config.bootstrap_samples,
    ))
    if evaluation.stopped or not evaluation.report_path:
        raise RuntimeError("the pilot's evaluation stopped before it finished")
    report = read_json(evaluation.report_path)

    # 4. Win rates against the base.
    pairings = {(p["model_a"], p["criterion"]): p for p in report["pairings"] if p["model_b"] == BASE}
    rows = []
    for model in models[:-1]:
        steps = 0 if model.name == SFT else int(model.name.split("-")[1])
        row = {"model": model.name, "steps": steps, "lengths": report["lengths"].get(model.name, {}), "against_base": {}}
        for criterion in criteria:
            p = pairings[(model.name, criterion)]
            row["against_base"][criterion] = {
                "win_rate": p["win_rate_a"], "interval": p.get("win_rate_a_interval"), "wins": p["wins_a"],
                "losses": p["wins_b"], "ties": p["ties"], "decisions": p["decisions"], "decisive": p["decisive"],
                "mcnemar_p": p["mcnemar_p"]}
        rows.append(row)
    pilot = {
        "criterion": config.criterion,
        "criteria": criteria,
        "steps": config.steps,
        "checkpoint_every": every,
        "held_out_scenarios": held_out,
        "train_pairs": len(train_pairs),
        "held_out_pairs": len(held_pairs),
        "personas": {"split": config.persona_split, "per_scenario": config.personas_per_scenario},
        "synthetic": report.get("synthetic"),
        "judge": report.get("judge"),
        "base_lengths": report["lengths"].get(BASE, {}),
        "policy": {k: v for k, v in policy.to_dict().items() if k in (
            "learning_rate", "batch_size", "beta", "lora_rank", "lr_scheduler_type", "warmup_steps", "max_length",
            "base_adapter", "seed")},
        "dpo_metrics": result.metrics,
        "rows": rows,
        "suggestion": suggest_steps(rows, config.criterion),
        "rules": PILOT_RULES,
        "evaluation_json": evaluation.report_path,
    }
    atomic_write_json(out / "pilot.json", pilot)
    return pilot


def suggest_steps(rows: list[dict], criterion: str) -> dict:
    """The smallest DPO step count whose win rate on ``criterion`` reaches the lower end of the best one's interval.

    ``rows`` are ``run_step_pilot``'s (the SFT row, steps 0, is not a candidate). ``more_may_help`` is set when
    the suggestion is the largest step count tried."""
    candidates = [r for r in rows if r["steps"] > 0 and r["against_base"][criterion]["win_rate"] is not None]
    if not candidates:
        return {"steps": None, "more_may_help": None, "reason": "no step count has a decided comparison"}
    best = max(candidates, key=lambda r: (r["against_base"][criterion]["win_rate"], -r["steps"]))
    interval = best["against_base"][criterion]["interval"]
    floor = interval[0] if interval else best["against_base"][criterion]["win_rate"]
    chosen = min((r for r in candidates if r["against_base"][criterion]["win_rate"] >= floor), key=lambda r: r["steps"])
    largest = max(r["steps"] for r in candidates)
    return {"steps": chosen["steps"], "best_steps": best["steps"], "threshold": floor,
            "more_may_help": chosen["steps"] == largest,
            "reason": f"{chosen['steps']} steps: the fewest whose {criterion} win rate against base reaches "
                      f"{100 * floor:.1f}%, the lower end of the best ({best['steps']} steps) interval"
                      + ("; it is the largest count tried, so more steps may still help" if chosen["steps"] == largest else "")}


def _cell(entry: dict) -> str:
    if entry["win_rate"] is None:
        return "-"
    interval = entry.get("interval")
    text = f"{100 * entry['win_rate']:.1f}"
    if interval:
        text += f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"
    return f"{text} t{entry['ties']}/{entry['decisions']}"


def format_pilot_table(pilot: dict) -> str:
    """The pilot as a text table: win rate against base (%) [95% interval], ties/decisions, mean words."""
    criteria = pilot["criteria"]
    lines = [f"Step pilot: DPO on {pilot['criterion']}, judged against the base model on {len(pilot['held_out_scenarios'])} "
             f"held-out training scenarios ({pilot['train_pairs']} training pairs; "
             f"{pilot['personas']['split']} personas)" + (" - synthetic judge" if pilot.get("synthetic") else ""),
             "Win rate against base (%) [95% bootstrap interval] t<ties>/<decisions>"]
    lines.append(f"  {'model':<10}{'steps':>6}{'words':>7}" + "".join(f"{c:>30}" for c in criteria))
    for row in pilot["rows"]:
        words = row["lengths"].get("mean_words")
        lines.append(f"  {row['model']:<10}{row['steps']:>6}{'-' if words is None else round(words, 1):>7}"
                     + "".join(f"{_cell(row['against_base'][c]):>30}" for c in criteria))
    base_words = pilot.get("base_lengths", {}).get("mean_words")
    lines.append(f"  {'base':<10}{'':>6}{'-' if base_words is None else round(base_words, 1):>7}")
    suggestion = pilot["suggestion"]
    lines.append(f"Suggested policy_max_steps: {suggestion['steps']} ({suggestion['reason']})")
    return "\n".join(lines)
