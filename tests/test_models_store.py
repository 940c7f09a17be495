"""What `base:` accepts, and `studio models`: the registry, user entries, and clear errors.

The store is a temporary folder here ($STUDIO_MODELS), so nothing touches the user's models; the
fetch of the real model itself is exercised by `./dev` and tests/test_real_model.py."""
from __future__ import annotations

import json

import pytest

from studio.cli import main
from training import models
from training.config import ConfigError, load_config


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv(models.STORE_ENV, str(tmp_path / "store"))
    return tmp_path / "store"


def _hf_folder(path):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}", encoding="utf-8")
    (path / "model.safetensors").write_bytes(b"")
    return path


def test_base_resolves_folders_hub_ids_and_says_what_else_it_could_be(store, tmp_path):
    folder = _hf_folder(tmp_path / "my-model")
    assert models.resolve_base(str(folder)) == str(folder)
    assert models.resolve_base("Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"  # a hub id, as given
    with pytest.raises(models.ModelUnavailable, match="not a registry model .*smollm2-135m-instruct"):
        models.resolve_base("smolm2")  # a typo gets the list, not a hub lookup
    with pytest.raises(models.ModelUnavailable, match="no such .gguf"):
        models.resolve_base(str(tmp_path / "nope.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(models.ModelUnavailable, match="no config.json"):
        models.resolve_base(str(tmp_path / "empty"))


def test_a_registry_model_not_fetched_says_how_to_fetch_it(store):
    with pytest.raises(models.ModelUnavailable, match="studio models fetch smollm2-135m-instruct"):
        models.resolve_base(models.DEMO_MODEL, fetch=False)


def test_models_add_list_rm_round_trip(store, tmp_path, capsys):
    folder = _hf_folder(tmp_path / "mine")
    assert main(["models", "add", "mine", str(folder), "--licence", "MIT", "--json"]) == 0
    added = json.loads(capsys.readouterr().out)
    assert added["source"] == f"folder:{folder}"
    assert json.loads((store / "registry.json").read_text())["mine"]["licence"] == "MIT"
    assert models.resolve_base("mine") == str(folder)
    assert main(["models", "list", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert listed["mine"]["present"] is True and listed["mine"]["licence"] == "MIT"
    assert listed[models.DEMO_MODEL]["builtin"] is True and listed[models.DEMO_MODEL]["present"] is False
    assert main(["models", "rm", "mine"]) == 0
    assert "mine" not in models.registry()
    assert folder.is_dir()  # a folder entry is the user's own files: only the entry goes


def test_models_errors_are_one_line_with_exit_codes(store, capsys, tmp_path):
    assert main(["models", "add", "smollm2-135m-instruct", str(tmp_path)]) == 2
    assert main(["models", "add", "tiny", str(tmp_path)]) == 2
    assert main(["models", "rm", "ghost"]) == 2
    assert main(["models", "fetch", "ghost"]) != 0
    err = capsys.readouterr().err
    assert "built-in model" in err and "no model named 'ghost'" in err and "Traceback" not in err


def test_presets_other_than_tiny_demo_ask_for_a_base(store):
    with pytest.raises(ConfigError, match="preset 'fast' names no base model: pass --base"):
        load_config(preset="fast")
    assert load_config(preset="fast", overrides={"base": "tiny"}).base == "tiny"  # asked for by name: fine
    assert load_config(preset="tiny-demo").base == "tiny"
    assert load_config(preset="smollm2-cpu").base == models.DEMO_MODEL


def test_plan_of_a_preset_without_a_base_is_refused(store, tmp_path, capsys):
    from tests.training_fixtures import write_split

    split = write_split(tmp_path / "split")
    assert main(["-w", str(tmp_path / "ws"), "train", str(split), "--preset", "fast", "--plan"]) == 2
    assert "names no base model" in capsys.readouterr().err
