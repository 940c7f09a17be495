"""Run directories (docs/contracts.md): create, launch detached, execute, list, cancel, resume.

A run is `WORKSPACE/runs/RUN_ID/` with config.yaml (first line: the reproduce command),
status.json (rewritten atomically), metrics.jsonl (append-only), train.log, checkpoints/, adapter/.
`launch(run_dir)` starts `python -m training run RUN_DIR` in a new session with its output in
train.log, so closing the terminal (SIGHUP to the old session) does not stop it. Only the training
process writes status.json while it lives; `cancel` sends it SIGTERM and it stops at the next
step's end with a checkpoint, so a cancelled run can be resumed. A process that died without a final
state (kill -9, the OOM killer) is written `failed` by the first reader that notices
(`effective_status`). A full disk ends a run `failed` with an error starting "disk full:"; resume
skips a corrupt latest checkpoint for the newest whole one (`pick_resume_checkpoint`).
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from .config import TrainConfig, load_run_config, save_config, with_changes
from .errors import RunNotFound, TrainingError

# status.json, reading it as a reader should (effective_status) and finding a run live in
# training.rundir; these names are also used as training.runs.X
from .rundir import (  # noqa: F401
    LOG_FILE,
    REMOTE_JSON,
    STATUS_FILE,
    RunInfo,
    RunState,
    RunStatus,
    effective_status,
    find_run,
    pid_alive,
    read_status,
    start_order,
    utc_now,
    write_status,
)


class StatusWriter:
    """The training process's status updates; `throttle=True` ones are written at most once a second."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self._last = 0.0
        self._pending: dict[str, Any] = {}

    def __call__(self, throttle: bool = False, **fields: Any) -> None:
        self._pending.update(fields)
        now = time.monotonic()
        if throttle and now - self._last < 1.0:
            return
        write_status(self.run_dir, **self._pending)
        self._pending = {}
        self._last = now

    def flush(self) -> None:
        if self._pending:
            write_status(self.run_dir, **self._pending)
            self._pending = {}

    def take_pending(self) -> dict[str, Any]:
        """The throttled fields not written yet (the caller writes them with its own)."""
        pending, self._pending = self._pending, {}
        return pending


# ---------------------------------------------------------------- create / launch

def new_run_id(cfg: TrainConfig, name: str | None = None) -> str:
    if name:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,80}", name):
            raise TrainingError(f"run name {name!r}: use letters, digits, '.', '_' or '-' (max 80)")
        return name
    base = re.sub(r"[^A-Za-z0-9.]+", "-", cfg.base.split("/")[-1]).strip("-").lower()[:24] or "model"
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{base}-{cfg.method}"


def create_run(runs_dir: str | Path, cfg: TrainConfig, *, name: str | None = None, reproduce: str | None = None,
               host: str | None = None) -> Path:
    """Make RUN_DIR with config.yaml (reproduce line first) and status `queued`; returns RUN_DIR.

    The split and a base folder inside the workspace are stored relative to the run directory
    (`../../splits/v1`, `config.portable_base`), so the workspace can move; `load_run_config` makes
    them absolute again, whatever the working directory.
    """
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    if cfg.data.split and Path(cfg.data.split).exists():
        cfg = with_changes(cfg, {"data.split": str(Path(cfg.data.split).resolve())})
    run_id = new_run_id(cfg, name)
    run_dir = runs_dir / run_id
    n = 1
    while not name and run_dir.exists():
        n += 1
        run_dir = runs_dir / f"{run_id}-{n}"
    try:
        run_dir.mkdir()
    except FileExistsError:
        raise TrainingError(f"run {run_dir.name} already exists in {runs_dir}; pick another --name or "
                            f"resume it with: studio train --resume {run_dir.name}") from None
    config_path = run_dir / "config.yaml"
    line = (reproduce or f"studio train {cfg.data.split} --config {{config}}").replace("{config}", str(config_path))
    save_config(cfg, config_path, line)  # the split and a base inside the workspace relative to the run
    write_status(run_dir, state="queued", pid=None, host=host or socket.gethostname(), step=0, max_steps=None,
                 epoch=0, last_checkpoint=None, error=None, remedy=None, started_at=None, base=cfg.base,
                 method=cfg.method, untrained=cfg.is_tiny, metrics_generation=0)
    return run_dir


