"""Ways to damage a saved run, for the checkpoint tests (policies and reward models)."""
from __future__ import annotations

import shutil
from pathlib import Path


def private_copy(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of a run's folder under ``tmp_path``, so a module-scoped run can be damaged by one test."""
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    return out


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])


def flip_last_byte(path: Path) -> None:
    """Same size, other bytes: only a checksum notices."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def damage_cases(weights_file: str, weights_name: str) -> dict:
    """Each way one file of a checkpoint is damaged, by name: (the file, what is done to it). ``weights_file`` is the
    checkpoint's weights (an adapter's or a whole model's), ``weights_name`` what the case names call them."""
    return {
        f"truncated {weights_name}": (weights_file, truncate),
        "truncated optimizer": ("optimizer.pt", truncate),
        "truncated trainer state": ("trainer_state.json", truncate),
        "missing scheduler": ("scheduler.pt", lambda path: path.unlink()),
        "same size, other bytes": (weights_file, flip_last_byte),
    }
