"""Command line: ``python -m training.pipeline <stage> --config file.toml``.

Each stage reads one TOML file into its config dataclass (unknown or missing
keys are an error that names the key and lists the allowed ones), runs, and
prints its result as JSON. Examples live in ``training/pipeline/configs/``.

Ctrl-C (or SIGTERM) asks a resumable stage to stop at its next safe point;
rerunning the same command continues. A second Ctrl-C stops at once.

Stages and their config:
  generate      CandidateGenerationConfig (generation.py)
  label         LabelingConfig (labeling.py)
  preferences   PreferenceConfig (preferences.py)
  reward-model  RewardModelConfig (rewards.py)
  margins       MarginsStage: dataset_dir, primary, weights, reward_model_dirs, output_dir
  sft, dpo      PolicyStage: dataset_dir, criterion, [policy] (PolicyConfig)
  modpo         MODPOStage: margin_dataset_dir, primary, weights, [policy], optional [safety] (SafetyConstraint)
  joint-dpo     JointDPOStage: dataset_dir, weights, [policy]
  merge         MergeStage: base_model, adapters, weights, output_dir, method ...
  evaluate      EvaluationConfig (evaluation.py), models as [[models]] tables
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .io import ConfigError, dataclass_from_dict, load_toml


# ---------------------------------------------------------------------------
# Stage configs for the training functions, whose arguments are more than one config object


@dataclass
class MarginsStage:
    dataset_dir: str
    primary: str
    weights: dict[str, float]
    reward_model_dirs: dict[str, str]
    output_dir: str
    batch_size: int = 32


def _policy_stage_classes():
    """Built lazily: PolicyConfig and SafetyConstraint come from the (heavy) policies package.

    make_dataclass with real type objects, so the nested config tables are typed without string annotations.
    """
    from .policies import PolicyConfig, SafetyConstraint

    policy_stage = dataclasses.make_dataclass(
        "PolicyStage", [("dataset_dir", str), ("criterion", str), ("policy", PolicyConfig)])
    modpo_stage = dataclasses.make_dataclass(
        "MODPOStage",
        [("margin_dataset_dir", str), ("primary", str), ("weights", dict[str, float]), ("policy", PolicyConfig),
         ("safety", SafetyConstraint | None, field(default=None))],
    )
    joint_stage = dataclasses.make_dataclass(
        "JointDPOStage", [("dataset_dir", str), ("weights", dict[str, float]), ("policy", PolicyConfig)])
    return policy_stage, modpo_stage, joint_stage


@dataclass
class MergeStage:
    base_model: str
    adapters: dict[str, str]
    weights: dict[str, float]
    output_dir: str
    method: str = "cat"
    svd_rank: int | None = None
    base_adapter: str | None = None
    model_cache_dir: str | None = None


# ---------------------------------------------------------------------------
# Runners: (config table, stop flag) -> result object


class StopFlag:
    def __init__(self):
        self.requested = False

    def __call__(self) -> bool:
        return self.requested


def _run_generate(table, stop):
    from .generation import CandidateGenerationConfig, generate_candidates

    return generate_candidates(dataclass_from_dict(CandidateGenerationConfig, table), should_stop=stop)


def _run_label(table, stop):
    from .labeling import LabelingConfig, run_labeling

    config = dataclass_from_dict(LabelingConfig, table)
    from .judges import build_judge

    judge = build_judge(config.judge, "config.judge")
    try:
        return run_labeling(config, judge=judge, should_stop=stop)
    finally:
        judge.close()


def _run_preferences(table, stop):
    from .preferences import PreferenceConfig, build_preference_dataset

    return build_preference_dataset(dataclass_from_dict(PreferenceConfig, table))


def _run_evaluate(table, stop):
    from .evaluation import EvaluationConfig, run_evaluation
    from .judges import build_judge

    config = dataclass_from_dict(EvaluationConfig, table)
    judge = build_judge(config.judge, "config.judge")
    try:
        return run_evaluation(config, judge=judge, should_stop=stop)
    finally:
        judge.close()


def _run_reward_model(table, stop):
    from .rewards import RewardModelConfig, train_reward_model

    return train_reward_model(dataclass_from_dict(RewardModelConfig, table))


def _run_margins(table, stop):
    from .rewards import compute_margins

    c = dataclass_from_dict(MarginsStage, table)
    return compute_margins(c.dataset_dir, c.primary, c.weights, {k: Path(v) for k, v in c.reward_model_dirs.items()},
                           c.output_dir, batch_size=c.batch_size)


def _with_stop(policy, stop):
    policy.should_stop = stop
    return policy


def _run_sft(table, stop):
    from .policies import train_sft

    PolicyStage, _, _ = _policy_stage_classes()
    c = dataclass_from_dict(PolicyStage, table)
    return train_sft(_with_stop(c.policy, stop), c.dataset_dir, c.criterion)


def _run_dpo(table, stop):
    from .policies import train_dpo

    PolicyStage, _, _ = _policy_stage_classes()
    c = dataclass_from_dict(PolicyStage, table)
    return train_dpo(_with_stop(c.policy, stop), c.dataset_dir, c.criterion)


def _run_modpo(table, stop):
    from .policies import train_modpo

    _, MODPOStage, _ = _policy_stage_classes()
    c = dataclass_from_dict(MODPOStage, table)
    return train_modpo(_with_stop(c.policy, stop), c.margin_dataset_dir, c.weights, c.primary, safety=c.safety)


def _run_joint_dpo(table, stop):
    from .policies import train_joint_dpo

    _, _, JointDPOStage = _policy_stage_classes()
    c = dataclass_from_dict(JointDPOStage, table)
    return train_joint_dpo(_with_stop(c.policy, stop), c.dataset_dir, c.weights)


def _run_merge(table, stop):
    from .policies import merge_adapters

    c = dataclass_from_dict(MergeStage, table)
    return merge_adapters(c.base_model, {k: Path(v) for k, v in c.adapters.items()}, c.weights, c.output_dir, c.method,
                          c.svd_rank, base_adapter=c.base_adapter, model_cache_dir=c.model_cache_dir)


STAGES: dict[str, Callable[[dict, StopFlag], Any]] = {
    "generate": _run_generate,
    "label": _run_label,
    "preferences": _run_preferences,
    "reward-model": _run_reward_model,
    "margins": _run_margins,
    "sft": _run_sft,
    "dpo": _run_dpo,
    "modpo": _run_modpo,
    "joint-dpo": _run_joint_dpo,
    "merge": _run_merge,
    "evaluate": _run_evaluate,
}


def load_stage_config(stage: str, path: str | Path) -> Any:
    """Parse and check a stage's TOML without running it (used by tests and ``--check``)."""
    table = load_toml(path)
    loaders = {
        "generate": lambda: _cls("generation", "CandidateGenerationConfig"),
        "label": lambda: _cls("labeling", "LabelingConfig"),
        "preferences": lambda: _cls("preferences", "PreferenceConfig"),
        "evaluate": lambda: _cls("evaluation", "EvaluationConfig"),
        "reward-model": lambda: _cls("rewards", "RewardModelConfig"),
        "margins": lambda: MarginsStage,
        "sft": lambda: _policy_stage_classes()[0],
        "dpo": lambda: _policy_stage_classes()[0],
        "modpo": lambda: _policy_stage_classes()[1],
        "joint-dpo": lambda: _policy_stage_classes()[2],
        "merge": lambda: MergeStage,
    }
    config = dataclass_from_dict(loaders[stage](), table)
    judge = getattr(config, "judge", None)
    if isinstance(judge, dict):
        from .judges import judge_config

        judge_config(judge, "config.judge")
    return config


