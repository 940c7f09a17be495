"""benches/scale_rows.py end to end at 2,000 rows (every stage a real CLI process on a real
workspace), its extrapolation arithmetic, and the STUDIO_DUCKDB_MEMORY setting it relies on."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benches" / "scale_rows.py"
STAGES = ("studio import", "studio dedup", "studio quality", "review read (keyset pages)", "studio export")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


def test_bench_prints_every_stage_with_time_and_memory():
    out = subprocess.run([sys.executable, str(BENCH), "--rows", "2000", "--duckdb-memory", "1GB"],
                         env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert "## 2,000 rows" in text
    # the limit is read back from an opened workspace, as DuckDB reports it (1 GB = 953.6 MiB)
    assert "DuckDB memory_limit 953.6 MiB" in text
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in STAGES + ("all stages",):
            rows[cells[0]] = cells
    assert set(rows) == set(STAGES) | {"all stages"}
    for name in STAGES:
        seconds, rate, largest, tree, ws_mb = rows[name][1:]
        assert float(seconds) > 0 and int(rate.replace(",", "")) > 0
        assert int(largest.replace(",", "")) > 20  # MB: a Python process with DuckDB loaded
        assert tree == "-" or int(tree.replace(",", "")) > 0
        assert float(ws_mb.replace(",", "")) > 0
    total = float(rows["all stages"][1])
    assert total == pytest.approx(sum(float(rows[n][1]) for n in STAGES), abs=0.3)


def test_extrapolation_follows_the_measured_growth():
    sys.path.insert(0, str(ROOT))
    from benches.scale_rows import Stage, extrapolate

    linear = [Stage("a", 10.0, 100.0, 200.0, 1.0)]
    square = [Stage("a", 40.0, 100.0, 400.0, 1.0)]  # time x4 for rows x2: k = 2
    text = extrapolate((1000, linear), (2000, square), 20_000)
    row = next(line for line in text.splitlines() if line.startswith("| a |"))
    k, seconds, linear, km, mb = [c.strip() for c in row.strip("|").split("|")][1:]
    assert float(k) == pytest.approx(2.0) and float(seconds.replace(",", "")) == pytest.approx(4000)
    assert float(linear) == pytest.approx(400)
    assert float(km) == pytest.approx(1.0) and float(mb.replace(",", "")) == pytest.approx(4000)
    assert "NOT a run" in text


def test_bad_duckdb_memory_setting_is_one_line(tmp_path):
    src = tmp_path / "one.jsonl"
    src.write_text('{"instruction": "a", "output": "b"}\n', encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "studio", "import", str(src), "-w", str(tmp_path / "ws")],
                         env=_env(STUDIO_DUCKDB_MEMORY="lots"), capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert re.search(r"STUDIO_DUCKDB_MEMORY='lots' is not a memory size: set it like 4GB", lines[0])


def test_memory_cap_kills_what_does_not_fit_and_lets_the_rest_run():
    """benches/cgroup_cap.py: the kernel enforces the cap (a process that holds 200 MB of
    anonymous memory under a 96 MB cap is killed; one that holds 20 MB completes, and its peak
    anonymous memory is read back). Needs a memory cgroup it may create (root on Linux)."""
    sys.path.insert(0, str(ROOT))
    from benches.cgroup_cap import CapUnavailable, MemoryCap, parse_size

    assert parse_size("8G") == 8 * 2**30 and parse_size("512MiB") == 512 * 2**20 and parse_size("1000") == 1000
    with pytest.raises(ValueError):
        parse_size("lots")
    try:
        cap = MemoryCap.create(96 * 2**20)
    except CapUnavailable as exc:
        pytest.skip(f"no memory cgroup here: {exc}")
    hold = "import sys, time; b = bytearray(int(sys.argv[1]) * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.5)"
    try:
        results = {}
        for mb in (20, 200):
            cap.start()
            proc = subprocess.run([sys.executable, "-c", hold, str(mb)], preexec_fn=cap.enter, capture_output=True)
            cap.stop()
            results[mb] = (proc.returncode, cap.anon_peak, cap.oom_kills())
    finally:
        cap.remove()
    assert results[20][0] == 0 and 20 * 2**20 <= results[20][1] < 96 * 2**20
    assert results[200][0] != 0 and results[200][2] >= 1