def launch_command(run_dir: str | Path, *, resume: bool = False, python: str | None = None) -> list[str]:
    """`python -m training run RUN_DIR`; with train.devices > 1, the same under torchrun (one
    process per GPU; the Trainer picks DDP or FSDP up from torchrun's environment)."""
    cmd = [python or sys.executable, "-m", "training", "run", str(run_dir)] + (["--resume"] if resume else [])
    devices = load_run_config(run_dir).train.devices
    if devices > 1:
        cmd[1:3] = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={devices}", "-m", "training"]
    return cmd


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    pkg_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class _Tee:
    """A text stream that also appends what it writes to a log file; the log is best effort (a
    full disk must not stop the terminal's output)."""

    def __init__(self, stream: Any, log: Any):
        self._stream, self._log = stream, log

    def write(self, text: str) -> int:
        n = self._stream.write(text)
        try:
            self._log.write(text)
        except (OSError, ValueError):
            pass
        return n

    def flush(self) -> None:
        self._stream.flush()
        try:
            self._log.flush()
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ... are the terminal's
        return getattr(self._stream, name)


@contextlib.contextmanager
def _copied_to_log(run_dir: Path):
    """While training in the foreground, stdout and stderr also go to RUN/train.log, as a detached
    run's output does (its own lines, warnings, tracebacks), so the log is the same either way."""
    try:
        log = open(run_dir / LOG_FILE, "a", encoding="utf-8", errors="replace", buffering=1)
    except OSError:  # no log (a full disk): the terminal still shows everything
        yield
        return
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(sys.stdout, log), _Tee(sys.stderr, log)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
        try:
            log.close()
        except OSError:
            pass


def run_foreground(run_dir: str | Path, *, resume: bool = False) -> RunStatus:
    """Train in this terminal and return the final status. One GPU (or the CPU): in this process.
    Several (train.devices > 1): torchrun attached to this terminal, one process per GPU; a single
    process that sees several GPUs would make the Trainer fall back to nn.DataParallel, which TRL
    refuses."""
    run_dir = Path(run_dir).resolve()
    if load_run_config(run_dir).train.devices <= 1:
        write_status(run_dir, cancel_requested_at=None)  # an earlier cancel's, were it resumed here
        with _copied_to_log(run_dir):  # train.log holds what a detached run's would
            return execute(run_dir, resume=resume)
    write_status(run_dir, state="queued", pid=None, host=socket.gethostname(), cancel_requested_at=None)  # no stale pid
    rc = subprocess.run(launch_command(run_dir, resume=resume), cwd=str(run_dir), env=_child_env(), check=False).returncode
    st = effective_status(run_dir)
    if not st.state.is_final:  # torchrun or a rank died before rank 0 wrote an end
        st = write_status(run_dir, state="failed", finished_at=utc_now(),
                          error=f"torchrun exited with {rc} before the run ended; its output above says why")
    return st


def launch(run_dir: str | Path, *, resume: bool = False, python: str | None = None) -> int:
    """Start `python -m training run RUN_DIR [--resume]` detached (new session, output -> train.log); its pid."""
    run_dir = Path(run_dir).resolve()
    if not (run_dir / "config.yaml").is_file():
        raise RunNotFound(f"{run_dir}: not a run directory (no config.yaml)")
    cmd = launch_command(run_dir, resume=resume, python=python)
    env = _child_env()
    # pid=None: a resumed run's old, dead pid must not make it read as failed before the new one starts
    write_status(run_dir, state="queued", pid=None, host=socket.gethostname(), cancel_requested_at=None)
    with open(run_dir / LOG_FILE, "ab") as log, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(cmd, cwd=str(run_dir), stdin=devnull, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, close_fds=True)
    write_status(run_dir, pid=proc.pid)  # the child needs seconds of imports before it writes "running"
    return proc.pid


