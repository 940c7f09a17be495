"""Training on a GPU box over SSH (asyncssh): check the box, launch detached, mirror metrics back.

The public API, all coroutines safe to await from a Textual worker or `asyncio.run`:

    spec = parse_host("gpu1", python="~/venv/bin/python")   # or "me@10.0.0.5:2222"
    info = await check_host(spec)                             # python, torch, GPUs, disk, problems
    run  = await launch_remote(local_run_dir, spec)           # upload, lay out, start detached
    res  = await stream_metrics(local_run_dir, on_lines=cb, stop=event)   # mirror by byte offset
    rows = await list_remote_runs(spec)
    await cancel_remote(local_run_dir); await fetch_run(local_run_dir)

Every user-fixable failure is a `RemoteError` (a `training.errors.TrainingError`); a host key that
is unknown or changed is a `HostKeyError` and the connection is never made.
"""
from .errors import ConnectionLostError, HostKeyError, RemoteError
from .hosts import HostSpec, connect, parse_host
from .runs import (
    RemoteRun,
    cancel_remote,
    check_host,
    fetch_run,
    install_trainer,
    launch_remote,
    list_remote_runs,
    read_remote,
    remote_status,
    require_remote,
    stream_metrics,
)
from .session import Remote, open_remote
from .stream import StreamResult
from .transfer import BlobUpload, put_blob

__all__ = [
    "BlobUpload", "ConnectionLostError", "HostKeyError", "HostSpec", "Remote", "RemoteError", "RemoteRun",
    "StreamResult", "cancel_remote", "check_host", "connect", "fetch_run", "install_trainer", "launch_remote",
    "list_remote_runs", "open_remote", "parse_host", "put_blob", "read_remote", "remote_status",
    "require_remote", "stream_metrics",
]
