"""One typed way to plan and start a training run. `studio train` and the Train screen both call it,
so the screen can do nothing the command line cannot, and both write the same config.yaml.

A `RunRequest` is what the user asked for: the split, base, method, preset, a config file, config
overrides as dotted keys with typed values (`{"lora.r": 16}`), and the host (`HostSpec`, an SSH
host for training.remote, or None: this machine). `plan_run` builds the config and its plan
(memory, lengths, EOS check, steps; with this machine's device, a refusal and a rough time).
`start_run` checks, creates the run directory and starts it detached, here or on the host.

Errors a user can fix raise TrainingError (ConfigError, DataError, SplitNotFound, RemoteError);
the studio turns them into one message where it catches them (the CLI's main, the app's workers).
"""
from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .config import TrainConfig, load_config
from .errors import SplitNotFound, TrainingError

if TYPE_CHECKING:
    from .remote.hosts import HostSpec
    from .remote.runs import RemoteRun
    from .remote.transfer import BlobUpload


@dataclass(frozen=True)
class RunRequest:
    """A run as asked for; layered as defaults < preset < config_file < overrides < base/method/oom_retry."""

    split: Path
    """The split directory or data file (`resolve_split` finds a name under WORKSPACE/splits)."""
    base: str | None = None
    method: str | None = None
    preset: str | None = None
    config_file: Path | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """Dotted config keys to typed values: {"lora.r": 16, "train.learning_rate": 2e-4}."""
    oom_retry: bool = False
    name: str | None = None
    """The run id; None: time-base-method (training.runs.new_run_id)."""
    host: "HostSpec | None" = None
    """Where it trains: an SSH host (training.remote), or None for this machine."""
    reproduce: str | None = None
    """config.yaml's first line, the command that makes this run again ({config}: its path)."""

    def layers(self) -> dict[str, Any]:
        """The overrides with the request's own fields last (they win, as the flags do)."""
        changes = {**self.overrides, "data.split": str(self.split)}
        if self.base:
            changes["base"] = self.base
        if self.method:
            changes["method"] = self.method
        if self.oom_retry:
            changes["oom_retry"] = True
        return changes


@dataclass(frozen=True)
class RunPlan:
    """What `plan_run` found: the config, training.plan.make_plan's plan and, when asked for this
    machine's device, the device, why the run would be refused here (None: it can start) and a rough time."""

    request: RunRequest
    config: TrainConfig
    plan: dict[str, Any]
    device: dict[str, Any] | None = None
    refusal: str | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class StartedRun:
    run_dir: Path
    pid: int | None
    """The training process here, or on the host for a remote run."""
    remote: "RemoteRun | None" = None
    """Where a run on an SSH host lives (its local run_dir is the mirror)."""


def resolve_split(ref: str | None, splits_dir: Path) -> Path:
    """A split by path, or by name under `splits_dir` (WORKSPACE/splits)."""
    if not ref:
        raise SplitNotFound("name a split: studio train SPLIT (a name in WORKSPACE/splits or a path)")
    p = Path(ref)
    if p.exists():
        return p.resolve()
    named = splits_dir / ref
    if named.is_dir():
        return named.resolve()
    raise SplitNotFound(f"split {ref!r} not found: neither a path nor {named}; create one with: studio export {ref}")


def reproduce_line(split_ref: str, *, workspace: str | Path | None = None, host: str | None = None) -> str:
    """`studio [-w WS] train SPLIT --config {config} [--host HOST]`, the run's config.yaml first line."""
    ws = f" -w {shlex.quote(str(workspace))}" if workspace else ""
    line = f"studio{ws} train {shlex.quote(split_ref)} --config {{config}}"
    return line + (f" --host {shlex.quote(host)}" if host else "")


def run_config(request: RunRequest, *, require_base: bool = True) -> TrainConfig:
    """The request's validated config (ConfigError names the layer, line and field)."""
    return load_config(request.config_file, preset=request.preset, overrides=request.layers(),
                       require_base=require_base)


