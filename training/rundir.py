"""The run directory's status contract (docs/contracts.md, "Run directory"): status.json in code.

`RunState` is the run's lifecycle (`is_final` is the one definition of "finished"), `RunStatus` is
status.json as a typed model, `RunInfo` is one row of `studio runs`. `read_status` and
`write_status` are the only code that reads or writes status.json; everything else calls them.
`effective_status` is status.json as a reader should take it (a run whose process died without a
word is failed, written once by whoever notices); `find_run` finds a run by id, prefix or path.

Readers tolerate what an older or newer trainer wrote: a missing key reads as its default, a key
this model does not know is kept (`RunStatus.model_extra`) and written back unchanged, and a value
of the wrong type is left out of the model (and kept in the file). tests/test_rundir_contract.py
keeps the status.json row of docs/contracts.md and `RunStatus` in step.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import RunNotFound

STATUS_FILE = "status.json"
LOG_FILE = "train.log"  # the training process's output
REMOTE_JSON = "remote.json"  # only in the local mirror of a run on an SSH host (training.remote)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunState(StrEnum):
    """Where a run is in its life. A str: `RunState.DONE == "done"`, and JSON writes "done"."""

    QUEUED = "queued"        # created, or launched and still importing
    RUNNING = "running"      # the training process is stepping
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """The run has ended and its process will write nothing more (done, failed or cancelled)."""
        return self in (RunState.DONE, RunState.FAILED, RunState.CANCELLED)

    @classmethod
    def of(cls, value: Any) -> "RunState | None":
        """`value` as a state, or None for anything else (a remote agent's `lost`, None)."""
        try:
            return cls(value)
        except ValueError:
            return None


class RunStatus(BaseModel):
    """status.json. Every field is optional in the file; see docs/contracts.md for what each means."""

    model_config = ConfigDict(extra="allow", frozen=True)

    state: RunState = RunState.QUEUED
    pid: int | None = None
    host: str | None = None
    step: int | None = None
    max_steps: int | None = None
    epoch: float | None = None
    last_checkpoint: str | None = None
    error: str | None = None
    remedy: list[dict[str, Any]] | None = None
    started_at: str | None = None
    updated_at: str | None = None
    finished_at: str | None = None
    base: str | None = None
    method: str | None = None
    untrained: bool = False
    metrics_generation: int | None = None
    trainable_params: int | None = None
    total_params: int | None = None
    precision: str | None = None
    device: str | None = None
    eval_loss: float | None = None
    eval_state: str | None = None
    eval: dict[str, float] | None = None
    eval_error: str | None = None
    cancel_requested_at: str | None = None
    resumed_from: int | None = None
    resume_checkpoint: str | None = None
    note: str | None = None
    next_run: str | None = None
    retry_of: str | None = None
    applied_remedy: dict[str, Any] | None = None

    @classmethod
    def parse(cls, data: Any) -> "RunStatus":
        """A status from JSON data, tolerantly: keys whose values do not fit their field are left out."""
        if not isinstance(data, dict):
            return cls(state=RunState.FAILED, error=f"{STATUS_FILE} holds {type(data).__name__}, not an object")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
            return cls.model_validate({k: v for k, v in data.items() if k not in bad})

    def to_json(self) -> dict[str, Any]:
        """The keys the file had (or a write set), extras included; states as their strings."""
        return self.model_dump(mode="json", exclude_unset=True)

    def with_changes(self, **changes: Any) -> "RunStatus":
        """A copy with `changes` applied and validated (nothing is written): a change of the wrong
        type is a bug and raises pydantic's ValidationError."""
        return RunStatus.model_validate({**self.to_json(), **changes})


@dataclass(frozen=True)
class RunInfo:
    """One row of `studio runs` (training.runs.run_info): the status with the last losses of metrics.jsonl."""

    id: str
    path: Path
    state: RunState
    step: int | None
    max_steps: int | None
    loss: float | None
    eval_loss: float | None
    base: str | None
    method: str | None
    untrained: bool
    started_at: str | None
    host: str | None
    error: str | None
    next_run: str | None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path), "state": str(self.state)}


# ---------------------------------------------------------------- read / write

