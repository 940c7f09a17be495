"""Read-only commands while the studio app holds the workspace.

DuckDB locks the workspace file: while the studio app has it open, no other process can open it,
not even read-only. So the app listens on a Unix socket in the workspace folder (`.studio.sock`),
and a read-only command (`studio stats`, `show`, `history`, `export --dry-run`: _common.READ_ONLY)
that finds the workspace held sends its command line there. The app parses it (studio.cli.parse:
nothing runs, and only the named command's module loads), refuses anything but those commands, runs
the same handler on a DuckDB cursor of its own (in the connection's
thread, never the UI thread; inside a transaction it rolls back, so the database cannot change) with
`out`'s output captured, and sends back {"rc", "stdout", "stderr"}; the command prints them and
exits with that status. Anything else is refused with the usual "workspace is open" line.

Who may ask: the socket is made 0600 in a private 0700 folder and then moved into place, and each
side checks the other's uid with SO_PEERCRED (Linux). The app removes the socket when it stops;
a socket left by a crashed app is replaced by the next one (the DuckDB lock says who owns it).

Protocol: one JSON request {"argv", "workspace", "cwd"} then the client's half-close; one JSON reply
then the server's close.
"""
from __future__ import annotations

import io
import json
import os
import selectors
import shutil
import socket
import struct
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from curation.workspace import Workspace, rolled_back

SOCKET_NAME = ".studio.sock"
MAX_REQUEST = 64 * 1024
MAX_REPLY = 64 * 1024 * 1024
SERVER_READ_TIMEOUT_S = 10.0
CLIENT_CONNECT_TIMEOUT_S = 5.0
CLIENT_REPLY_TIMEOUT_S = 300.0
MAX_CONCURRENT = 4


def socket_path(root: str | os.PathLike[str]) -> Path:
    return Path(root) / SOCKET_NAME


@contextmanager
def _address(path: Path) -> Iterator[str]:
    """An address for bind/connect. AF_UNIX paths are limited to ~107 bytes: for a longer one,
    go through an fd of the folder (/proc/self/fd/N/name; Linux)."""
    if len(os.fsencode(str(path))) < 100 or not os.path.isdir("/proc/self/fd"):
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def _peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end (None where SO_PEERCRED does not exist)."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        return None
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i")))
    return uid


def _same_user(sock: socket.socket) -> bool:
    uid = _peer_uid(sock)
    return uid is None or uid == os.getuid()


def _read_all(sock: socket.socket, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise ValueError(f"message over {limit} bytes")
        chunks.append(chunk)


# -- the client: a command that found the workspace held ----------------------------------------
def ask(root: str | os.PathLike[str], argv: list[str]) -> dict[str, Any] | None:
    """Ask the studio app holding the workspace at `root` to run `argv`. Its reply
    {"rc", "stdout", "stderr"}, or None when no studio of this user answers there."""
    path = socket_path(root)
    if not hasattr(socket, "AF_UNIX"):
        return None
    try:
        if not path.is_socket():
            return None
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(CLIENT_CONNECT_TIMEOUT_S)
            with _address(path) as address:
                sock.connect(address)
            if not _same_user(sock):
                return None
            request = {"argv": list(argv), "workspace": str(root), "cwd": os.getcwd()}
            sock.sendall(json.dumps(request).encode("utf-8"))
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(CLIENT_REPLY_TIMEOUT_S)
            reply = json.loads(_read_all(sock, MAX_REPLY))
    except (OSError, ValueError):  # no studio there (a stale socket), or it went away
        return None
    if (not isinstance(reply, dict) or not isinstance(reply.get("rc"), int)
            or not isinstance(reply.get("stdout"), str) or not isinstance(reply.get("stderr"), str)):
        return None
    return reply


# -- the server: in the studio app ---------------------------------------------------------------
class _Refused(Exception):
    pass


# Parsing these prints help or the version (in the app's terminal): never served.
_PRINTING = ("-h", "--help", "--version")


def _parse(argv: list[str]) -> Any:
    """The studio.cli Call of a served command line; _Refused for anything but a read-only command."""
    import click

    from .cli import parse
    from .commands import _common

    if any(a in _PRINTING for a in argv):
        raise _Refused("help is not served")
    try:
        call = parse(argv)
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
            with _address(staged) as address:
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
                if not _same_user(conn):
                    return  # another user: not a word
                try:
                    request = json.loads(_read_all(conn, MAX_REQUEST))
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
