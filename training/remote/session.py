"""One open SSH connection to a GPU box: agent commands, SFTP, and the studio's folders there.

`async with open_remote(spec) as remote:` connects (host key checked), opens SFTP and resolves
the remote root (`~` expanded by the remote's own home). Remote steps go through `remote.agent(...)`,
which pipes `agent.py` into the remote Python and returns its JSON result.
"""
from __future__ import annotations

import json
import posixpath
import shlex
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from .errors import ConnectionLostError, RemoteError
from .hosts import HostSpec, connect

AGENT_SOURCE = (Path(__file__).with_name("agent.py")).read_text(encoding="utf-8")


class Remote:
    def __init__(self, spec: HostSpec, conn: Any, sftp: Any, root: str):
        self.spec = spec
        self.conn = conn
        self.sftp = sftp
        self.root = root
        """Absolute path of the studio's folder on the remote."""

    @property
    def blobs(self) -> str:
        return posixpath.join(self.root, "blobs")

    @property
    def runs(self) -> str:
        return posixpath.join(self.root, "runs")

    def run_dir(self, run_id: str) -> str:
        return posixpath.join(self.runs, run_id)

    async def agent(self, command: str, payload: dict[str, Any] | None = None, *, timeout: float = 120) -> Any:
        """Run one agent.py command with the remote Python; its result, or a RemoteError."""
        import asyncssh

        line = f"{shlex_python(self.spec.python)} - {command} {shlex.quote(json.dumps(payload or {}))}"
        try:
            proc = await self.conn.run(line, input=AGENT_SOURCE, check=False, timeout=timeout)
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, OSError) as exc:
            raise ConnectionLostError(f"{self.spec.target}: the SSH connection dropped ({exc})") from None
        except asyncssh.TimeoutError:
            raise RemoteError(f"{self.spec.target}: `{command}` took more than {timeout:.0f}s there") from None
        out = (proc.stdout or "").strip().splitlines()
        if proc.exit_status == 127 or not out:
            err = (proc.stderr or "").strip()[-500:]
            raise RemoteError(
                f"{self.spec.target}: cannot run the remote Python {self.spec.python!r} (exit {proc.exit_status}"
                f"{': ' + err if err else ''}); name the interpreter that has torch with --python "
                "(or STUDIO_REMOTE_PYTHON), e.g. --python ~/venv/bin/python")
        try:
            reply = json.loads(out[-1])
        except ValueError:
            raise RemoteError(f"{self.spec.target}: unexpected output from {self.spec.python}: {out[-1][:200]!r}") from None
        if not reply.get("ok"):
            raise RemoteError(f"{self.spec.target}: {command} failed there: {reply.get('error')}")
        return reply["result"]

    async def close(self) -> None:
        try:
            self.sftp.exit()
        except Exception:   # the connection may already be gone
            pass
        self.conn.close()
        try:
            await self.conn.wait_closed()
        except Exception:
            pass


def shlex_python(python: str) -> str:
    """Quote the interpreter for the remote shell but let a leading ~/ expand there."""
    if python.startswith("~/"):
        return "~/" + shlex.quote(python[2:])
    return shlex.quote(python)


async def resolve_root(conn: Any, root: str) -> str:
    if root.startswith("~"):
        home = (await conn.run('printf %s "$HOME"', check=False)).stdout or ""
        if not home.startswith("/"):
            raise RemoteError(f"cannot find the home folder on the remote to place {root}; pass --remote-root /abs/path")
        root = home + root[1:]
    return posixpath.normpath(root)


@asynccontextmanager
async def open_remote(spec: HostSpec) -> AsyncIterator[Remote]:
    conn = await connect(spec)
    try:
        root = await resolve_root(conn, spec.root)
        sftp = await conn.start_sftp_client()
    except BaseException:
        conn.close()
        raise
    remote = Remote(spec, conn, sftp, root)
    try:
        yield remote
    finally:
        await remote.close()