def _read_raw(path: Path) -> dict[str, Any]:
    """The file's object: {} when missing; a failed status when it is not JSON (a torn write)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError:
        return {"state": "failed", "error": f"{path} is not valid JSON"}
    return data if isinstance(data, dict) else {"state": "failed", "error": f"{path} is not a JSON object"}


def read_status(run_dir: str | Path) -> RunStatus:
    """RUN_DIR/status.json; a missing file reads as a fresh queued status."""
    return RunStatus.parse(_read_raw(Path(run_dir) / STATUS_FILE))


def write_status(run_dir: str | Path, **changes: Any) -> RunStatus:
    """Read-modify-write status.json atomically (tmp file + os.replace): readers never see half a file.
    Keys not in `changes` (unknown ones too) are kept as the file had them.

    On a full disk the tmp file cannot be written; then a compact copy goes over the old file in
    place when it fits the blocks that file already holds (a status is about 1 KB, a block 4 KB), so
    a run that dies of a full disk can still say so. Raises OSError when even that fails."""
    p = Path(run_dir) / STATUS_FILE
    raw = _read_raw(p)
    if os.environ.get("RANK", "0") != "0":
        return RunStatus.parse(raw)  # multi-GPU: only rank 0 writes the run's status
    status = RunStatus.parse(raw).with_changes(**changes, updated_at=utc_now())
    _write(p, {**raw, **status.to_json()})  # a value the model left out (a wrong type) stays in the file
    return status


def replace_status(run_dir: str | Path, status: RunStatus) -> None:
    """Write `status` as the whole of status.json, atomically: a remote run's mirror copies its host's."""
    _write(Path(run_dir) / STATUS_FILE, status.to_json())


def _write(p: Path, data: dict[str, Any]) -> None:
    # one temporary name per writer: two threads of one process (the studio's poll marking a dead run
    # failed, its cancel) sharing a name made one os.replace fail with FileNotFoundError
    tmp = p.with_name(f".{STATUS_FILE}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, p)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or not _overwrite_in_place(p, data):
            raise


def _overwrite_in_place(p: Path, data: dict[str, Any]) -> bool:
    """Full disk: write `data` compactly over status.json's existing blocks, if it fits them.
    Not atomic, but one small write; a reader that catches it half-written reads `failed`."""
    encoded = (json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
    try:
        st = p.stat()
        if len(encoded) > max(st.st_size, st.st_blocks * 512):
            return False
        with open(p, "r+b") as f:
            f.write(encoded)
            f.truncate()
        return True
    except OSError:
        return False


def has_status(run_dir: str | Path) -> bool:
    return (Path(run_dir) / STATUS_FILE).is_file()


def start_order(run_dir: Path, status: RunStatus | None = None) -> tuple[str, float, str]:
    """Sort key of runs, oldest first: start time; a run not started yet after every started one;
    then the folder's mtime and name. `studio runs`, the Train screen and Home all list in this order."""
    st = status if status is not None else read_status(run_dir)
    try:
        mtime = run_dir.stat().st_mtime
    except OSError:
        mtime = 0.0
    return (st.started_at or "9", mtime, run_dir.name)


# ---------------------------------------------------------------- what readers see

def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a finished child of this process stays a zombie until reaped: not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _orphaned(st: RunStatus) -> bool:
    """A run that says queued/running while its process is gone from this host (kill -9, the OOM
    killer, a full disk that stopped even the final status write)."""
    return (not st.state.is_final and st.host == socket.gethostname()
            and bool(st.pid) and not pid_alive(st.pid))


def effective_status(run_dir: str | Path) -> RunStatus:
    """status.json, except that a queued/running run whose process is gone on this host is failed:
    that is written to status.json (the file is the contract), once, by whoever notices first. A
    remote run's mirror (remote.json; its host's status is copied over it) only reads as failed."""
    run_dir = Path(run_dir)
    st = read_status(run_dir)
    if not _orphaned(st):
        return st
    pid = st.pid
    fields: dict[str, Any]
    if st.cancel_requested_at:  # SIGTERM came before the process could say so itself
        fields = {"state": RunState.CANCELLED, "finished_at": utc_now()}
    else:
        fields = {"state": RunState.FAILED, "finished_at": utc_now(),
                  "error": f"the training process (pid {pid}) ended without a word: killed or out of memory? "
                           f"See {LOG_FILE}. Resume with `studio train --resume {run_dir.name}`"}
    if (run_dir / REMOTE_JSON).exists():
        return st.with_changes(**fields)
    now = read_status(run_dir)  # it may have written its end just before it exited
    if not (_orphaned(now) and now.pid == pid):
        return now
    try:
        return write_status(run_dir, **fields)
    except OSError:  # a read-only mirror or a full disk: say it all the same
        return now.with_changes(**fields)


def find_run(runs_dir: str | Path, ref: str) -> Path:
    """A run by id, unique id prefix, or path."""
    p = Path(ref)
    if (p / "config.yaml").is_file():
        return p
    runs_dir = Path(runs_dir)
    if (runs_dir / ref / "config.yaml").is_file():
        return runs_dir / ref
    matches = sorted(d for d in runs_dir.glob(f"{ref}*") if (d / "config.yaml").is_file()) if runs_dir.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise RunNotFound(f"run {ref!r} is ambiguous: {', '.join(m.name for m in matches[:5])}")
    raise RunNotFound(f"no run {ref!r} in {runs_dir}; list them with: studio runs")
