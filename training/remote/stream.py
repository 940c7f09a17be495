"""Mirror a remote run's metrics.jsonl into the local run directory, by byte offset.

The local mirror's size IS the offset: each poll reads the remote file from there, keeps only
complete lines (up to the last newline; a line the trainer is still writing waits for the next
poll) and appends them. So a dropped connection or a later `studio attach` resumes exactly where
the mirror ends: no gap, no duplicate. status.json is copied whole (it is rewritten atomically
there). The studio's chart reads the local mirror, so mirroring is the whole integration.
"""
from __future__ import annotations

import asyncio
import json
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..rundir import REMOTE_JSON, RunState, RunStatus, read_status, replace_status
from .errors import ConnectionLostError

LOST = "lost"   # the agent's word for a run whose process died without a final state (agent._run_summary)
READ_LIMIT = 8 << 20   # bytes per poll; a long backlog arrives over several polls


@dataclass
class StreamResult:
    lines: int
    """Complete metrics lines appended to the mirror by this call."""
    offset: int
    """Size of the local metrics.jsonl afterwards (= bytes of the remote file mirrored)."""
    state: str | None
    """The remote run's last known state (`lost`: its process died without a final state)."""


def mirror_offset(local_metrics: Path) -> int:
    """Bytes already mirrored. A torn last line (a crash mid-append) is cut off first, so the
    next read starts at a line boundary."""
    if not local_metrics.exists():
        return 0
    size = local_metrics.stat().st_size
    if size == 0:
        return 0
    with open(local_metrics, "rb+") as f:
        f.seek(max(0, size - 65536))
        tail = f.read()
        if tail.endswith(b"\n"):
            return size
        cut = tail.rfind(b"\n")
        keep = size - len(tail) + cut + 1 if cut >= 0 else (0 if size <= 65536 else size)
        f.truncate(keep)
        return keep


async def _read_from(sftp, path: str, offset: int) -> bytes:
    import asyncssh

    try:
        async with sftp.open(path, "rb") as f:
            return await f.read(READ_LIMIT, offset)
    except asyncssh.SFTPNoSuchFile:
        return b""


async def _remote_size(sftp, path: str) -> int | None:
    import asyncssh

    try:
        return (await sftp.stat(path)).size
    except asyncssh.SFTPNoSuchFile:
        return None


def _parse(lines: list[bytes]) -> list[dict[str, Any]]:
    rows = []
    for raw in lines:
        try:
            row = json.loads(raw)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


LOCAL_KEYS = ("base", "method", "untrained")


def ended(state: str | None) -> bool:
    """The agent's summary state says the run will change no more: final, or lost."""
    run_state = RunState.of(state)
    return state == LOST or (run_state is not None and run_state.is_final)


async def poll_once(remote, remote_dir: str, local_dir: Path,
                    on_lines: Callable[[list[dict[str, Any]]], Any] | None = None) -> tuple[int, dict[str, Any] | None]:
    """One round: append the remote's new complete lines to the mirror, refresh status.json.
    The status is read first: lines that land after it are picked up by the next round.
    Returns (lines appended, remote summary or None if the status file is missing)."""
    import asyncssh

    sftp = remote.sftp
    local_metrics = local_dir / "metrics.jsonl"
    remote_metrics = posixpath.join(remote_dir, "metrics.jsonl")
    appended = 0
    try:
        summary = await remote.agent("status", {"run_dir": remote_dir})
        generation = (summary.get("status") or {}).get("metrics_generation")
        offset = mirror_offset(local_metrics)
        size = await _remote_size(sftp, remote_metrics)
        if generation != _mirrored_generation(local_dir) or (size is not None and size < offset):
            # A resume from a checkpoint cut the remote file back (training.metrics): mirror it
            # again from byte 0, so the local copy stays an exact prefix of the remote one.
            if offset:
                local_metrics.write_bytes(b"")
                offset = 0
            _set_mirrored_generation(local_dir, generation)
        while size is not None and size > offset:
            chunk = await _read_from(sftp, remote_metrics, offset)
            end = chunk.rfind(b"\n")
            if end < 0:
                break   # the trainer is mid-line; the rest arrives next poll
            complete = chunk[: end + 1]
            with open(local_metrics, "ab") as f:
                f.write(complete)
                f.flush()
                os.fsync(f.fileno())
            offset += len(complete)
            lines = complete.split(b"\n")[:-1]
            appended += len(lines)
            if on_lines:
                result = on_lines(_parse(lines))
                if asyncio.iscoroutine(result):
                    await result
            if len(chunk) < READ_LIMIT:
                break
    except (asyncssh.ConnectionLost, asyncssh.DisconnectError, OSError) as exc:
        raise ConnectionLostError(
            f"{remote.spec.target}: the SSH connection dropped ({exc}); the run goes on there, "
            f"`studio attach {local_dir.name}` resumes from byte {mirror_offset(local_metrics)}") from None
    remote_status = summary.get("status") or None
    if remote_status:
        status = RunStatus.parse(remote_status)
        if summary["state"] == LOST:
            status = status.with_changes(state=RunState.FAILED, error=status.error or
                                         "the remote training process ended without a final state")
        # The run was created here (create_run): the mirror keeps what this machine knows of it.
        # The remote status has no base or method, and its paths name the remote copies.
        local = read_status(local_dir).to_json()
        replace_status(local_dir, status.with_changes(**{k: local[k] for k in LOCAL_KEYS if k in local}))
    return appended, summary


def _mirrored_generation(local_dir: Path) -> Any:
    try:
        return json.loads((local_dir / REMOTE_JSON).read_text(encoding="utf-8")).get("metrics_generation")
    except (OSError, ValueError):
        return None


def _set_mirrored_generation(local_dir: Path, generation: Any) -> None:
    path = local_dir / REMOTE_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    data["metrics_generation"] = generation
    _write_json_atomic(path, data)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)


async def follow(remote, remote_dir: str, local_dir: Path, *,
                 on_lines: Callable[[list[dict[str, Any]]], Any] | None = None,
                 stop: asyncio.Event | None = None, poll_s: float = 0.5, until_done: bool = True) -> StreamResult:
    """Mirror until the run reaches a final state (and every line is in), or `stop` is set."""
    total = 0
    state = None
    while True:
        appended, summary = await poll_once(remote, remote_dir, local_dir, on_lines)
        total += appended
        state = summary["state"] if summary else None
        if until_done and ended(state):
            # one more pass: lines written between the read and the status check
            appended, _ = await poll_once(remote, remote_dir, local_dir, on_lines)
            total += appended
            break
        if not until_done or (stop is not None and stop.is_set()):
            break
        if stop is not None:
            try:
                await asyncio.wait_for(stop.wait(), poll_s)
            except asyncio.TimeoutError:
                pass
        else:
            await asyncio.sleep(poll_s)
    return StreamResult(total, mirror_offset(local_dir / "metrics.jsonl"), state)
