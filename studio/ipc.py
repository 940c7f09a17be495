"""Read-only commands while the studio app holds the workspace.

DuckDB locks the workspace file: while the studio app has it open, no other process can open it,
not even read-only. So the app listens on a Unix socket in the workspace folder (`.studio.sock`),
and a read-only command (`studio stats`, `show`, `history`, `export --dry-run`: _common.READ_ONLY)
that finds the workspace held sends its command line there. The app parses it (studio.command_group.parse:
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

This module is the protocol's shared part and the client (`ask`, for studio/commands/_common.py);
the server, which runs the commands and so imports them, is studio/ipc_server.py.
"""
from __future__ import annotations

import json
import os
import socket
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

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
def socket_address(path: Path) -> Iterator[str]:
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


def same_user(sock: socket.socket) -> bool:
    uid = _peer_uid(sock)
    return uid is None or uid == os.getuid()


def read_all(sock: socket.socket, limit: int) -> bytes:
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
            with socket_address(path) as address:
                sock.connect(address)
            if not same_user(sock):
                return None
            request = {"argv": list(argv), "workspace": str(root), "cwd": os.getcwd()}
            sock.sendall(json.dumps(request).encode("utf-8"))
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(CLIENT_REPLY_TIMEOUT_S)
            reply = json.loads(read_all(sock, MAX_REPLY))
    except (OSError, ValueError):  # no studio there (a stale socket), or it went away
        return None
    if (not isinstance(reply, dict) or not isinstance(reply.get("rc"), int)
            or not isinstance(reply.get("stdout"), str) or not isinstance(reply.get("stderr"), str)):
        return None
    return reply
