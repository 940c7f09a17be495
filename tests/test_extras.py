"""`pip install finetune-studio` curates without the trainer's libraries; a command that needs them
says, in one line, which pip command adds them (`finetune-studio[train]`). The tests run the real
`studio` command in a Python where torch, transformers, peft, trl, accelerate and datasets cannot be
imported (a sys.meta_path finder refuses them), as on a machine with the plain install."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests._studio_ws import make_workspace
from tests.training_fixtures import write_split

ROOT = Path(__file__).resolve().parent.parent
INSTALL = "pip install 'finetune-studio[train]'"

# Runs the console script's function as pip's `studio` launcher does: sys.argv, then main().
RUNNER = textwrap.dedent("""
    import sys

    class NoTrainExtra:
        BLOCKED = {"torch", "transformers", "peft", "trl", "accelerate", "datasets", "bitsandbytes"}

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoTrainExtra())
    sys.argv = ["studio", *sys.argv[1:]]
    from studio.cli import main

    try:
        code = main()
    except SystemExit as exc:  # a click-style main exits by itself
        code = exc.code
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in NoTrainExtra.BLOCKED)
    print("loaded:", loaded, file=sys.stderr)
    sys.exit(code)
""")


@pytest.fixture
def ws(tmp_path):
    path = make_workspace(tmp_path / "ws")
    write_split(path / "splits" / "v1")
    return path


def studio(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", RUNNER, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_train_without_the_train_extra_is_one_line_naming_the_pip_command(ws):
    done = studio("train", "v1", "--preset", "tiny-demo", "-w", str(ws))
    lines = [ln for ln in done.stderr.splitlines() if not ln.startswith("loaded:")]
    assert done.returncode != 0
    assert len(lines) == 1, done.stderr  # no traceback
    assert INSTALL in lines[0] and "torch" in lines[0]
    assert not (ws / "runs").exists() or not any((ws / "runs").iterdir())


def test_curating_needs_no_train_extra_and_help_still_shows(ws):
    done = studio("stats", "-w", str(ws))
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stderr  # nothing of the train extra was even looked for by import
    helped = studio("train", "--help")
    assert helped.returncode == 0 and "studio train" in helped.stdout


def test_an_import_error_of_a_train_package_becomes_the_same_line():
    from training.extras import missing_extra_error

    err = missing_extra_error(ModuleNotFoundError("No module named 'peft.tuners'", name="peft.tuners"))
    assert err is not None and str(err) == f"peft is not installed here: {INSTALL}"
    assert missing_extra_error(ModuleNotFoundError("No module named 'yaml'", name="yaml")) is None
    assert missing_extra_error(ValueError("x")) is None