# ---------------------------------------------------------------- execute (the run's own process)

def pick_resume_checkpoint(run_dir: Path, save_steps: int) -> tuple[Path, str | None]:
    """The checkpoint a resume starts from: the newest whole one (training.recipe.checkpoint_problem),
    and a note naming the newer ones skipped and why (None when the latest is whole).

    None whole: fails with one line rather than training from step 0. A resume that silently started
    over would cut metrics.jsonl back to nothing and spend the whole run's time again under the old
    run's name; a new run (the reproduce line in config.yaml) does that openly."""
    from .recipe import resumable_checkpoint

    ck, skipped = resumable_checkpoint(run_dir)
    why = "; ".join(f"{p.name}: {problem}" for p, problem in skipped)
    if ck is None:
        if skipped:
            raise TrainingError(f"run {run_dir.name}: no whole checkpoint to resume from ({why}); start it again "
                                f"as a new run (the first line of {run_dir / 'config.yaml'} is its command)")
        raise TrainingError(f"run {run_dir.name}: no checkpoint to resume from (checkpoints are written every "
                            f"train.save_steps={save_steps} steps); start it again as a new run")
    if not skipped:
        return ck, None
    return ck, (f"resuming from {ck.name}, the newest whole checkpoint: skipped {why}")

def execute(run_dir: str | Path, *, resume: bool = False,
            relaunch: Callable[[Path], Any] | None = None) -> RunStatus:
    """Train the run in this process and leave a final status; returns the final status.

    CUDA OOM -> state failed, `error`, `remedy` (the seed's remedies, in order); with the config's
    `oom_retry`, a sibling run RUN_ID-oomN with the next remedy applied is created and started with
    `relaunch` (default: launch detached); its id is in status `next_run`.
    """
    import torch

    from . import metrics
    from .recipe import CancelFlag, checkpoint_step, train

    run_dir = Path(run_dir).resolve()
    cfg = load_run_config(run_dir)
    status = StatusWriter(run_dir)
    prior = read_status(run_dir)
    resume_from, offset = None, 0
    try:
        if resume:
            ck, note = pick_resume_checkpoint(run_dir, cfg.train.save_steps)
            step = checkpoint_step(ck)
            if note:
                _say(f"run {run_dir.name}: {note}")
            metrics.truncate_after(run_dir, step)
            metrics.MetricsWriter(run_dir).append({"event": "resume", "from_step": step, "time": round(time.time(), 3),
                                                   **({"note": note} if note else {})})
            offset = int(metrics.last_value(run_dir, "tokens_seen", at_or_before=step) or 0)
            resume_from = str(ck)
            status(metrics_generation=(prior.metrics_generation or 0) + 1, resumed_from=step,
                   resume_checkpoint=f"{ck.parent.name}/{ck.name}", note=note)
        status(state="running", pid=os.getpid(), host=socket.gethostname(), error=None, remedy=None,
               started_at=prior.started_at or utc_now(), finished_at=None)
    except OSError as exc:  # the disk was full before the first step
        disk = disk_full_message(exc, run_dir)
        if disk is None:
            raise
        _say(f"error: {disk}")
        return _end(run_dir, status, state="failed", error=disk, finished_at=utc_now())

    cancel = CancelFlag()
    started = {"training": False}

    def on_term(signum, frame):
        cancel.requested = True
        if not started["training"]:
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)

    def status_and_mark(**fields: Any) -> None:
        if fields.get("state") == RunState.RUNNING:
            started["training"] = True
        status(**fields)

    try:
        result = train(run_dir, cfg, on_status=status_and_mark, resume_from=resume_from, cancel=cancel,
                       tokens_offset=offset)
        status.flush()
        state = RunState.CANCELLED if result["cancelled"] else RunState.DONE
        final = write_status(run_dir, state=state, step=result["step"], max_steps=result["max_steps"],
                             finished_at=utc_now(), **({"eval_loss": result["eval_loss"]} if result["eval_loss"] is not None else {}))
        if state == RunState.DONE and cfg.eval.at_end and os.environ.get("RANK", "0") == "0":
            final = _eval_at_end(run_dir, cfg)
        if os.environ.get("RANK", "0") == "0":
            try:
                print(f"run {run_dir.name}: {state} at step {result['step']}", flush=True)
            except OSError:  # train.log's disk is full; the status says it
                pass
        return final
    except torch.OutOfMemoryError as exc:
        try:
            status.flush()
        except OSError:
            pass
        return _on_oom(run_dir, cfg, exc, relaunch)
    except KeyboardInterrupt:
        return _end(run_dir, status, state="cancelled", finished_at=utc_now())
    except TrainingError as exc:
        _say(f"error: {exc}")
        return _end(run_dir, status, state="failed", error=str(exc), finished_at=utc_now())
    except Exception as exc:  # a bug or a library failure: keep the traceback in train.log
        disk = disk_full_message(exc, run_dir)
        if disk is not None:  # the user's to fix: one line, no traceback
            _say(f"error: {disk}")
            return _end(run_dir, status, state="failed", error=disk, finished_at=utc_now())
        try:
            traceback.print_exc()
        except OSError:
            pass
        return _end(run_dir, status, state="failed", error=f"{type(exc).__name__}: {exc}".strip()[:2000],
                    finished_at=utc_now())
    finally:
        signal.signal(signal.SIGTERM, old)
        from .report import report_at_end

        report_at_end(run_dir)  # RUN_DIR/report.html, done, failed or cancelled; never raises


