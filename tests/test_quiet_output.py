"""The studio's commands print the studio's lines, not the libraries' (training/quiet.py): no
"Loading weights" or other tqdm bars, no FutureWarning, no Trainer log dicts, no bitsandbytes
hub-kernel warning (nor the Hub lookup behind it), no asyncssh DSA warning. `--verbose` brings the
library lines back.

Each command runs in a subprocess, so what the libraries do when they are imported is real; the
runs are tiny (a random 2-layer base, 1-2 steps). Where a test needs a library line it cannot
cause here, it says how it simulates it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests._tiny_lora import build_base, make_run
from tests.training_fixtures import write_split

pytest.importorskip("trl")

ROOT = Path(__file__).resolve().parent.parent
NOISE = ("Loading weights", "FutureWarning", "DeprecationWarning", "gemm_4bit", "kernels-community", "%|",
         "{'loss'", "{'eval_loss'", "{'train_runtime'")
STUDIO = "import sys; from studio.cli import main; sys.exit(main(sys.argv[1:]))"
TINY_TRAIN = ["--preset", "tiny-demo", "--set", "train.max_steps=2", "--set", "train.eval_steps=2"]


# what a quiet call in this pytest process (a test calling main()) may have left in os.environ
QUIET_ENV = ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS", "TQDM_DISABLE", "TRANSFORMERS_VERBOSITY",
             "DATASETS_VERBOSITY", "HF_HUB_VERBOSITY", "STUDIO_VERBOSE")


def _env() -> dict[str, str]:
    """This environment (offline, from conftest) without QUIET_ENV, so each subprocess starts as a
    user's shell would."""
    env = {k: v for k, v in os.environ.items() if k not in QUIET_ENV}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def studio(cwd: Path, *args: str, code: str = STUDIO, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=timeout, check=False)


