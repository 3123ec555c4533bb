"""bench/bench_gpu.py runs end to end (its tiny CPU configuration) and reads the cards' peaks right."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import bench_gpu  # noqa: E402


def test_peak_table_matches_device_names():
    assert bench_gpu.peak_tflops("NVIDIA H200") == 989.4
    assert bench_gpu.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bench_gpu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert bench_gpu.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert bench_gpu.peak_tflops("Some Future GPU") is None


def test_model_flops_follow_the_palm_count():
    facts = {"matmul_parameters": 1_000, "layers": 2, "hidden": 8}
    assert bench_gpu.model_flops_per_token(facts, "full", 10) == 6 * 1_000 + 12 * 2 * 8 * 10
    assert bench_gpu.model_flops_per_token(facts, "lora", 10) == 4 * 1_000 + 8 * 2 * 8 * 10


def test_tiny_run_measures_dpo_and_modpo_lora_and_full(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "bench/bench_gpu.py", "--tiny", "--steps", "3", "--warmup", "1", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MODPO / DPO step time (full):" in proc.stdout and "MODPO / DPO step time (lora):" in proc.stdout
    report = json.loads(out.read_text())
    runs = {(r["method"], r["mode"]) for r in report["results"]}
    assert runs == {("dpo", "full"), ("modpo", "full"), ("dpo", "lora"), ("modpo", "lora")}
    for r in report["results"]:
        assert len(r["step_times"]) == 3 and r["median_step_s"] > 0 and r["tokens_per_s"] > 0 and r["seq_len"] > 10
    assert report["device"] == "CPU" and all(r["mfu"] is None for r in report["results"])