def plan_run(request: RunRequest, *, with_device: bool = False, gpu_mem_gb: float | None = None,
             params_b: float | None = None, shape: dict[str, int] | None = None) -> RunPlan:
    """The plan of the request's run. `with_device` (a run on this machine): read the device, plan for
    its memory, and fill `refusal` (training.plan.launch_refusal, or the plan's first problem) and `seconds`."""
    from . import plan as planning
    from .extras import require_train

    require_train()  # the plan tokenises the split
    cfg = run_config(request)
    device = planning.local_device() if with_device and request.host is None else None
    if gpu_mem_gb is None and device is not None and device["kind"] == "cuda":
        gpu_mem_gb = device["memory_gb"]
    plan = planning.make_plan(cfg, gpu_mem_gb=gpu_mem_gb, params_b=params_b, shape_overrides=shape)
    if device is None:
        return RunPlan(request, cfg, plan)
    refusal = planning.launch_refusal(plan, device) or (plan.get("problems") or [None])[0]
    return RunPlan(request, cfg, plan, device, refusal, planning.estimate_time(plan, device))


def unworkable(cfg: TrainConfig) -> str | None:
    """Why this machine cannot train `cfg` in reasonable time or memory (training.plan.launch_refusal: a
    base above 1.5B parameters on a CPU, more memory than the machine or card has), or None. A small
    base skips the device check (and torch's import); an unknown shape cannot be judged here."""
    from .errors import ConfigError
    from .plan import CPU_MAX_PARAMS_B, launch_refusal, local_device, memory_plan

    try:
        plan = memory_plan(cfg)
    except ConfigError:
        return None
    if plan["params_b"] <= CPU_MAX_PARAMS_B and plan["memory_gb"][cfg.method]["total_gb"] <= 4:
        return None
    return launch_refusal(plan, local_device())


def new_run(request: RunRequest, runs_dir: Path, *, planned: RunPlan | None = None, force: bool = False) -> Path:
    """Check the run and create its directory (config.yaml, status `queued`); start nothing.

    With `planned` (a plan_run with the device, which the user saw) its config and refusal are used;
    else the config is built and checked here: refused when this machine cannot train it (a local run
    without `force`), then training.plan.preflight (LoRA targets, attention package, empty split, lengths)."""
    from .extras import require_train

    require_train()
    if planned is not None:
        if planned.refusal and not force:
            raise TrainingError(f"refused: {planned.refusal}")
        cfg = planned.config
    else:
        from .plan import preflight

        cfg = run_config(request)
        local = request.host is None
        reason = unworkable(cfg) if local and not force else None  # before preflight: cheaper, says more
        if reason:
            raise TrainingError(f"refused: {reason} (--force starts it anyway)")
        preflight(cfg, local=local)
    from .runs import create_run

    return create_run(runs_dir, cfg, name=request.name, reproduce=request.reproduce,
                      host=request.host.target if request.host is not None else None)


def start_run(request: RunRequest, runs_dir: Path, *, planned: RunPlan | None = None, force: bool = False,
              on_upload: Callable[[str, "BlobUpload"], None] | None = None) -> StartedRun:
    """`new_run`, then `launch_run`: the run checked, created and started detached."""
    run_dir = new_run(request, runs_dir, planned=planned, force=force)
    return launch_run(run_dir, request.host, on_upload=on_upload)


def launch_run(run_dir: Path, host: "HostSpec | None" = None, *,
               on_upload: Callable[[str, "BlobUpload"], None] | None = None) -> StartedRun:
    """Start a created run detached: here (`training.runs.launch`; it goes on when the caller exits)
    or on `host` (upload, start there, run_dir becomes its mirror; `on_upload` reports each file).
    Blocks for the upload: call it from a thread, not from a running event loop."""
    if host is None:
        from .runs import launch

        return StartedRun(run_dir, launch(run_dir))
    import asyncio

    from .remote.runs import launch_remote

    remote = asyncio.run(launch_remote(run_dir, host, on_upload=on_upload))
    return StartedRun(run_dir, remote.pid, remote)
