"""The IPC server: in the studio app, it runs read-only commands for other processes.

The protocol, the socket and who may ask are in studio/ipc.py (with the client). The server parses
a command line with studio.command_group.parse (nothing runs, and only the named command's module
loads), refuses anything but _common.READ_ONLY, runs the handler on a DuckDB cursor of its own
inside a transaction it rolls back, and replies {"rc", "stdout", "stderr"}.
"""
from __future__ import annotations

import io
import json
import os
import selectors
import shutil
import socket
import tempfile
import threading
from functools import cache
from pathlib import Path
from typing import Any

from curation.workspace import Workspace, rolled_back

from .ipc import MAX_CONCURRENT, MAX_REQUEST, SERVER_READ_TIMEOUT_S, read_all, same_user, socket_address, socket_path


class _Refused(Exception):
    pass


# Parsing these prints help or the version (in the app's terminal): never served.
_PRINTING = ("-h", "--help", "--version")


@cache
def _commands() -> Any:
    """The `studio` group without a default: a command line that names no command is refused."""
    from .command_group import build_group

    return build_group(default=None)


def _parse(argv: list[str]) -> Any:
    """The Call of a served command line; _Refused for anything but a read-only command."""
    import click

    from .command_group import parse
    from .commands import _common

    if any(a in _PRINTING for a in argv):
        raise _Refused("help is not served")
    try:
        call = parse(_commands(), argv)
    except (click.ClickException, click.exceptions.Exit) as exc:
        raise _Refused(str(exc)) from None
    if not _common.is_read_only(call.args):
        raise _Refused("not a read-only command")
    return call


class _Borrowed(Workspace):
    """The app's workspace for one served command: on the request's own cursor, under the root the
    command named (so it prints the same paths); `close()` leaves it open (the app releases it)."""

    def close(self) -> None:
        pass


class Server:
    """Serves read-only commands on the workspace of `engine` (studio.engine.Engine) from a thread.
    `start()` / `stop()`; the app calls them on mount and unmount."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.root = Path(engine.ws.root)
        self.path = socket_path(self.root)
        self._sock: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._wake: tuple[socket.socket, socket.socket] | None = None  # stop() wakes the accept loop
        self._thread: threading.Thread | None = None
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT)

    def start(self) -> "Server":
        private = Path(tempfile.mkdtemp(prefix=".studio-sock-", dir=self.root))  # mode 0700
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            staged = private / "s"
            with socket_address(staged) as address:
                sock.bind(address)
            os.chmod(staged, 0o600)
            sock.listen(16)
            os.replace(staged, self.path)  # atomically replaces a stale socket of a dead studio
            st = os.lstat(self.path)
            self._inode = (st.st_dev, st.st_ino)
        except BaseException:
            sock.close()
            raise
        finally:
            shutil.rmtree(private, ignore_errors=True)
        self._sock = sock
        self._wake = socket.socketpair()
        self._thread = threading.Thread(target=self._accept_loop, name="studio-ipc", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._stop.is_set() or self._sock is None or self._wake is None:
            return
        self._stop.set()
        self._wake[1].send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._sock.close()
        for end in self._wake:
            end.close()
        try:  # only our socket: a newer studio may have replaced it
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        except OSError:
            pass

    def _accept_loop(self) -> None:
        assert self._sock is not None and self._wake is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ)
            selector.register(self._wake[0], selectors.EVENT_READ)
            while not self._stop.is_set():
                try:
                    if not any(key.fileobj is self._sock for key, _ in selector.select()):
                        continue
                    conn, _ = self._sock.accept()
                except OSError:
                    self._stop.wait(0.1)  # e.g. out of file descriptors: try again soon
                    continue
                threading.Thread(target=self._serve_one, args=(conn,), name="studio-ipc-request", daemon=True).start()

    def _serve_one(self, conn: socket.socket) -> None:
        with conn, self._slots:
            try:
                conn.settimeout(SERVER_READ_TIMEOUT_S)
                if not same_user(conn):
                    return  # another user: not a word
                try:
                    request = json.loads(read_all(conn, MAX_REQUEST))
                except ValueError as exc:
                    reply = _error(f"bad request: {exc}", 2)
                else:
                    reply = self.run(request)
                conn.sendall(json.dumps(reply, ensure_ascii=False).encode("utf-8"))
            except OSError:
                pass  # the client went away

    def run(self, request: Any) -> dict[str, Any]:
        """Run one request {"argv", "workspace", "cwd"} and return {"rc", "stdout", "stderr"}."""
        from curation.errors import StudioError, WorkspaceLocked
        from curation.safe_text import visible
        from training.errors import TrainingError

        from .commands import _common

        try:
            if not isinstance(request, dict):
                raise _Refused("the request is not a JSON object")
            argv = request.get("argv")
            if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                raise _Refused("argv must be a list of strings")
            call = _parse(argv)
            root = self._root_for(request.get("workspace"), request.get("cwd"))
        except _Refused:
            return _error(
                f"workspace {self.root} is open in process {os.getpid()} (the studio), which runs only "
                f"{', '.join(_common.READ_ONLY)} for other commands; close the studio, or pass --wait "
                f"SECONDS to queue behind it.", WorkspaceLocked.exit_code)
        try:
            job_ws = self.engine.job_workspace()
        except Exception as exc:  # the studio is closing
            return _error(f"the studio (process {os.getpid()}) could not run it: {exc}; try again.", 1)
        stdout, stderr = io.StringIO(), io.StringIO()
        token = _common.serving(_Borrowed(root, job_ws.con, read_only=True), stdout, stderr)
        try:
            with rolled_back(job_ws.con):  # a served command cannot write
                try:
                    rc = call()
                except (StudioError, TrainingError) as exc:
                    print(f"studio: error: {visible(str(exc))}", file=stderr)
                    rc = exc.exit_code
                except Exception as exc:  # a bug: say where it happened
                    print(f"studio: error: the studio (process {os.getpid()}) failed running it: {exc!r}", file=stderr)
                    rc = 1
        finally:
            _common._SERVING.reset(token)
            self.engine.release(job_ws)
        return {"rc": rc, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}

    def _root_for(self, workspace: Any, cwd: Any) -> Path:
        """The workspace path as the command named it (so its output matches a free workspace's),
        made absolute where it would not reach this workspace from the studio's folder."""
        if not isinstance(workspace, str) or not isinstance(cwd, str):
            raise _Refused("workspace and cwd must be strings")
        given = Path(workspace)
        full = given if given.is_absolute() else Path(cwd) / given
        try:
            if not os.path.samefile(full, self.root):
                raise _Refused("another workspace")
            if given.is_absolute() or (given.exists() and os.path.samefile(given, self.root)):
                return given
        except OSError:
            raise _Refused("no such workspace") from None
        return full


def _error(message: str, rc: int) -> dict[str, Any]:
    from curation.safe_text import visible

    return {"rc": rc, "stdout": "", "stderr": f"studio: error: {visible(message)}\n"}


def start_server(engine: Any) -> Server | None:
    """Serve read-only commands for the app's workspace; None (and the app goes on) where the
    folder or the platform does not allow a Unix socket."""
    if not hasattr(socket, "AF_UNIX"):
        return None
    try:
        return Server(engine).start()
    except OSError:
        return None
