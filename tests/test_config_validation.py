"""Validation that used to come too late (issue 16, item 7): values that passed `load_config` and
`studio train SPLIT --plan` (rc 0) and then failed at launch with a library traceback now fail at load,
or at the plan where the config meets the base model and the split, with one line naming the field and
the choices; a launch refuses the same way before it creates a run or starts a process.

The lists of valid values are checked against the installed transformers, so they cannot drift.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.training_fixtures import write_split

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A workspace with a 8+2 row split `v1`, and a model store of its own (the module-name cache)."""
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path / "store"))
    ws = tmp_path / "ws"
    write_split(ws / "splits" / "v1", n_train=8, n_val=2)
    return ws


def train(ws: Path, *args: str) -> list[str]:
    return ["train", "v1", "-w", str(ws), "--preset", "tiny-demo", *args]


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    from studio.cli import main

    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def the_line(err: str, field: str) -> str:
    """The one line of the error that names `field`."""
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if field in ln]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------- the lists match the installed transformers

def test_scheduler_names_are_the_installed_transformers_ones():
    from transformers import get_scheduler
    from transformers.trainer_utils import SchedulerType

    from training.config import LR_SCHEDULERS, LR_SCHEDULERS_NEED_KWARGS

    assert set(LR_SCHEDULERS) | set(LR_SCHEDULERS_NEED_KWARGS) == {s.value for s in SchedulerType}
    assert not set(LR_SCHEDULERS) & set(LR_SCHEDULERS_NEED_KWARGS)
    import torch

    for name in LR_SCHEDULERS + tuple(LR_SCHEDULERS_NEED_KWARGS):
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        if name in LR_SCHEDULERS:  # each one this config accepts builds as the Trainer builds it
            get_scheduler(name, opt, num_warmup_steps=0, num_training_steps=10)
        else:  # the rest need lr_scheduler_kwargs the config does not have
            with pytest.raises((ValueError, TypeError), match="min_lr|num_decay_steps"):
                get_scheduler(name, opt, num_warmup_steps=0, num_training_steps=10)


def test_attention_names_are_what_the_installed_transformers_accepts():
    from transformers.integrations.hub_kernels import is_kernel
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from training.config import ATTN_IMPLEMENTATIONS, HUB_KERNEL

    accepted = ({"eager"} | set(ALL_ATTENTION_FUNCTIONS.valid_keys())) - {"paged|eager"}  # paged: inference only
    assert set(ATTN_IMPLEMENTATIONS) - {"auto"} == accepted
    for name in ("kernels-community/flash-attn2", "org/repo@v1:fn", "sdpa", "a/b/c", "bogus"):
        assert bool(HUB_KERNEL.match(name)) == is_kernel(name), name