def _cls(module: str, name: str):
    import importlib

    return getattr(importlib.import_module(f"{__package__}.{module}"), name)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value) if not callable(getattr(value, f.name))}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _install_stop_handlers(stop: StopFlag) -> dict:
    """Route SIGINT/SIGTERM to the stop flag; returns the previous handlers to restore."""

    def handler(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True
        print("stopping at the next safe point (rerun the same command to resume; Ctrl-C again to abort)", file=sys.stderr)

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread: no handlers, the stage still runs
            pass
    return previous


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.pipeline", description="Run one stage of Attune's ML pipeline.")
    parser.add_argument("stage", choices=sorted(STAGES), help="the stage to run")
    parser.add_argument("--config", required=True, help="the stage's TOML config file")
    parser.add_argument("--check", action="store_true", help="only load and check the config, then exit")
    args = parser.parse_args(argv)
    try:
        config = load_stage_config(args.stage, args.config)
        if args.check:
            print(json.dumps({"stage": args.stage, "config": _jsonable(config)}, indent=2))
            return 0
        stop = StopFlag()
        previous = _install_stop_handlers(stop)
        try:
            result = STAGES[args.stage](load_toml(args.config), stop)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    except ConfigError as exc:
        print(f"error: {args.config}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"stage": args.stage, "result": _jsonable(result)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
