"""What the remote commands share: host options, running a coroutine with clean errors, and the
terminal view of a mirrored metrics stream. `studio train --host` calls `launch_and_follow`."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from curation.errors import NotFound

from ._command import Args, option
from ._common import out, workspace_path

REMOTE_HOST = "remote host"


def host_options(fn: Callable) -> Callable:
    """The SSH options, in their own section of the help (read by `host_spec`)."""
    for decls, kw in reversed([
        (("--python",), dict(metavar="PATH", help="the remote interpreter that has torch "
                                                  "(default $STUDIO_REMOTE_PYTHON, else python3)")),
        (("--remote-root",), dict(metavar="DIR", help="the studio's folder on the remote "
                                                      "(default $STUDIO_REMOTE_ROOT, else ~/.finetune-studio)")),
        (("--known-hosts",), dict(metavar="FILE", help="known_hosts file to check the host key against "
                                                       "(default $STUDIO_KNOWN_HOSTS, else ~/.ssh/known_hosts)")),
        (("--identity", "-i"), dict(metavar="KEY", help="private key file (default: ~/.ssh/config, the agent, "
                                                        "~/.ssh/id_*)")),
    ]):
        fn = option(*decls, section=REMOTE_HOST, **kw)(fn)
    return fn


def quiet(args: Args) -> None:
    """asyncssh's deprecation warnings (and other library noise) off the terminal unless --verbose
    (training/quiet.py); every remote command passes here before asyncssh is imported."""
    from training.quiet import quiet_libraries

    quiet_libraries(verbose=args.verbose)


def host_spec(args: Args, host: str | None = None):
    from training.remote import parse_host

    quiet(args)
    return parse_host(host or args.host, python=args.python, root=args.remote_root, known_hosts=args.known_hosts,
                      identity=args.identity)


def run_async(coro) -> Any:
    return asyncio.run(coro)


def run_dir_of(args: Args, run: str) -> Path:
    """RUN is a run id under WORKSPACE/runs/ or a path to a run directory."""
    quiet(args)
    path = Path(run)
    if path.is_dir() and (path / "config.yaml").exists():
        return path
    candidate = workspace_path(args) / "runs" / run
    if not candidate.is_dir():
        raise NotFound(f"run {run!r} not found in {candidate.parent}; `studio runs` lists runs")
    return candidate


def format_row(row: dict[str, Any], max_steps: int | None = None) -> str:
    parts = []
    if "step" in row:
        parts.append(f"step {row['step']}" + (f"/{max_steps}" if max_steps else ""))
    for key, label, fmt in (("loss", "loss", ".4f"), ("eval_loss", "eval_loss", ".4f"),
                            ("learning_rate", "lr", ".2e"), ("grad_norm", "grad", ".3f"),
                            ("tokens_per_s", "tok/s", ",.0f")):
        value = row.get(key)
        if isinstance(value, (int, float)):
            parts.append(f"{label} {value:{fmt}}")
    return "  ".join(parts)


def print_rows(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        text = format_row(row)
        if text:
            out(text)


def follow_in_terminal(run_dir: Path, *, quiet: bool = False) -> int:
    """Mirror and print until the run ends. Ctrl-C detaches (the run goes on); a dropped
    connection says how to resume. Exit status: 0 done, 1 failed/cancelled, 130 detached."""
    from training.remote import require_remote, stream_metrics

    remote = require_remote(run_dir)
    try:
        result = run_async(stream_metrics(run_dir, on_lines=None if quiet else print_rows))
    except KeyboardInterrupt:
        out(f"detached: {run_dir.name} goes on at {remote.host.target}; `studio attach {run_dir.name}` resumes")
        return 130
    out(f"{run_dir.name}: {result.state} ({result.offset} bytes of metrics mirrored in {run_dir})")
    return 0 if result.state == "done" else 1


def launch_and_follow(request, runs_dir: Path, *, detach: bool = False, force: bool = False) -> int:
    """`studio train ... --host HOST` (`request`: its training.launch.RunRequest): check, create,
    upload, start detached, then follow unless --detach."""
    from training.launch import launch_run, new_run

    spec = request.host
    run_dir = new_run(request, runs_dir, force=force)

    def report(rel: str, blob) -> None:
        how = "already there" if blob.skipped else (f"resumed at {blob.resumed_from:,} B" if blob.resumed_from else "sent")
        out(f"  {rel}: {blob.size:,} B, {how} (sha256 {blob.sha256[:12]})")

    out(f"uploading to {spec.target} ...")
    run = launch_run(run_dir, spec, on_upload=report).remote
    out(f"started {run.run_id} on {spec.target}:{run.remote_dir} (pid {run.pid}); it runs detached")
    if detach:
        out(f"`studio attach {run.run_id}` follows it")
        return 0
    return follow_in_terminal(run_dir)


def print_remote_runs(args: Args) -> int:
    """`studio runs --host HOST`: the runs in the studio's folder on that box."""
    from training.remote import list_remote_runs

    spec = host_spec(args)
    rows = run_async(list_remote_runs(spec))
    if args.json:
        from ._common import out_json

        out_json([{k: v for k, v in r.items() if k != "status"} for r in rows])
        return 0
    if not rows:
        out(f"no runs on {spec.target} yet; start one with: studio train SPLIT --host {spec.target}")
        return 0
    out(f"{'id':<40} {'state':<10} {'step':>11} {'loss':>8}  {'pid':>8}  adapter")
    for r in rows:
        step = f"{r['step'] or 0}/{r['max_steps'] or '?'}"
        loss = f"{r['loss']:.4f}" if isinstance(r["loss"], (int, float)) else "-"
        pid = (f"{r['pid']}" + ("" if r["alive"] else " gone")) if r["pid"] else "-"
        out(f"{r['run_id']:<40} {r['state']:<10} {step:>11} {loss:>8}  {pid:>8}  {'yes' if r['has_adapter'] else '-'}")
    return 0


def cancel_if_remote(args: Args, run_dir: Path):
    """`studio cancel RUN` for a run started with --host: SIGTERM on the box, mirror refreshed; the
    mirror's training.rundir.RunStatus with the agent's state and its report as `remote`. None when
    RUN is a local run."""
    from training.remote import cancel_remote, read_remote
    from training.remote.stream import LOST
    from training.rundir import RunState, read_status

    quiet(args)
    if read_remote(run_dir) is None:
        return None
    report = run_async(cancel_remote(run_dir))
    status = read_status(run_dir)
    state = RunState.of(report.get("state"))  # the agent's `lost` (no process, no final state) is failed
    state = state or (RunState.FAILED if report.get("state") == LOST else status.state)
    return status.with_changes(state=state, remote=report)