def test_loading_a_config_checks_values_without_importing_torch_or_transformers():
    code = ("import sys\nfrom training.config import load_config\nfrom training.errors import ConfigError\n"
            "load_config(overrides={'train.lr_scheduler': 'cosine', 'train.attn_implementation': 'sdpa'})\n"
            "try:\n    load_config(overrides={'train.lr_scheduler': 'bogus'})\n    raise SystemExit('accepted')\n"
            "except ConfigError:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
            "raise SystemExit(f'imported {heavy}' if heavy else 0)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------- bad values fail through the CLI, in one line

@pytest.mark.parametrize("setting, field, expected", [
    ("train.lr_scheduler=bogus", "train.lr_scheduler",
     ["'bogus'", "linear", "cosine", "constant_with_warmup", "reduce_lr_on_plateau", "greedy"]),
    ("train.attn_implementation=bogus", "train.attn_implementation",
     ["'bogus'", "sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3"]),
    ("lora.target_modules=[foo_proj]", "lora.target_modules",
     ["foo_proj matches no module of tiny",
      "its linear layers are q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"]),
])
def test_bad_value_fails_the_plan_in_one_line(ws, capsys, setting, field, expected):
    rc, out, err = run_cli(capsys, train(ws, "--plan", "--set", setting))
    assert rc != 0 and "EOS check" not in out
    line = the_line(err, field)
    for text in expected:
        assert text in line, line


def test_closest_choice_comes_first(ws, capsys):
    rc, _out, err = run_cli(capsys, train(ws, "--plan", "--set", "train.lr_scheduler=cosin"))
    assert rc != 0 and the_line(err, "train.lr_scheduler").split("one of ", 1)[1].startswith("cosine, ")
    rc, _out, err = run_cli(capsys, train(ws, "--plan", "--set", "train.attn_implementation=flash_attention2"))
    assert rc != 0 and the_line(err, "train.attn_implementation").split("one of ", 1)[1].startswith("flash_attention_2")
    rc, _out, err = run_cli(capsys, train(ws, "--plan", "--set", "lora.target_modules=[q_prj]"))
    assert rc != 0 and "(did you mean q_proj?)" in the_line(err, "lora.target_modules")


def test_scheduler_that_needs_kwargs_says_so(ws, capsys):
    rc, _out, err = run_cli(capsys, train(ws, "--plan", "--set", "train.lr_scheduler=cosine_with_min_lr"))
    line = the_line(err, "train.lr_scheduler")
    assert rc != 0 and "needs min_lr or min_lr_rate" in line and "cosine" in line


def test_a_target_that_is_no_linear_layer_fails(ws, capsys):
    rc, _out, err = run_cli(capsys, train(ws, "--plan", "--set", "lora.target_modules=[q_proj, mlp]"))
    line = the_line(err, "lora.target_modules")
    assert rc != 0 and "mlp matches model.layers.0.mlp (LlamaMLP), which LoRA cannot adapt" in line


def test_valid_values_still_plan(ws, capsys):
    for sets in (["train.lr_scheduler=cosine", "train.attn_implementation=eager"],
                 ["train.lr_scheduler=Constant_With_Warmup", "train.attn_implementation=SDPA"],
                 ["lora.target_modules=[q_proj, v_proj, gate_proj, down_proj]"],
                 ["lora.target_modules=self_attn.q_proj,up_proj"],  # a comma string; a dotted suffix
                 ["train.lr_scheduler=reduce_lr_on_plateau"],  # v1 has validation rows
                 ["method=full", "lora.target_modules=[foo_proj]"]):  # full fine-tuning has no adapter
        argv = train(ws, "--plan")
        for s in sets:
            argv += ["--set", s]
        rc, out, err = run_cli(capsys, argv)
        assert rc == 0, (sets, err)
        assert "EOS check: all 8 assistant turns" in out and "PROBLEM" not in out


def test_flash_attention_without_its_package_is_a_plan_problem_and_a_launch_refusal(ws, capsys):
    import importlib.util

    if importlib.util.find_spec("flash_attn") is not None:
        pytest.skip("flash-attn is installed here")
    rc, out, err = run_cli(capsys, train(ws, "--plan", "--set", "train.attn_implementation=flash_attention_2"))
    assert rc == 1 and "Traceback" not in err
    line = [ln for ln in out.splitlines() if "flash_attention_2" in ln]
    assert len(line) == 1 and "needs the flash-attn package" in line[0] and "use sdpa" in line[0]
    rc, _out, err = run_cli(capsys, train(ws, "--foreground", "--set", "train.attn_implementation=flash_attention_2"))
    assert rc == 2 and "needs the flash-attn package" in the_line(err, "flash_attention_2")
    assert not (ws / "runs").exists() or not any((ws / "runs").iterdir())


# ---------------------------------------------------------------- target modules against the base

def test_target_modules_are_cached_per_base(ws, monkeypatch):
    from training import config as C

    cfg = C.load_config(preset="tiny-demo", overrides={"lora.target_modules": ["q_proj"], "tiny.hidden_size": 96})
    table = C.base_modules(cfg)
    assert C.linear_layer_names(table) == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert table["head"] == "lm_head"
    cached = list((Path(ws).parent / "store" / C.MODULE_CACHE_DIR).glob("*.json"))
    assert len(cached) == 1
    # a new process reads the store's copy: nothing is built again
    monkeypatch.setattr(C, "_modules_seen", {})
    monkeypatch.setattr(C, "_build_module_table", lambda build: pytest.fail("built again"))
    assert C.base_modules(cfg) == table
    assert C.validate_against_base(cfg) is None


def test_target_modules_checked_against_the_real_smollm2(tmp_path, monkeypatch, capsys):
    from training.models import DEMO_MODEL, ModelUnavailable, resolve_base

    try:
        folder = resolve_base(DEMO_MODEL, fetch=False)
    except ModelUnavailable:
        pytest.skip(f"{DEMO_MODEL} is not in the model store")
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path / "store"))  # the cache goes here, not to the user's store
    ws = tmp_path / "ws"
    write_split(ws / "splits" / "v1", n_train=4, n_val=0)
    base = ["train", "v1", "-w", str(ws), "--base", folder, "--plan"]
    rc, out, err = run_cli(capsys, base + ["--set", "lora.target_modules=[q_proj, foo_proj]"])
    line = the_line(err, "lora.target_modules")
    assert rc == 2 and f"foo_proj matches no module of {folder}" in line
    assert "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj" in line and "lm_head" not in line
    rc, out, err = run_cli(capsys, base + ["--set", "lora.target_modules=[q_proj, up_proj, down_proj]"])
    assert rc == 0 and "EOS check: all 4 assistant turns" in out, err