def _say(line: str) -> None:
    """One line on stderr (train.log for a detached run), even when that file's disk is full."""
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass


def _end(run_dir: Path, status: StatusWriter, **fields: Any) -> RunStatus:
    """The run's final status: the pending throttled fields and `fields` in one write. When even
    that write fails (a full disk), the status as it should be is returned, and `effective_status`
    reads the file's `running` with a dead pid as failed."""
    fields = {**status.take_pending(), **fields}
    try:
        return write_status(run_dir, **fields)
    except OSError as exc:
        _say(f"run {run_dir.name}: could not write {STATUS_FILE}: {exc}")
        return read_status(run_dir).with_changes(**fields)


_DISK_FULL_TEXT = ("no space left on device", "disk quota exceeded", "os error 28", "os error 122")
_WRITE_FAILED_TEXT = ("file write failed", "unexpected pos")  # torch.save's zip writer says no errno
_QUOTED_PATH = re.compile(r'(?:file|open|write|writing|create)\w*\s+"([^"]+)"', re.IGNORECASE)
LOW_SPACE = 64 << 20  # a torch write failure with less than this free is taken for a full disk


def _free(path: Path) -> int | None:
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def disk_full_message(exc: BaseException, run_dir: str | Path) -> str | None:
    """"disk full: could not write FILE: free space in DIR ..." when `exc` comes from a full disk:
    an OSError ENOSPC/EDQUOT anywhere in its __cause__/__context__ chain (safetensors, torch.save
    and DuckDB wrap or re-raise it), a message that says so, or torch's errno-less write failure
    while the run's disk is nearly full. None otherwise. (training cannot import curation: this
    mirrors curation.errors.disk_full_error.)"""
    run_dir = Path(run_dir)
    chain: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(chain) < 32:
        e = todo.pop(0)
        if e is not None and not any(e is c for c in chain):
            chain.append(e)
            todo += [e.__cause__, e.__context__]
    path, found, write_failed = None, False, False
    for e in chain:
        text = str(e)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            found = True
            path = path or (os.fsdecode(e.filename) if e.filename else None)
        elif any(t in text.lower() for t in _DISK_FULL_TEXT):
            found = True
            m = _QUOTED_PATH.search(text)
            path = path or (m.group(1) if m else None)
        elif any(t in text for t in _WRITE_FAILED_TEXT):
            write_failed = True
    if not found:
        free = _free(run_dir) if write_failed else None
        if free is None or free >= LOW_SPACE:
            return None
    folder = Path(path).parent if path else run_dir
    free = _free(folder)
    from .recipe import resumable_checkpoint

    then = (f"then resume it: studio train --resume {run_dir.name}" if resumable_checkpoint(run_dir)[0] is not None
            else "then start it again (no whole checkpoint was saved)")
    return (f"disk full: could not write {path or f'in {run_dir}'}: free space in {folder}"
            + (f" ({free >> 20} MB free now)" if free is not None else "") + f", {then}")


