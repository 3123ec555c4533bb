"""Command line: ``python -m training.pipeline <stage> --config file.toml``.

Each stage reads one TOML file into its method's config dataclass (unknown or
missing keys are an error that names the key and lists the allowed ones),
runs its function with the command line's run control, and prints its result
as JSON. Examples live in ``training/pipeline/configs/``.

Ctrl-C (or SIGTERM) asks a resumable stage to stop at its next safe point;
rerunning the same command continues. A second Ctrl-C stops at once.

Stages: config (module) -> function(config, control)
  generate      CandidateGenerationConfig (generation.py) -> generate_candidates
  label         LabelingConfig (labeling.py) -> run_labeling
  preferences   PreferenceConfig (preferences.py) -> build_preference_dataset
  reward-model  RewardModelConfig (rewards.py) -> train_reward_model
  margins       MarginsConfig (rewards.py) -> compute_margins
  sft           SFTConfig (policies/sft.py) -> train_sft
  dpo           DPOConfig (policies/dpo.py) -> train_dpo
  modpo         MODPOConfig (policies/modpo.py), optional [safety] table -> train_modpo
  joint-dpo     JointDPOConfig (policies/joint.py) -> train_joint_dpo
  merge         MergeConfig (policies/merge.py) -> merge_adapters
  evaluate      EvaluationConfig (evaluation.py), models as [[models]] tables -> run_evaluation
  lora-gguf     LoraGGUFConfig (lora_gguf.py) -> convert_lora_to_gguf (an adapter for llama.cpp's server)
A config with a ``judge`` table (label, evaluate) runs with the judge it names.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import signal
import sys
from pathlib import Path
from typing import Any, NamedTuple

from .control import RunControl
from .io import PipelineConfigError, dataclass_from_dict, load_toml


class Stage(NamedTuple):
    module: str  # under training.pipeline
    config: str  # the config dataclass in that module
    function: str  # function(config, control, [judge=...]) in that module

    def load(self):
        module = importlib.import_module(f"{__package__}.{self.module}")
        return getattr(module, self.config), getattr(module, self.function)


STAGES: dict[str, Stage] = {
    "generate": Stage("generation", "CandidateGenerationConfig", "generate_candidates"),
    "label": Stage("labeling", "LabelingConfig", "run_labeling"),
    "preferences": Stage("preferences", "PreferenceConfig", "build_preference_dataset"),
    "reward-model": Stage("rewards", "RewardModelConfig", "train_reward_model"),
    "margins": Stage("rewards", "MarginsConfig", "compute_margins"),
    "sft": Stage("policies.sft", "SFTConfig", "train_sft"),
    "dpo": Stage("policies.dpo", "DPOConfig", "train_dpo"),
    "modpo": Stage("policies.modpo", "MODPOConfig", "train_modpo"),
    "joint-dpo": Stage("policies.joint", "JointDPOConfig", "train_joint_dpo"),
    "merge": Stage("policies.merge", "MergeConfig", "merge_adapters"),
    "evaluate": Stage("evaluation", "EvaluationConfig", "run_evaluation"),
    "lora-gguf": Stage("lora_gguf", "LoraGGUFConfig", "convert_lora_to_gguf"),
}


class StopFlag:
    def __init__(self):
        self.requested = False

    def __call__(self) -> bool:
        return self.requested


def _control(stop: StopFlag) -> RunControl:
    """The command line's run control: Ctrl-C asks the stage to stop; messages go to stderr."""
    return RunControl(stop_check=stop, on_log=lambda message: print(message, file=sys.stderr))


def run_stage(stage: str, config: Any, stop: StopFlag) -> Any:
    """Run a loaded stage config; a config with a judge table gets that judge, closed afterwards."""
    _, function = STAGES[stage].load()
    judge_table = getattr(config, "judge", None)
    if not isinstance(judge_table, dict):
        return function(config, _control(stop))
    from .judges import build_judge

    judge = build_judge(judge_table, "config.judge")
    try:
        return function(config, _control(stop), judge=judge)
    finally:
        judge.close()


def load_stage_config(stage: str, path: str | Path) -> Any:
    """Parse and check a stage's TOML without running it (used by tests and ``--check``)."""
    config_class, _ = STAGES[stage].load()
    config = dataclass_from_dict(config_class, load_toml(path))
    judge = getattr(config, "judge", None)
    if isinstance(judge, dict):
        from .judges import judge_config

        judge_config(judge, "config.judge")
    return config


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
            result = run_stage(args.stage, config, stop)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    except PipelineConfigError as exc:
        print(f"error: {args.config}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"stage": args.stage, "result": _jsonable(result)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
