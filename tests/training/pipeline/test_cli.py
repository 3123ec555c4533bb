"""The command line: configs from TOML, clear errors, and a small end-to-end run through the stages."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training.pipeline.__main__ import STAGES, load_stage_config, main

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "training" / "pipeline" / "configs"
EXAMPLES = {
    "generate.toml": "generate", "label_rubric.toml": "label", "label_http.toml": "label", "label_local.toml": "label",
    "preferences.toml": "preferences", "reward_model.toml": "reward-model", "margins.toml": "margins", "sft.toml": "sft",
    "dpo.toml": "dpo", "modpo.toml": "modpo", "joint_dpo.toml": "joint-dpo", "merge.toml": "merge", "evaluate.toml": "evaluate",
    "lora_gguf.toml": "lora-gguf",
}


def test_every_stage_has_an_example_config_that_loads():
    assert set(EXAMPLES.values()) == set(STAGES)
    assert {p.name for p in CONFIGS.glob("*.toml")} == set(EXAMPLES)
    for name, stage in EXAMPLES.items():
        load_stage_config(stage, CONFIGS / name)


def test_unknown_key_gives_a_clear_error(tmp_path, capsys):
    config = tmp_path / "gen.toml"
    config.write_text('model = "m"\nscenarios_path = "s"\noutput_path = "o"\ntemprature = 0.7\n')
    assert main(["generate", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'temprature'" in err and "allowed: model, scenarios_path" in err and str(config) in err


def test_nested_unknown_and_missing_keys(tmp_path, capsys):
    config = tmp_path / "label.toml"
    config.write_text('candidates_path = "c"\nscenarios_path = "s"\npersonas_path = "p"\noutput_path = "o"\n'
                      '[judge]\nbackend = "http"\nbase_url = "http://x/v1"\nmodel = "m"\nmax_concurency = 4\n')
    assert main(["label", "--config", str(config)]) == 2
    assert "config.judge: unknown key 'max_concurency'" in capsys.readouterr().err
    config.write_text('output_dir = "o"\n')
    assert main(["sft", "--config", str(config)]) == 2
    assert "missing required keys 'dataset_dir', 'criterion'" in capsys.readouterr().err
    config.write_text('dataset_dir = "d"\ncriterion = "empathy"\noutput_dir = "o"\nshould_stop = 1\n')
    assert main(["sft", "--config", str(config)]) == 2
    assert "config: unknown key 'should_stop'" in capsys.readouterr().err  # run control is set in code, not in files
    config.write_text('margin_dataset_dir = "m"\nprimary = "empathy"\noutput_dir = "o"\n[weights]\nempathy = 1.0\n'
                      '[safety]\nfloor = 0.0\nflor = 1.0\n')
    assert main(["modpo", "--config", str(config)]) == 2
    assert "config.safety: unknown key 'flor'" in capsys.readouterr().err


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_end_to_end_generate_label_preferences_evaluate(tiny_lm_dir, tmp_path, capsys):
    scenarios = _write(tmp_path / "scenarios.jsonl", [
        {"scenario_id": f"s{i}", "prompt": f"I feel alone ({i}).", "split": "train" if i < 2 else "test",
         "risk_level": "moderate"} for i in range(3)])
    personas = _write(tmp_path / "personas.jsonl", [
        {"persona_id": f"p{i}", "text": f"persona {i}", "split": "train" if i < 2 else "test"} for i in range(3)])
    run = tmp_path / "run"

    def stage(name, text):
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        assert main([name, "--config", str(path)]) == 0, capsys.readouterr().err
        return json.loads(capsys.readouterr().out)["result"]

    gen = stage("generate", f'model = "{tiny_lm_dir}"\nscenarios_path = "{scenarios}"\noutput_path = "{run}/c.jsonl"\n'
                            'n = 3\nmax_new_tokens = 4\nprogress_bar = false\n')
    assert gen["generated"] == 3
    lab = stage("label", f'candidates_path = "{run}/c.jsonl"\nscenarios_path = "{scenarios}"\npersonas_path = "{personas}"\n'
                         f'output_path = "{run}/l.jsonl"\ncriteria = ["empathy", "safety"]\nprogress_bar = false\n'
                         '[judge]\nbackend = "rubric"\n')
    assert lab["labeled"] == 4 and lab["judge"]["synthetic"] is True
    prefs = stage("preferences", f'output_dir = "{run}/prefs"\nlabels_path = "{run}/l.jsonl"\ncandidates_path = "{run}/c.jsonl"\n'
                                 f'scenarios_path = "{scenarios}"\n')
    assert prefs["version"] and (run / "prefs" / "card.json").exists()
    ev = stage("evaluate", f'scenarios_path = "{scenarios}"\npersonas_path = "{personas}"\noutput_dir = "{run}/eval"\n'
                           'criteria = ["empathy", "safety"]\nprogress_bar = false\n[judge]\nbackend = "rubric"\n'
                           '[generation]\nmax_new_tokens = 3\n'
                           f'[[models]]\nname = "base"\nmodel = "{tiny_lm_dir}"\n'
                           f'[[models]]\nname = "canned"\nanswers_path = "{run}/c.jsonl"\n')
    assert ev["synthetic"] is True and (run / "eval" / "evaluation.json").exists()


def test_module_entry_point_runs(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("output_dir = 'o'\nsurprise = 1\n")
    proc = subprocess.run([sys.executable, "-m", "training.pipeline", "preferences", "--config", str(config)],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert proc.returncode == 2 and "unknown key 'surprise'" in proc.stderr
    help_text = subprocess.run([sys.executable, "-m", "training.pipeline", "--help"], cwd=ROOT, capture_output=True, text=True,
                               timeout=120).stdout
    for name in STAGES:
        assert name in help_text


@pytest.mark.parametrize("stage", ["sft", "modpo", "merge"])
def test_training_stage_configs_check(stage, capsys):
    name = {"sft": "sft.toml", "modpo": "modpo.toml", "merge": "merge.toml"}[stage]
    assert main([stage, "--config", str(CONFIGS / name), "--check"]) == 0
    assert json.loads(capsys.readouterr().out)["stage"] == stage