def _eval_at_end(run_dir: Path, cfg: TrainConfig) -> RunStatus:
    """The config's `eval:` after a finished run: base and adapter on the same items, into
    RUN_DIR/evals/end/; status `eval` holds each model's accuracy. A failure is recorded, not raised:
    the adapter is already saved and good."""
    from .evaluate import ModelSpec, eval_dir, run_eval

    e = cfg.eval
    write_status(run_dir, eval_state="running")
    try:
        result = run_eval(e.set or cfg.data.split, [ModelSpec("base", "base"), ModelSpec(run_dir.name, "adapter", str(run_dir))],
                          scorer=e.scorer, part=e.part, limit=e.limit, max_new_tokens=e.max_new_tokens,
                          batch_size=e.batch_size, out_dir=eval_dir(run_dir, "end"), eval_id="end")
    except Exception as exc:  # the run itself succeeded: say why the eval did not
        print(f"eval at end failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return write_status(run_dir, eval_state="failed", eval_error=f"{type(exc).__name__}: {exc}"[:2000])
    accuracy = {m.name: round(m.accuracy, 4) for m in result.models}
    print(f"run {run_dir.name}: eval at end ({e.scorer}, {len(result.items)} items): " +
          ", ".join(f"{k} {v:.1%}" for k, v in accuracy.items()), flush=True)
    return write_status(run_dir, eval_state="done", eval=accuracy)


def _on_oom(run_dir: Path, cfg: TrainConfig, exc: BaseException, relaunch: Callable[[Path], Any] | None) -> RunStatus:
    from .oom import remedies

    found = remedies(cfg)
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else "CUDA out of memory"
    final = write_status(run_dir, state="failed", error=f"CUDA out of memory: {msg}", finished_at=utc_now(),
                         remedy=[r.to_dict() for r in found])
    print(f"run {run_dir.name}: CUDA out of memory. Remedies, in order: " +
          "; ".join(f"{r.name} ({r.why})" for r in found), file=sys.stderr, flush=True)
    if cfg.oom_retry and found:
        child_cfg = with_changes(cfg, found[0].changes)
        stem = re.sub(r"-oom\d+$", "", run_dir.name)
        m = re.search(r"-oom(\d+)$", run_dir.name)
        child_name = f"{stem}-oom{int(m.group(1)) + 1 if m else 1}"
        sets = " ".join(f"--set {k}={v}" for k, v in found[0].changes.items())
        child = create_run(run_dir.parent, child_cfg, name=child_name,
                           reproduce=f"{_reproduce_line(run_dir)} {sets}".strip())
        write_status(child, retry_of=run_dir.name, applied_remedy=found[0].to_dict())
        final = write_status(run_dir, next_run=child.name)
        (relaunch or launch)(child)
    return final


def _reproduce_line(run_dir: Path) -> str:
    first = (run_dir / "config.yaml").read_text(encoding="utf-8").splitlines()[0]
    return first[len("# reproduce: "):] if first.startswith("# reproduce: ") else ""


# ---------------------------------------------------------------- list / cancel / resume

def run_info(run_dir: str | Path, status: RunStatus | None = None) -> RunInfo:
    """One row of `studio runs`: id, state, step/max, last loss, last eval loss, base, method, started."""
    from .metrics import metric_points, read_metrics

    run_dir = Path(run_dir)
    st = status if status is not None else effective_status(run_dir)
    loss = eval_loss = None
    for r in metric_points(read_metrics(run_dir)[0]):
        loss = r.get("loss", loss)
        eval_loss = r.get("eval_loss", eval_loss)
    return RunInfo(id=run_dir.name, path=run_dir, state=st.state, step=st.step, max_steps=st.max_steps, loss=loss,
                   eval_loss=eval_loss, base=st.base, method=st.method, untrained=st.untrained,
                   started_at=st.started_at, host=st.host, error=st.error, next_run=st.next_run)


def run_dirs(runs_dir: str | Path) -> list[Path]:
    """Every run directory (one with a config.yaml) under runs_dir, oldest first (`rundir.start_order`)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return sorted((d for d in runs_dir.iterdir() if (d / "config.yaml").is_file()), key=start_order)


def list_runs(runs_dir: str | Path) -> list[RunInfo]:
    """Every run under runs_dir, oldest first (by start time; runs not started yet last)."""
    return [run_info(d) for d in run_dirs(runs_dir)]


def cancel(run_dir: str | Path, *, wait_s: float = 0.0) -> RunStatus:
    """SIGTERM the run's process group; it stops at the next step end (with a checkpoint) and writes
    `cancelled`. A run whose process is already gone is marked cancelled here. Returns the status."""
    run_dir = Path(run_dir)
    st = read_status(run_dir)
    if st.state.is_final:
        return st
    if st.host not in (None, socket.gethostname()):
        raise TrainingError(f"run {run_dir.name} runs on {st.host}; cancel it there (or through the remote helper)")
    pid = st.pid
    if pid and pid_alive(pid):
        # a process killed before its handler was in place reads as cancelled, not failed
        write_status(run_dir, cancel_requested_at=utc_now())
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
        st = read_status(run_dir)
        if not pid_alive(pid) and not st.state.is_final:
            st = write_status(run_dir, state=RunState.CANCELLED, finished_at=utc_now())
        return st
    return write_status(run_dir, state=RunState.CANCELLED, finished_at=utc_now())


def resume(run_dir: str | Path, *, foreground: bool = False) -> RunStatus | int:
    """Continue a stopped run from its last whole checkpoint (a corrupt latest one falls back to the
    one before: `pick_resume_checkpoint`): detached (returns pid) or here (final status)."""
    run_dir = Path(run_dir)
    st = effective_status(run_dir)
    if not st.state.is_final:
        raise TrainingError(f"run {run_dir.name} is still {st.state} (pid {st.pid}); cancel it first")
    if st.state == RunState.DONE:
        raise TrainingError(f"run {run_dir.name} is done; start a new run to train further")
    pick_resume_checkpoint(run_dir, load_run_config(run_dir).train.save_steps)  # fails here, not in the child
    if foreground:
        return run_foreground(run_dir, resume=True)
    return launch(run_dir, resume=True)


def wait(run_dir: str | Path, timeout_s: float = 600, poll_s: float = 0.2) -> RunStatus:
    """Poll until the run reaches a final state and, on this host, its process has exited (it
    writes report.html after its final status); returns the status."""
    deadline = time.monotonic() + timeout_s
    while True:
        st = effective_status(run_dir)
        if time.monotonic() > deadline:
            return st
        if st.state.is_final:
            if not (st.pid and st.host == socket.gethostname() and pid_alive(st.pid)):
                return st
        time.sleep(poll_s)
