"""Multi-GPU training: on a worker with several GPUs, a policy stage runs as
`accelerate launch -m training.pipeline <stage> --config <toml>` in a child
process instead of in the worker, so each GPU gets its own rank."""
from __future__ import annotations

import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

from training.pipeline.io import atomic_write_text


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # TOML has no null: unset (None) settings are left out, as at the top level
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None) + " }"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_stage_toml(path: Path, settings: dict) -> Path:
    """A TOML file of the stage's settings, nested tables inline (None values are left out)."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in settings.items() if value is not None]
    atomic_write_text(path, "\n".join(lines) + "\n")
    tomllib.loads(Path(path).read_text())  # fail here, not in the child, if it does not parse
    return path


def build_launch_command(*, stage: str, stage_config: Path, accelerate_config: Path | None, num_processes: int,
                         main_process_port: int | None = None) -> list[str]:
    if num_processes < 1:
        raise ValueError("num_processes must be at least 1")
    command = [sys.executable, "-m", "accelerate.commands.launch"]
    if accelerate_config is not None:
        command += ["--config_file", str(accelerate_config)]
    command += ["--num_processes", str(num_processes)]
    if num_processes > 1:
        command += ["--multi_gpu"]
    if main_process_port is not None:
        command += ["--main_process_port", str(main_process_port)]
    command += ["-m", "training.pipeline", stage, "--config", str(stage_config)]
    return command


def run_launch(command: list[str], *, run, cwd: Path | None = None) -> int:
    """Run the launch command, streaming its output into the job log; stop it on cancel."""
    run.log("launching: " + shlex.join(command))
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        run.log(line.rstrip())
        if run.should_stop():
            process.terminate()
            break
    return process.wait()
