"""Multi-GPU training goes through `accelerate launch`: the command it builds,
the stage config it writes, and one real launched run on a tiny model."""
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from training.launch import build_launch_command, write_stage_toml

ROOT = Path(__file__).resolve().parents[2]


def test_launch_command_for_several_gpus(tmp_path):
    command = build_launch_command(stage="modpo", stage_config=tmp_path / "modpo.toml",
                                   accelerate_config=Path("/etc/attune/accelerate-4gpu.yaml"), num_processes=4)
    assert command == [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", "/etc/attune/accelerate-4gpu.yaml",
        "--num_processes", "4", "--multi_gpu", "-m", "training.pipeline", "modpo", "--config", str(tmp_path / "modpo.toml"),
    ]
    single = build_launch_command(stage="sft", stage_config=tmp_path / "s.toml", accelerate_config=None, num_processes=1)
    assert "--multi_gpu" not in single and "--config_file" not in single
    with pytest.raises(ValueError):
        build_launch_command(stage="sft", stage_config=tmp_path / "s.toml", accelerate_config=None, num_processes=0)


def _recipe(tmp_path):
    return dict(output_dir=tmp_path / "out", base_model=str(tmp_path / "base"), lora_rank=4, max_steps=2,
                save_steps=1, batch_size=2, max_length=64)


@pytest.mark.parametrize(
    "stage,config_class,extra",
    [
        ("sft", "SFTConfig", {"dataset_dir": "d", "criterion": "empathy"}),
        ("dpo", "DPOConfig", {"dataset_dir": "d", "criterion": "safety"}),
        ("joint-dpo", "JointDPOConfig", {"dataset_dir": "d", "weights": {"empathy": 0.5, "safety": 0.5}}),
        ("modpo", "MODPOConfig", {"margin_dataset_dir": "m", "primary": "empathy",
                                  "weights": {"empathy": 0.5, "safety": 0.5}}),
    ],
)
def test_stage_config_is_accepted_by_the_pipeline_cli(tmp_path, stage, config_class, extra):
    from training.pipeline import policies

    if stage == "modpo":  # None settings (eval_dataset_dir, max_lambda) must not reach the TOML
        extra = {**extra, "safety": policies.SafetyConstraint(floor=0.0, eta=1.0, every_n_steps=2)}
    config = getattr(policies, config_class)(**_recipe(tmp_path), **extra)
    path = write_stage_toml(tmp_path / f"{stage}.toml", config.to_dict())
    assert tomllib.loads(path.read_text())["lora_rank"] == 4
    checked = subprocess.run([sys.executable, "-m", "training.pipeline", stage, "--config", str(path), "--check"],
                             cwd=ROOT, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["stage"] == stage


@pytest.mark.django_db
def test_a_policy_stage_runs_through_accelerate_launch(tmp_path, settings):
    from datasets import Dataset, DatasetDict

    from training.pipeline.models import build_tiny_causal_lm
    from training.stages.policies import _train_policy

    settings.ATTUNE_ACCELERATE_NUM_PROCESSES = 1
    base = build_tiny_causal_lm(tmp_path / "base", seed=0)
    rows = [{"prompt": f"I feel low today, number {i}.", "chosen": "That sounds hard; I'm here with you.",
             "rejected": "Just cheer up.", "scenario_id": f"s{i}", "criterion": "empathy", "source": "judge:test",
             "chosen_score": 1.0, "rejected_score": -1.0} for i in range(4)]
    DatasetDict({"empathy": Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dataset"))

    from training.pipeline.policies import SFTConfig

    config = SFTConfig(output_dir=tmp_path / "policy", base_model=str(base), lora_rank=4, max_steps=2, save_steps=1,
                       batch_size=2, max_length=64, dataset_dir=tmp_path / "dataset", criterion="empathy")

    class Run:
        lines = []

        def log(self, line):
            self.lines.append(line)

        def should_stop(self):
            return False

    class FakeJob:
        def work_dir(self):
            return tmp_path

    def not_in_process(config, control):
        raise AssertionError("must go through accelerate launch")

    run = Run()
    result = _train_policy(FakeJob(), run, "sft", config, not_in_process)
    assert result.completed and result.metrics["global_step"] == 2
    assert Path(result.adapter_dir, "adapter_config.json").is_file()
    assert any("accelerate.commands.launch" in line for line in run.lines)