def assert_quiet(proc: subprocess.CompletedProcess, rc: int = 0, *, marker: str | None = None) -> None:
    """Exit status `rc`, and none of NOISE (nor any "...Warning") in the output; `marker`: a test's
    own stderr line, left out of the check."""
    stderr = proc.stderr.replace(f"{marker}\n", "") if marker else proc.stderr
    shown = f"rc {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{stderr[-3000:]}"
    assert proc.returncode == rc, shown
    for noise in NOISE:
        assert noise not in stderr and noise not in proc.stdout, f"{noise!r} in the output\n{shown}"
    assert "Warning" not in stderr, shown


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A workspace with a split v1 and a finished tiny run r1 (adapter on a random base)."""
    root = tmp_path_factory.mktemp("quiet")
    ws = root / "ws"
    write_split(ws / "splits" / "v1", n_train=8, n_val=2)
    make_run(ws / "runs", "r1", build_base(root / "base"))
    return ws


# bitsandbytes asks the Hub for a CPU kernel only on a CPU with AVX512-BF16 (this one may lack it):
# the command runs with `has_avx512bf16` answering yes and `kernels.get_kernel` standing in for the
# Hub (it says so on stderr and fails, as it does offline). Both are set when their module is imported.
SIMULATED_AVX512_BF16 = r'''
import importlib.machinery, sys

def has_avx512bf16():
    print("simulated AVX512-BF16", file=sys.stderr)
    return True

def get_kernel(repo_id, **kw):
    print(f"hub lookup: {repo_id}", file=sys.stderr)
    raise RuntimeError("no Hub here")

PATCH = {"bitsandbytes.functional": ("has_avx512bf16", has_avx512bf16), "kernels": ("get_kernel", get_kernel)}

class Simulate:
    def find_spec(self, name, path=None, target=None):
        if name not in PATCH:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            setattr(module, *PATCH[name])
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, Simulate())
''' + STUDIO


def test_chat_prints_the_answers_only_and_asks_no_hub_for_a_cpu_kernel(ws):
    proc = studio(ws.parent, "-w", str(ws), "chat", "r1", "--prompt", "hi", "--max-new-tokens", "2",
                  "--temperature", "0", code=SIMULATED_AVX512_BF16)
    assert "simulated AVX512-BF16" in proc.stderr, proc.stderr[-3000:]  # bitsandbytes' CPU backend was imported
    assert "hub lookup" not in proc.stderr  # no download attempt, not just no message
    assert_quiet(proc, marker="simulated AVX512-BF16")
    assert "── adapter r1 ──" in proc.stdout and "── base " in proc.stdout


def test_the_hub_kernels_package_still_imports_after_bitsandbytes(tmp_path):
    """The guard hides `kernels` from bitsandbytes' CPU backend only: a hub attention kernel
    (train.attn_implementation) still finds it."""
    pytest.importorskip("bitsandbytes")
    pytest.importorskip("kernels")
    code = ("import sys; from training.quiet import quiet_libraries; quiet_libraries(); import bitsandbytes; "
            "from kernels import get_kernel; print(sys.modules['kernels'] is not None and callable(get_kernel))")
    proc = studio(tmp_path, code=code)
    assert proc.returncode == 0 and proc.stdout.strip() == "True", proc.stderr[-3000:]


def test_chat_on_the_real_model_is_quiet(tmp_path):
    from training.models import DEMO_MODEL, ModelUnavailable, resolve_base

    try:
        base = resolve_base(DEMO_MODEL, fetch=False)
    except ModelUnavailable as exc:
        pytest.skip(f"the real model is not in the store here: {exc}")
    ws = tmp_path / "ws"
    make_run(ws / "runs", "real", Path(base))
    proc = studio(tmp_path, "-w", str(ws), "chat", "real", "--prompt", "hi", "--max-new-tokens", "2",
                  "--temperature", "0")
    assert_quiet(proc)
    assert "── adapter real ──" in proc.stdout


# A deprecation warning raised inside peft while the adapter loads. peft 0.21 raised a real one on
# every load (transformers' `is_gradient_checkpointing`); 0.22 no longer does, so the merge tests
# raise one the same way a library does: attributed to a peft module, which the quiet filters match
# by module. It is set when peft.peft_model is imported.
SIMULATED_PEFT_WARNING = r'''
import importlib.machinery, sys, warnings

class Simulate:
    def find_spec(self, name, path=None, target=None):
        if name != "peft.peft_model":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            load = module.PeftModel.from_pretrained.__func__
            def from_pretrained(cls, *a, **k):
                warnings.warn_explicit("simulated: `old_argument` is deprecated", FutureWarning,
                                       module.__file__, 1, module="peft.peft_model")
                return load(cls, *a, **k)
            module.PeftModel.from_pretrained = classmethod(from_pretrained)
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, Simulate())
''' + STUDIO


def test_merge_is_quiet_and_verbose_brings_the_library_lines_back(ws):
    proc = studio(ws.parent, "-w", str(ws), "merge", "r1", "--out", str(ws.parent / "merged-quiet"),
                  code=SIMULATED_PEFT_WARNING)
    assert_quiet(proc)
    assert proc.stdout.startswith("merged r1 into ")
    loud = studio(ws.parent, "-w", str(ws), "--verbose", "merge", "r1", "--out", str(ws.parent / "merged-loud"),
                  code=SIMULATED_PEFT_WARNING)
    assert loud.returncode == 0, loud.stderr[-3000:]
    # the same run, shown: the test sees these lines when they are printed
    assert "Loading weights" in loud.stderr and "FutureWarning" in loud.stderr, loud.stderr[-3000:]


def test_foreground_training_prints_step_lines_not_the_trainers_dicts(ws):
    proc = studio(ws.parent, "-w", str(ws), "train", "v1", *TINY_TRAIN, "--foreground", "--name", "fg")
    assert_quiet(proc)
    lines = proc.stdout.splitlines()
    assert any(ln.startswith("step 1  loss ") for ln in lines), proc.stdout
    assert any(ln.startswith("step 2  eval_loss ") for ln in lines), proc.stdout
    assert lines[-1].startswith("fg: done at step 2/2, eval_loss "), proc.stdout


def test_sweep_is_quiet(ws):
    proc = studio(ws.parent, "-w", str(ws), "sweep", "v1", *TINY_TRAIN, "--r", "4,8", "--name", "sw")
    assert_quiet(proc)
    assert "* best by final eval loss: sw-r" in proc.stdout


def test_pipeline_is_quiet(ws):
    folder = ws.parent / "domain"
    folder.mkdir()
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"text": f"The contract clause {i} binds the party."})
                                                 + "\n" for i in range(8)))
    spec = {"name": "legal", "base": "tiny", "preset": "tiny-demo",
            "set": {"train.max_steps": 1, "train.eval_steps": 1, "train.save_steps": 1},
            "stages": [{"name": "pretrain", "split": "corpus.jsonl", "set": {"data.kind": "text"}},
                       {"name": "sft", "split": "v1"}]}
    (folder / "legal.yaml").write_text(yaml.safe_dump(spec))
    proc = studio(ws.parent, "-w", str(ws), "pipeline", str(folder / "legal.yaml"))
    assert_quiet(proc)
    assert "stage 2 legal-2-sft: done" in proc.stdout


def test_remote_commands_hide_asyncssh_deprecation_warnings(tmp_path):
    pytest.importorskip("asyncssh")
    import socket

    with socket.socket() as s:  # a port nothing listens on: the command imports asyncssh, then fails to connect
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    known = tmp_path / "known_hosts"
    known.write_text("")
    args = ["remote", "check", f"nobody@127.0.0.1:{port}", "--known-hosts", str(known)]
    proc = studio(tmp_path, "-w", str(tmp_path / "ws"), *args, timeout=60)
    assert_quiet(proc, rc=2)
    assert "cannot connect" in proc.stderr and "CryptographyDeprecationWarning" not in proc.stderr
    loud = studio(tmp_path, "-w", str(tmp_path / "ws"), "--verbose", *args, timeout=60)
    assert "CryptographyDeprecationWarning" in loud.stderr, loud.stderr[-3000:]


def test_library_logs_go_to_the_log_file_not_the_terminal(tmp_path):
    log = tmp_path / "train.log"
    code = ("import logging; from training.quiet import quiet_libraries; "
            f"quiet_libraries(log_file={str(log)!r}); "
            "from transformers.utils import logging as hf; hf.get_logger('transformers.x').warning('from transformers'); "
            "logging.getLogger('trl.trainer').warning('from trl'); logging.getLogger('peft').info('peft info'); "
            "logging.getLogger('training.speed').warning('the studio says')")
    proc = studio(tmp_path, code=code)
    assert proc.returncode == 0, proc.stderr
    text = log.read_text()
    assert "WARNING transformers.x: from transformers" in text and "WARNING trl.trainer: from trl" in text
    assert "peft info" not in text
    assert proc.stderr.strip() == "the studio says"  # the studio's own loggers still reach the terminal


def test_a_library_log_whose_folder_is_gone_loses_the_line_not_the_caller(tmp_path):
    """quiet_libraries(log_file=...) leaves its handler on the libraries' loggers; when that run's
    folder is gone (an in-process run whose tmpfs was unmounted, CI), a later library warning
    raised FileNotFoundError into the code that logged it."""
    import logging

    from training import quiet

    gone = tmp_path / "run"
    gone.mkdir()
    try:
        quiet.quiet_libraries(log_file=gone / "train.log")
        gone.rmdir()
        logging.getLogger("transformers").warning("a warning after the run's folder went away")
    finally:
        quiet._restore()  # other tests see the libraries as they were (and STUDIO_VERBOSE unset)
