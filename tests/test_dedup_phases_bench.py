"""benches/dedup_phases.py on the sample data: every phase timed for both thresholds, ABBA order,
the workspace it was given left as it was."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from studio.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted(str(p) for p in (ROOT / "sample_data").glob("*.jsonl"))


def test_phases_table_for_two_thresholds(tmp_path):
    ws = tmp_path / "ws"
    assert main(["import", *SAMPLES, "-w", str(ws), "-q"]) == 0
    before = sorted(p.name for p in ws.iterdir())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    out = subprocess.run([sys.executable, str(ROOT / "benches" / "dedup_phases.py"), str(ws), "--rounds", "1"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| 0.")]
    assert [r.split("|")[1].strip() for r in rows] == ["0.7", "0.8"]
    for r in rows:  # hashing, finding, checking, writing, total: all timed, total covers the phases
        cells = [float(c) for c in r.strip().strip("|").split("|")[1:]]
        assert cells[0] > 0 and cells[-1] >= sum(cells[:-1]) * 0.99
    assert "total at 0.7 / at 0.8:" in out.stdout
    assert "warm-up t=0.8:" in out.stderr  # one untimed run before the timed ones
    assert sorted(p.name for p in ws.iterdir()) == before and not list(tmp_path.glob(".dedup-phases-*"))
