"""The command line on click (issue 17 item 6): commands load only when they run, `python -m
studio` works, shell completion is click's own, the version is the package metadata's, and the
`--set` keys and the Train form's rows come from training/config.py's fields."""
from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import pytest

from studio.cli import main, parse
from tests.conftest import ROOT

HEAVY = {"torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "openai", "datasketch", "duckdb",
         "pyarrow"}


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    return _run("-c", code, *args)


LOADED = ("import sys\n"
          "def loaded():\n"
          "    heavy = sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1].split(',')))\n"
          "    commands = sorted(m for m in sys.modules if m.startswith('studio.commands.') and\n"
          "                      not m.split('.')[-1].startswith('_'))\n"
          "    print(' '.join(heavy) + '|' + ' '.join(commands))\n")


def test_the_bare_command_opens_the_app_without_loading_any_command():
    code = LOADED + ("import studio.cli\n"
                     "studio.cli.run_app = lambda ws, serve=False, port=8566: (print(ws, serve, port), loaded(), 0)[-1]\n"
                     "sys.exit(studio.cli.main(sys.argv[2:]))\n")
    proc = _python(code, ",".join(HEAVY), "-w", "some-ws", "--serve", "--port", "9000")
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first == "some-ws True 9000"
    assert second == "|", second  # nothing heavy, no command module


def test_a_command_loads_only_its_own_module_and_help_loads_nothing_heavy():
    code = LOADED + ("import studio.cli\n"
                     "try:\n"
                     "    studio.cli.main(sys.argv[2:])\n"
                     "except SystemExit:\n"
                     "    pass\n"
                     "loaded()\n")
    proc = _python(code, ",".join(HEAVY), "stats", "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "|studio.commands.stats"
    proc = _python(code, ",".join(HEAVY), "--help")  # lists every command: each module loads, nothing heavy
    heavy, commands = proc.stdout.splitlines()[-1].split("|")
    assert heavy == "" and "studio.commands.train" in commands.split(), proc.stdout[-500:]


def test_python_dash_m_studio_and_the_version_from_the_package_metadata():
    proc = _run("-m", "studio", "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"studio {version('finetune-studio')}"
    proc = _run("-m", "studio", "nosuchcommand")
    assert proc.returncode == 2 and "No such command 'nosuchcommand'" in proc.stderr


def test_the_version_is_written_only_in_pyproject():
    import studio

    assert not hasattr(studio, "__version__")
    hits = [p for p in (ROOT / "studio").rglob("*.py") if '"0.1.0"' in p.read_text(encoding="utf-8")]
    assert hits == []


def test_shell_completion_script_and_completing_a_command(monkeypatch, capsys):
    monkeypatch.setenv("_STUDIO_COMPLETE", "bash_source")
    assert main([]) == 0
    script = capsys.readouterr().out
    assert "_studio_completion" in script and "complete " in script and "_STUDIO_COMPLETE=bash_complete" in script

    monkeypatch.setenv("_STUDIO_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", "studio tr")
    monkeypatch.setenv("COMP_CWORD", "1")
    assert main([]) == 0
    offered = [line.split(",", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert offered == ["train"]

    monkeypatch.setenv("COMP_WORDS", "studio export v1 --for")
    monkeypatch.setenv("COMP_CWORD", "3")
    assert main([]) == 0
    assert [line.split(",", 1)[1] for line in capsys.readouterr().out.splitlines()] == ["--format", "--force"]


def test_workspace_is_a_global_and_a_command_option():
    assert str(parse(["-w", "A", "stats"]).args.workspace) == "A"
    assert str(parse(["stats", "-w", "B"]).args.workspace) == "B"
    assert str(parse(["-w", "A", "stats", "-w", "B"]).args.workspace) == "B"
    args = parse(["--verbose", "models", "--json", "list"]).args
    assert args.verbose is True and args.json is True and args.command == "models"
    assert parse(["-w", "A"]).args.command is None  # the app


def test_check_refuses_repair_with_salvage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check", "--repair", "--salvage", "x"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--repair and --salvage exclude each other" in err and "Traceback" not in err


def test_train_help_lists_every_config_key_and_the_presets(capsys, monkeypatch):
    from training.config_fields import config_fields
    from training.presets import names

    monkeypatch.setenv("COLUMNS", "120")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    keys = [f.path for f in config_fields()]
    assert {"lora.r", "train.learning_rate", "data.max_length", "eval.at_end", "base"} <= set(keys)
    listed = {line.split()[0] for line in text.split("Config keys", 1)[1].splitlines()[1:] if line.startswith("  ")
              and not line.startswith("   ")}
    assert set(keys) <= listed, set(keys) - listed
    assert "Rank of the low-rank update. (default: 16)" in " ".join(text.split())
    assert f"named preset: {', '.join(names())}" in " ".join(text.split())


def test_config_fields_parse_with_the_fields_own_checks():
    from training.config_fields import config_field
    from training.errors import ConfigError

    r = config_field("lora.r")
    assert (r.label, r.kind, r.default, r.parse(" 8 ")) == ("r", "integer", 16, 8)
    assert config_field("train.learning_rate").parse("2e-4") == pytest.approx(2e-4)
    with pytest.raises(ConfigError, match=r"r \(lora.r\): 'abc' is not a whole number"):
        r.parse("abc")
    with pytest.raises(ConfigError, match=r"micro-batch \(train.micro_batch_size\): '0' should be greater than 0"):
        config_field("train.micro_batch_size").parse("0")
    with pytest.raises(ConfigError, match="no key 'lora.rank'"):
        config_field("lora.rank")
