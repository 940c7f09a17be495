"""Remote runs: launch detached on a GPU box, follow, list, cancel, fetch; the local mirror.

A remote run has a local mirror, `WORKSPACE/runs/RUN_ID/`, shaped like any run directory
(config.yaml, status.json, metrics.jsonl, later adapter/) plus `remote.json`, which says where the
real run lives (host settings, remote path, pid). Everything the studio shows comes from the
mirror; these functions keep it up to date. All are coroutines, usable from a Textual worker.
"""
from __future__ import annotations

import asyncio
import json
import os
import posixpath
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from ..rundir import REMOTE_JSON
from .errors import RemoteError
from .hosts import HostSpec, parse_host
from .session import Remote, open_remote
from .stream import StreamResult, follow, poll_once
from .transfer import BlobUpload, ensure_trainer, file_sha256, put_blob


@dataclass(frozen=True)
class RemoteRun:
    """Where a mirrored run really lives."""

    run_id: str
    local_dir: Path
    remote_dir: str
    host: HostSpec
    pid: int | None = None


def _as_spec(host: HostSpec | str) -> HostSpec:
    return host if isinstance(host, HostSpec) else parse_host(host)


def read_remote(run_dir: str | Path) -> RemoteRun | None:
    """The mirror's remote.json, or None for a local run."""
    path = Path(run_dir) / REMOTE_JSON
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return RemoteRun(data["run_id"], Path(run_dir), data["remote_dir"], HostSpec.from_json(data["host"]), data.get("pid"))


def require_remote(run_dir: str | Path) -> RemoteRun:
    run = read_remote(run_dir)
    if run is None:
        raise RemoteError(f"{run_dir} is a local run (no {REMOTE_JSON}); attach and fetch are for runs started with --host")
    return run


