"""The GPU benchmarks run at tiny size on the CPU, so a bench that breaks is found here rather
than in a device call (each costs minutes of a 30-minute budget; two were lost that way)."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT
from tests.training_fixtures import write_split


def test_train_bench_runs_the_seed_beside_the_presets_at_tiny_size(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "benches/gpu/train_bench.py", "--arch", "tiny", "--warmup", "1",
                           "--variants", "seed-lora@2,fast+args.max_grad_norm=0.5@2,lean+train.offload_checkpoints=true@2,fast+train.fused_lora=true~stack@3", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    res = json.loads((out / "bench.json").read_text())
    assert all("tokens_per_s" in r for r in res.values()), {k: r.get("error") for k, r in res.items()}
    fast = res["fast+args.max_grad_norm=0.5"]
    assert fast["arch"] == "tiny" and fast["config"]["micro_batch"] == 2
    assert fast["trainer_args"] == {"max_grad_norm": 0.5}  # args.NAME reached the Trainer
    assert len(res["seed-lora"]["losses"]) == len(fast["losses"]) == 3
    table = (out / "table.md").read_text()
    assert "| fast+args.max_grad_norm=0.5 | cpu |" in table and "| seed-lora | cpu |" in table
    prof = (out / "fast_train.fused_lora_true_stack.profile.txt").read_text()
    assert "window: 2 optimizer steps" in prof and "top ops by self CPU time" in prof


def test_studio_train_check_compares_the_plan_with_the_runs_metrics(tmp_path):
    split = write_split(tmp_path / "v1", n_train=12, n_val=2)
    out = tmp_path / "chk"
    proc = subprocess.run([sys.executable, "benches/gpu/studio_train_check.py", "--split", str(split), "--arch", "",
                           "--steps", "2", "--variants", "tiny-demo:lora", "--set", "data.max_length=64",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (r,) = json.loads((out / "check.json").read_text())
    assert r["state"] == "done" and r["steps"] == 2 and r["plan_gb"] > 0 and len(r["losses"]) == 2
    assert "| tiny-demo:lora | done (2) |" in proc.stdout


def test_graphs_check_runs_its_padded_path_on_the_cpu(tmp_path):
    """benches/gpu/graphs_check.py at CPU size (no capture here: the same padded, static-mask path)."""
    proc = subprocess.run([sys.executable, "benches/gpu/graphs_check.py", "--out", str(tmp_path), "--tokens", "512",
                           "--copy-first-grad-only"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    res = json.loads((tmp_path / "graphs_check.json").read_text())
    assert [c["passed"] for c in res["checks"]] == [True, True] and res["checks"][0]["replays"] == 6
    assert res["copy_first_grad_only"] is True
