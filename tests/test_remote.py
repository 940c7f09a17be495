"""Training on a GPU box over SSH, against a real OpenSSH server on 127.0.0.1 (tests/sshd.py).

The "remote" is this machine: the remote Python is this venv's, the studio's remote folder is a tmp
dir. Stories: check the box; refuse unknown and changed host keys; upload content-addressed
(skip, resume, verify); launch a tiny CPU training detached, kill the streaming client mid-run,
see the run go on, reattach and get the exact remote file; fetch the adapter; cancel a run.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.sshd import sshd  # noqa: F401  (fixture)

pytestmark = pytest.mark.ssh


@pytest.fixture
def host_env(sshd, tmp_path, monkeypatch):  # noqa: F811
    """The settings a user would put in the environment for this box."""
    root = tmp_path / "remote-root"
    monkeypatch.setenv("STUDIO_KNOWN_HOSTS", str(sshd.known_hosts))
    monkeypatch.setenv("STUDIO_SSH_IDENTITY", str(sshd.client_key))
    monkeypatch.setenv("STUDIO_REMOTE_PYTHON", sys.executable)
    monkeypatch.setenv("STUDIO_REMOTE_ROOT", str(root))
    ssh_config = tmp_path / "ssh_config"   # keeps the user's ~/.ssh/config out of the tests
    ssh_config.write_text("")
    monkeypatch.setenv("STUDIO_SSH_CONFIG", str(ssh_config))
    yield root
    for pid_file in root.glob("runs/*/remote.pid"):   # no trainer outlives its test
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def studio(*args: str) -> int:
    from studio.cli import main

    return main(list(args))


# ---------------------------------------------------------------- check and host keys

def test_remote_check_reports_python_torch_gpus_and_disk(sshd, host_env, capsys):  # noqa: F811
    code = studio("remote", "check", sshd.target, "--json")
    info = json.loads(capsys.readouterr().out)
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    import torch

    assert info["torch"] == torch.__version__
    assert info["cuda_available"] is False
    assert info["disk"]["free_gb"] > 0 and info["root"] == str(host_env)
    assert info["deps"]["trl"] and info["deps"]["peft"]
    # no GPU here: the check says so, with what to look at, and exits 1
    assert code == 1 and any("no CUDA GPU" in p for p in info["problems"])

    studio("remote", "check", sshd.target)
    text = capsys.readouterr().out
    assert "torch      " + torch.__version__ in text and "GB free" in text and "gpus       none" in text


def test_remote_check_names_the_install_command_when_torch_is_missing(sshd, host_env, tmp_path, capsys):  # noqa: F811
    # a bare python without the ML libraries: the system interpreter with site-packages disabled
    bare = tmp_path / "bare-python"
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    bare.chmod(0o755)
    code = studio("remote", "check", sshd.target, "--python", str(bare))
    text = capsys.readouterr().out
    assert code == 1
    assert "torch      missing" in text
    assert f"{bare} -m pip install 'torch>=2.4'" in text and "'peft>=0.17'" in text


def test_unknown_host_is_refused_with_the_fingerprint_and_the_fix(sshd, host_env, tmp_path, capsys):  # noqa: F811
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    code = studio("remote", "check", sshd.target, "--known-hosts", str(empty))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"unknown host [127.0.0.1]:{sshd.port}" in err and "never trusts a host key" in err
    assert "SHA256:" in err and f"ssh -p {sshd.port}" in err
    assert not (host_env / "lib").exists()   # nothing happened on the box


def test_changed_host_key_is_refused(sshd, host_env, tmp_path, capsys):  # noqa: F811
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong = tmp_path / "known_hosts_wrong"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {other.with_suffix('.pub').read_text()}")
    code = studio("remote", "check", sshd.target, "--known-hosts", str(wrong))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "HOST KEY CHANGED" in err and f"ssh-keygen -f {wrong} -R '[127.0.0.1]:{sshd.port}'" in err
    real_fp = _fingerprint(sshd.host_key_pub)
    assert real_fp in err


def _fingerprint(pub: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)], capture_output=True, text=True, check=True)
    return out.stdout.split()[1]


def test_wrong_user_key_says_login_refused(sshd, host_env, tmp_path, capsys):  # noqa: F811
    other = tmp_path / "not_authorized"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    code = studio("remote", "check", sshd.target, "--identity", str(other))
    err = capsys.readouterr().err
    assert code == 2 and "login refused" in err and f"ssh-copy-id -p {sshd.port}" in err


# ---------------------------------------------------------------- content-addressed uploads

async def test_upload_skips_known_blobs_and_resumes_a_partial_one(sshd, host_env, tmp_path, monkeypatch):  # noqa: F811
    from training.remote import open_remote, parse_host, put_blob, transfer

    monkeypatch.setattr(transfer, "CHUNK", 64 << 10)
    data = os.urandom(300 << 10)
    src = tmp_path / "train.jsonl"
    src.write_bytes(data)
    spec = parse_host(sshd.target)

    class Cut(Exception):
        pass

    def cut_after_two_chunks(done: int, total: int) -> None:
        if done >= 128 << 10:
            raise Cut

    async with open_remote(spec) as remote:
        with pytest.raises(Cut):
            await put_blob(remote, src, on_progress=cut_after_two_chunks)
    sha = transfer.file_sha256(src)
    part = host_env / "blobs" / f"{sha}.part"
    assert part.stat().st_size == 128 << 10 and not (host_env / "blobs" / sha).exists()

    async with open_remote(spec) as remote:   # a new connection, as after a real drop
        resumed = await put_blob(remote, src)
        assert (resumed.resumed_from, resumed.sent) == (128 << 10, len(data) - (128 << 10))
        assert (host_env / "blobs" / sha).read_bytes() == data and not part.exists()
        again = await put_blob(remote, src)
        assert again.skipped and again.sent == 0

        # a corrupted partial (other bytes than the file's prefix) is caught by the remote hash
        part.write_bytes(b"x" * (100 << 10))
        (host_env / "blobs" / sha).unlink()
        from training.remote import RemoteError

        with pytest.raises(RemoteError, match="arrived corrupted"):
            await put_blob(remote, src)
        assert not part.exists()
        fresh = await put_blob(remote, src)
        assert fresh.resumed_from == 0 and (host_env / "blobs" / sha).read_bytes() == data


# ---------------------------------------------------------------- a real tiny training over SSH

def _split(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rows = [{"messages": [{"role": "user", "content": f"question {i}: what is {i} plus {i}?"},
                          {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}]} for i in range(40)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "val.jsonl").write_text("")
    return folder


def _local_run(ws: Path, split: Path, name: str, target: str, **train) -> Path:
    from training.config import load_config
    from training.runs import create_run

    overrides = {"data.split": str(split), "train.save_steps": 1000, "train.eval_steps": 1000, **train}
    cfg = load_config(preset="tiny-demo", overrides=overrides)
    return create_run(ws / "runs", cfg, name=name, host=target)


def _metric_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_remote_run_survives_the_client_and_reattaches_without_gap(sshd, host_env, tmp_path, capsys):  # noqa: F811
    from training.remote import read_remote

    ws = tmp_path / "ws"
    split = _split(tmp_path / "split")
    sets = ["--set", "train.max_steps=40", "--set", "debug.step_sleep_s=0.1", "--set", "train.save_steps=1000",
            "--set", "train.eval_steps=1000"]
    assert studio("train", str(split), "-w", str(ws), "--preset", "tiny-demo", *sets, "--name", "r1",
                  "--host", sshd.target, "--detach") == 0
    text = capsys.readouterr().out
    assert "split/train.jsonl" in text and "sent" in text and "runs detached" in text
    run_dir = ws / "runs" / "r1"
    run = read_remote(run_dir)
    remote_dir = host_env / "runs" / "r1"
    assert run.remote_dir == str(remote_dir) and run.pid
    assert (remote_dir / "split" / "train.jsonl").resolve().parent == host_env / "blobs"
    remote_config = (remote_dir / "config.yaml").read_text()
    assert remote_config.startswith("# reproduce:") and f"split: {remote_dir / 'split'}" in remote_config

    # the streaming client, as a user runs it; killed hard once a few steps arrived
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    client = subprocess.Popen([sys.executable, "-m", "studio.cli", "attach", "r1", "-w", str(ws)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    local_metrics = run_dir / "metrics.jsonl"
    try:
        _wait(lambda: _metric_lines(local_metrics) >= 4, 120, "the first metrics lines in the mirror")
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait()
    cut_at = local_metrics.stat().st_size
    assert local_metrics.read_bytes() == (remote_dir / "metrics.jsonl").read_bytes()[:cut_at]

    # the run goes on without any client
    os.kill(run.pid, 0)
    _wait(lambda: (remote_dir / "metrics.jsonl").stat().st_size > cut_at + 200, 60, "the remote run to keep writing")
    assert local_metrics.stat().st_size == cut_at

    assert studio("runs", "--host", sshd.target) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[1].split()[:2] == ["r1", "running"]

    # reattach: resumes from the mirror's size and follows to the end
    assert studio("attach", "r1", "-w", str(ws)) == 0
    printed = capsys.readouterr().out
    assert local_metrics.read_bytes() == (remote_dir / "metrics.jsonl").read_bytes()
    points = [json.loads(line) for line in local_metrics.read_text().splitlines()]
    steps = [p["step"] for p in points if "loss" in p]
    assert steps == list(range(1, 41))
    first_printed = int(printed.split("step ", 1)[1].split()[0])
    assert 4 <= first_printed < 40 and "step 40 " in printed   # only what the mirror lacked
    assert json.loads((run_dir / "status.json").read_text())["state"] == "done"

    assert studio("fetch", "r1", "-w", str(ws)) == 0
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (run_dir / "adapter" / name).read_bytes() == (remote_dir / "adapter" / name).read_bytes()
    capsys.readouterr()
    # the fetched run is whole here: `runs` knows its method and base, and chat loads it
    assert studio("runs", "-w", str(ws)) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("r1 "))
    assert "?" not in row and " lora " in row and " tiny " in row, row
    assert studio("chat", "r1", "-w", str(ws), "--prompt", "hi", "--max-new-tokens", "2", "--temperature", "0",
                  "--no-base") == 0
    assert capsys.readouterr().out.strip()

    # a second run of the same split sends no data again
    assert studio("train", str(split), "-w", str(ws), "--preset", "tiny-demo", "--set", "train.max_steps=1",
                  "--name", "r2", "--host", sshd.target, "--detach") == 0
    text = capsys.readouterr().out
    assert text.count("already there") == 2 and " sent " not in text


def test_cancel_a_remote_run(sshd, host_env, tmp_path, capsys):  # noqa: F811
    from training.remote import launch_remote, remote_status, stream_metrics

    ws = tmp_path / "ws"
    run_dir = _local_run(ws, _split(tmp_path / "split"), "c1", sshd.target,
                         **{"train.max_steps": 500, "debug.step_sleep_s": 0.2})
    run = asyncio.run(launch_remote(run_dir, sshd.target))

    # the Train screen's way to watch: rows to a callback until its stop event is set
    async def watch():
        stop, rows = asyncio.Event(), []

        def on_lines(batch):
            rows.extend(batch)
            if sum("loss" in r for r in rows) >= 3:
                stop.set()

        return await stream_metrics(run_dir, on_lines=on_lines, stop=stop, poll_s=0.2), rows

    result, rows = asyncio.run(asyncio.wait_for(watch(), 120))
    assert result.state == "running" and result.lines == len(rows)
    assert [r["step"] for r in rows if "loss" in r][:3] == [1, 2, 3]
    remote_dir = host_env / "runs" / "c1"
    local = (run_dir / "metrics.jsonl").read_bytes()
    assert len(local) == result.offset and (remote_dir / "metrics.jsonl").read_bytes().startswith(local)
    assert studio("cancel", "c1", "-w", str(ws)) == 0
    assert "c1: cancelled" in capsys.readouterr().out
    after = asyncio.run(remote_status(run_dir))
    assert after["state"] == "cancelled" and after["pid"] == run.pid and not after["alive"]
    assert json.loads((run_dir / "status.json").read_text())["state"] == "cancelled"
    assert after["step"] < 500


def test_a_split_folder_is_sent_with_its_subfolders(tmp_path):
    """An hf-target split keeps its DatasetDict in train/ and val/: only the top-level files were
    sent, so the run failed on the box with 'missing'."""
    from training.remote.runs import split_folder_files

    split = tmp_path / "v1"
    (split / "train").mkdir(parents=True)
    (split / ".cache").mkdir()
    for rel in ("manifest.json", "train/data-00000-of-00001.arrow", "train/state.json", ".cache/x"):
        (split / rel).write_text("{}")
    assert [rel for rel, _ in split_folder_files(split)] == [
        "split/manifest.json", "split/train/data-00000-of-00001.arrow", "split/train/state.json"]
