"""YAML errors say file:line in both packages, through one small loader each (curation and training
may not import each other, so the loader is written twice and this test keeps the copies the same)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _body(path: Path) -> str:
    """The module's code without its docstring (the docstrings name their own package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    tree.body = tree.body[1:]
    return ast.unparse(tree)


def test_the_two_yaml_loaders_are_the_same_code():
    assert _body(ROOT / "curation" / "yaml_lines.py") == _body(ROOT / "training" / "yaml_lines.py")


def test_every_key_and_list_item_has_its_line():
    from training.yaml_lines import parse_yaml

    doc = parse_yaml("lora:\n  r: 16\nstages:\n  - name: a\n    split: s1\n  - split: s2\n", "f.yaml")
    assert doc.data["stages"][1] == {"split": "s2"}
    assert doc.lines == {"lora": 1, "lora.r": 2, "stages": 3, "stages[0]": 4, "stages[0].name": 4,
                         "stages[0].split": 5, "stages[1]": 6, "stages[1].split": 6}
    assert doc.where("stages[1].split") == "f.yaml:6"
    assert doc.where("stages[0].missing") == "f.yaml:4"  # a key not written: its parent's line
    assert doc.where("") == "f.yaml:1"


def test_invalid_yaml_is_one_line_naming_file_and_line():
    from curation.errors import StudioError
    from curation.yaml_lines import parse_yaml

    with pytest.raises(StudioError) as err:
        parse_yaml("a: 1\nb: [1, 2\nc: 3\n", "rules.yaml", StudioError)
    assert str(err.value).startswith("rules.yaml:3: not valid YAML") and "\n" not in str(err.value)


def test_workspace_settings_with_bad_yaml_name_the_line(ws):
    from curation.errors import StudioError

    ws.config_path.write_text("providers:\n  - name: x\n   model: [\n", encoding="utf-8")
    with pytest.raises(StudioError, match=r"studio\.yaml:\d+: not valid YAML"):
        ws.read_config()


def test_pipeline_stage_errors_name_the_stage_line(tmp_path):
    from training.errors import ConfigError
    from training.pipeline import load_pipeline

    f = tmp_path / "p.yaml"
    f.write_text("name: p\nstages:\n  - split: a\n  - name: b\n    bogus: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"p\.yaml:4: stages\[1\]: unknown key 'bogus'"):
        load_pipeline(f)