def _write_remote_json(run: RemoteRun, extra: dict[str, Any]) -> None:
    data = {"run_id": run.run_id, "remote_dir": run.remote_dir, "host": run.host.to_json(), "pid": run.pid, **extra}
    tmp = run.local_dir / (REMOTE_JSON + ".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, run.local_dir / REMOTE_JSON)


def _local_path(value: str, run_dir: Path) -> Path:
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    return (run_dir / p) if (run_dir / p).exists() else Path.cwd() / p


def _config_with(text: str, changes: dict[str, str]) -> str:
    """config.yaml with dotted keys replaced; the leading comment lines (the reproduce command)
    are kept."""
    head = []
    for line in text.splitlines(keepends=True):
        if line.startswith("#"):
            head.append(line)
        else:
            break
    data = yaml.safe_load(text) or {}
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return "".join(head) + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


async def _upload_tree(remote: Remote, files: list[tuple[str, Path]], on_upload) -> dict[str, str]:
    links = {}
    for rel, path in files:
        blob = await put_blob(remote, path, sha256=file_sha256(path))
        if on_upload:
            on_upload(rel, blob)
        links[rel] = blob.remote_path
    return links


def split_folder_files(split: Path) -> list[tuple[str, Path]]:
    """(remote relative path, local file) for every file of a split folder, subfolders included
    (an `hf` split keeps its DatasetDict in train/ and val/), hidden ones left out."""
    files = []
    for f in sorted(split.rglob("*")):
        rel = f.relative_to(split)
        if f.is_file() and not any(part.startswith(".") for part in rel.parts):
            files.append((f"split/{rel.as_posix()}", f))
    return files


async def launch_remote(run_dir: str | Path, host: HostSpec | str, *,
                        env: dict[str, str] | None = None,
                        on_upload: Callable[[str, BlobUpload], None] | None = None) -> RemoteRun:
    """Start the run whose config.yaml is in the local `run_dir` on `host`, detached.

    Sends the split (and a local base-model folder) as content-addressed blobs, the trainer code,
    and the config with its paths rewritten to the remote copies; lays out ROOT/runs/RUN_ID there
    with links to the blobs; starts `python -m training run` in its own session so it survives
    the connection; writes `remote.json` into `run_dir`, which becomes the local mirror.
    `on_upload(relative_path, BlobUpload)` reports each file (sent bytes, or skipped)."""
    spec = _as_spec(host)
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise RemoteError(f"{config_path} does not exist: not a run directory")
    text = config_path.read_text(encoding="utf-8")
    config = yaml.safe_load(text) or {}
    split_value = str((config.get("data") or {}).get("split") or "")
    if not split_value:
        raise RemoteError(f"{config_path}: data.split is empty; name the split to train on")
    split = _local_path(split_value, run_dir)
    if split.is_dir():
        split_files = split_folder_files(split)
        split_remote_rel = "split"
    elif split.is_file():
        split_files = [(f"split/{split.name}", split)]
        split_remote_rel = f"split/{split.name}"
    else:
        raise RemoteError(f"{config_path}: data.split: {split} does not exist here, so it cannot be sent to {spec.target}")
    base = str(config.get("base") or "")
    base_files: list[tuple[str, Path]] = []
    if base and Path(base).expanduser().is_dir():
        root = Path(base).expanduser()
        base_files = [(f"base/{f.relative_to(root).as_posix()}", f) for f in sorted(root.rglob("*")) if f.is_file()]

    run_id = run_dir.name
    async with open_remote(spec) as remote:
        lib = await ensure_trainer(remote)
        remote_dir = remote.run_dir(run_id)
        existing = await remote.agent("status", {"run_dir": remote_dir})
        if existing["alive"]:
            raise RemoteError(f"{spec.target}:{remote_dir} is already running (pid {existing['pid']}); "
                              f"`studio attach {run_id}` follows it")
        links = await _upload_tree(remote, split_files + base_files, on_upload)
        changes = {"data.split": posixpath.join(remote_dir, split_remote_rel)}
        if base_files:
            changes["base"] = posixpath.join(remote_dir, "base")
        await remote.agent("layout", {"run_dir": remote_dir, "links": links,
                                      "files": {"config.yaml": _config_with(text, changes)}})
        started = await remote.agent("start", {"run_dir": remote_dir, "pythonpath": [lib], "env": env or {},
                                               "module_args": ["-m", "training", "run", remote_dir]})
    run = RemoteRun(run_id, run_dir, remote_dir, spec, started["pid"])
    _write_remote_json(run, {"trainer": lib, "launched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return run


async def stream_metrics(run_dir: str | Path, *,
                         on_lines: Callable[[list[dict[str, Any]]], Any] | None = None,
                         stop: asyncio.Event | None = None, poll_s: float = 0.5,
                         until_done: bool = True) -> StreamResult:
    """Mirror the remote metrics.jsonl into `run_dir` from the mirror's size on, calling
    `on_lines(rows)` with each batch of new complete rows, until the run ends or `stop` is set.
    Raises ConnectionLostError if the connection drops (call again to resume: nothing is lost)."""
    run = require_remote(run_dir)
    async with open_remote(run.host) as remote:
        return await follow(remote, run.remote_dir, run.local_dir, on_lines=on_lines, stop=stop,
                            poll_s=poll_s, until_done=until_done)


async def list_remote_runs(host: HostSpec | str) -> list[dict[str, Any]]:
    """Every run under the host's studio folder: run_id, state (`lost`: the process died without
    a final state), pid, alive, step, max_steps, loss, metrics_bytes, has_adapter."""
    async with open_remote(_as_spec(host)) as remote:
        return (await remote.agent("runs", {"root": remote.root}))["runs"]


async def remote_status(run_dir: str | Path) -> dict[str, Any]:
    run = require_remote(run_dir)
    async with open_remote(run.host) as remote:
        return await remote.agent("status", {"run_dir": run.remote_dir})


async def cancel_remote(run_dir: str | Path, *, grace_s: float = 30) -> dict[str, Any]:
    """SIGTERM the remote trainer's process group (the trainer stops at the next step and writes
    state `cancelled`), SIGKILL after `grace_s`; then refresh the mirror. Returns the agent's
    report: signalled, killed, pid, state."""
    run = require_remote(run_dir)
    async with open_remote(run.host) as remote:
        report = await remote.agent("cancel", {"run_dir": run.remote_dir, "grace": grace_s}, timeout=grace_s + 30)
        await poll_once(remote, run.remote_dir, run.local_dir)
    return report


async def fetch_run(run_dir: str | Path) -> list[str]:
    """Bring the final state into the mirror: the rest of metrics.jsonl, status.json, train.log,
    and adapter/ (or model/ for full fine-tuning). A `tiny` run's base is built inside its run
    directory (RUN/base), so it comes too: without it the adapter can't be loaded here. Any other
    base stays as config.yaml names it (a registry name, hub id or this machine's folder).
    Returns the names fetched."""
    import asyncssh

    from ..config import load_run_config

    run = require_remote(run_dir)
    names = ["adapter", "model"]
    if load_run_config(run.local_dir).is_tiny:
        names.append("base")
    fetched = []
    async with open_remote(run.host) as remote:
        await poll_once(remote, run.remote_dir, run.local_dir)
        fetched += ["metrics.jsonl", "status.json"]
        for name in names:
            src = posixpath.join(run.remote_dir, name)
            if not await remote.sftp.isdir(src):
                continue
            tmp = run.local_dir / f".{name}.fetching"
            shutil.rmtree(tmp, ignore_errors=True)
            await remote.sftp.get(src, str(tmp), recurse=True, preserve=True)
            dest = run.local_dir / name
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(tmp, dest)
            fetched.append(name + "/")
        try:
            await remote.sftp.get(posixpath.join(run.remote_dir, "train.log"), str(run.local_dir / "train.log"))
            fetched.append("train.log")
        except asyncssh.SFTPNoSuchFile:
            pass
    return fetched


async def check_host(host: HostSpec | str) -> dict[str, Any]:
    """What the box has: python, the trainer (installed or uploaded), torch and CUDA, GPUs (name,
    memory), free disk in the studio's folder; `problems` lists what is missing with the fix."""
    spec = _as_spec(host)
    from .transfer import trainer_bundle

    _, sha = trainer_bundle()
    async with open_remote(spec) as remote:
        lib = posixpath.join(remote.root, "lib", sha[:16])
        info = await remote.agent("check", {"root": remote.root, "pythonpath": [lib]}, timeout=180)
        info["root"] = remote.root
        info["trainer_uploaded"] = bool(info.get("training")) and info["training"].startswith(lib)
    info["problems"] = install_hints(spec, info)
    return info


ML_REQUIREMENTS = ("torch>=2.4", "transformers>=4.56", "tokenizers>=0.21", "peft>=0.17", "trl>=0.24",
                   "accelerate>=1.10", "datasets>=3", "pyyaml>=6", "pydantic>=2", "bitsandbytes>=0.45",
                   "aiohttp>=3.9")  # `python -m training.serve` on the box


def install_hints(spec: HostSpec, info: dict[str, Any]) -> list[str]:
    """What is missing on the box, each with the exact command that fixes it."""
    problems = []
    missing = [r for r in ML_REQUIREMENTS if not _has_dep(info, r)]
    if missing:
        reqs = " ".join(f"'{r}'" for r in missing)
        problems.append(f"missing Python packages: {', '.join(r.split('>')[0] for r in missing)}; install them with "
                        f"`{spec.ssh_command()} {spec.python} -m pip install {reqs}` (torch: pick the CUDA build "
                        "for the driver, see pytorch.org)")
    if not info.get("training"):
        problems.append("the trainer is not there yet: `studio train SPLIT --host "
                        f"{spec.target}` uploads it (the training/ package as a content-addressed zip into "
                        f"{info.get('root', spec.root)}/lib/), or run `studio remote install {spec.target}` now")
    if info.get("torch") and not info.get("cuda_available"):
        problems.append("torch sees no CUDA GPU: training would run on the CPU (only the tiny model is practical); "
                        "check nvidia-smi and that torch is a CUDA build")
    return problems


def _has_dep(info: dict[str, Any], requirement: str) -> bool:
    name = requirement.split(">")[0].split("=")[0]
    deps = info.get("deps") or {}
    return bool(deps.get({"pyyaml": "PyYAML"}.get(name, name)))


async def install_trainer(host: HostSpec | str) -> str:
    """Upload this studio's trainer to the box now (launch does it too); its lib folder there."""
    async with open_remote(_as_spec(host)) as remote:
        return await ensure_trainer(remote)