def test_a_base_whose_config_is_not_here_is_noted_not_refused(ws, capsys):
    rc, out, err = run_cli(capsys, ["train", "v1", "-w", str(ws), "--base", "someorg/not-downloaded", "--params", "1",
                                    "--plan", "--set", "lora.target_modules=[foo_proj]"])
    assert rc == 0, err
    assert "note: lora.target_modules not checked: the config of someorg/not-downloaded is not on this machine" in out


# ---------------------------------------------------------------- splits that cannot train

def test_empty_split_fails_the_plan(ws, capsys):
    write_split(ws / "splits" / "empty", rows=[], n_val=0)
    rc, out, err = run_cli(capsys, ["train", "empty", "-w", str(ws), "--preset", "tiny-demo", "--plan"])
    assert rc != 0 and "learns to stop" not in out
    assert "the split has 0 rows" in the_line(err, "0 rows")


def test_split_of_samples_all_longer_than_max_length_fails_the_plan(ws, capsys):
    rc, out, err = run_cli(capsys, train(ws, "--plan", "--set", "data.max_length=8"))
    assert rc != 0 and "learns to stop" not in out
    line = the_line(err, "max_length")
    assert "all 8 samples are longer than max_length=8 tokens" in line and "raise data.max_length" in line
    rc, out, _err = run_cli(capsys, train(ws, "--plan", "--set", "data.max_length=20"))  # some fit: a plan
    assert rc == 0 and "longer than max_length 20 get cut" in out


def test_plateau_scheduler_without_validation_rows_fails_the_plan(ws, capsys):
    write_split(ws / "splits" / "noval", n_train=6, n_val=0)
    rc, _out, err = run_cli(capsys, ["train", "noval", "-w", str(ws), "--preset", "tiny-demo", "--plan",
                                     "--set", "train.lr_scheduler=reduce_lr_on_plateau"])
    assert rc != 0 and "has no validation rows" in the_line(err, "reduce_lr_on_plateau")


@pytest.mark.parametrize("split_rows, sets, reason", [
    (None, ["lora.target_modules=[foo_proj]"], "foo_proj matches no module of tiny"),
    (None, ["data.max_length=8"], "all 8 samples are longer than max_length=8 tokens"),
    ([], [], "the split has 0 rows"),
])
def test_launch_refuses_before_it_creates_a_run(ws, capsys, split_rows, sets, reason):
    """--foreground so that the code before this fix fails in this process, not in a detached one."""
    name = "v1"
    if split_rows is not None:
        name = "bad"
        write_split(ws / "splits" / name, rows=split_rows, n_val=0)
    argv = ["train", name, "-w", str(ws), "--preset", "tiny-demo", "--foreground", "--name", "r"]
    for s in sets:
        argv += ["--set", s]
    rc, _out, err = run_cli(capsys, argv)
    assert rc == 2 and reason in err and "Traceback" not in err
    assert not (ws / "runs" / "r").exists()


def test_preflight_tokenises_only_up_to_the_first_sample_that_fits(ws, monkeypatch):
    from training import data, plan
    from training.config import load_config

    cfg = load_config(preset="tiny-demo", overrides={"data.split": str(ws / "splits" / "v1")})
    calls = []
    real = data.tokenise_all
    monkeypatch.setattr(data, "tokenise_all", lambda tok, samples, **kw: calls.append(len(samples)) or real(tok, samples, **kw))
    assert plan.preflight(cfg) == []
    assert calls == [1]


def test_all_linear_plans_and_trains_every_linear_layer_but_the_head(ws, capsys):
    """PEFT expands "all-linear" only from a plain string: in a list it looked for a module of
    that name and the run failed at launch."""
    rc, out, err = run_cli(capsys, train(ws, "--plan", "--set", "lora.target_modules=all-linear"))
    assert rc == 0 and "PROBLEM" not in out, err
    rc, out, err = run_cli(capsys, train(ws, "--foreground", "--name", "al", "--set", "lora.target_modules=all-linear",
                                         "--set", "train.max_steps=1"))
    assert rc == 0, err
    import json

    adapter = json.loads((ws / "runs" / "al" / "adapter" / "adapter_config.json").read_text())
    adapted = {name.rsplit(".", 1)[-1] for name in adapter["target_modules"]}  # PEFT saves full names
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
