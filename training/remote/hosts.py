"""Which GPU box, and how to reach it safely.

A host is an alias from ~/.ssh/config (asyncssh reads OpenSSH's config: HostName, User, Port,
IdentityFile, ProxyJump) or `user@host[:port]`. Authentication is by key or agent. The server's
host key is always checked against a known_hosts file: an unknown or a changed key refuses the
connection with a message that says which, the offered fingerprint, and the command that fixes it.
There is no option to accept a key silently.

Per-host settings that SSH does not know (the remote Python, the studio's folder there) come from
`HostSpec` fields, filled from command-line flags or `STUDIO_REMOTE_*` environment variables.
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import HostKeyError, RemoteError

DEFAULT_ROOT = "~/.finetune-studio"
DEFAULT_PYTHON = "python3"


@dataclass(frozen=True)
class HostSpec:
    """A remote GPU box and the studio's settings for it."""

    target: str
    """As the user wrote it: an ~/.ssh/config alias, `host`, `host:port` or `user@host[:port]`."""
    host: str
    port: int | None = None
    """None: the port from ~/.ssh/config, else 22."""
    user: str | None = None
    """None: the user from ~/.ssh/config, else the local user name."""
    python: str = DEFAULT_PYTHON
    """The remote interpreter that has torch (e.g. ~/venv/bin/python); a non-login shell's PATH
    often lacks the one you use interactively."""
    root: str = DEFAULT_ROOT
    """The studio's folder on the remote: blobs/, lib/ (the uploaded trainer) and runs/."""
    known_hosts: str | None = None
    """known_hosts file to check the server key against; None: $STUDIO_KNOWN_HOSTS, else
    ~/.ssh/known_hosts."""
    identity: tuple[str, ...] = field(default=())
    """Private key files; empty: IdentityFile from ~/.ssh/config, the agent, ~/.ssh/id_*."""
    ssh_config: str | None = None
    """OpenSSH client config; None: $STUDIO_SSH_CONFIG, else ~/.ssh/config when present."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["identity"] = list(self.identity)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "HostSpec":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["identity"] = tuple(known.get("identity") or ())
        return cls(**known)

    def label(self) -> str:
        return self.target

    def ssh_command(self) -> str:
        """The plain OpenSSH command that reaches this host, for messages."""
        port = f"-p {self.port} " if self.port else ""
        user = f"{self.user}@" if self.user else ""
        return f"ssh {port}{user}{self.host}"


_TARGET = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:@\s\[\]]+))(?::(?P<port>\d+))?$")


def parse_host(text: str, *, python: str | None = None, root: str | None = None,
               known_hosts: str | os.PathLike | None = None, identity: str | os.PathLike | None = None,
               ssh_config: str | os.PathLike | None = None) -> HostSpec:
    """`gpu1`, `gpu1:2222`, `me@gpu1`, `me@[::1]:2222` -> HostSpec. Unset settings fall back to
    STUDIO_REMOTE_PYTHON, STUDIO_REMOTE_ROOT, STUDIO_KNOWN_HOSTS, STUDIO_SSH_IDENTITY and
    STUDIO_SSH_CONFIG."""
    match = _TARGET.match(text.strip())
    if not match:
        raise RemoteError(f"host {text!r}: not an ~/.ssh/config alias or user@host[:port]; "
                          "write it like gpu1 or me@10.0.0.5:2222")
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 0 < port < 65536:
        raise RemoteError(f"host {text!r}: port {port} is out of range 1-65535")
    env = os.environ.get
    ident = identity or env("STUDIO_SSH_IDENTITY")
    return HostSpec(
        target=text.strip(), host=match["v6"] or match["host"], port=port, user=match["user"],
        python=python or env("STUDIO_REMOTE_PYTHON") or DEFAULT_PYTHON,
        root=root or env("STUDIO_REMOTE_ROOT") or DEFAULT_ROOT,
        known_hosts=str(known_hosts) if known_hosts else env("STUDIO_KNOWN_HOSTS"),
        identity=(str(ident),) if ident else (),
        ssh_config=str(ssh_config) if ssh_config else env("STUDIO_SSH_CONFIG"),
    )


def known_hosts_path(spec: HostSpec) -> Path:
    return Path(spec.known_hosts or os.environ.get("STUDIO_KNOWN_HOSTS") or "~/.ssh/known_hosts").expanduser()


def _ssh_config_paths(spec: HostSpec) -> list[str]:
    path = spec.ssh_config or os.environ.get("STUDIO_SSH_CONFIG")
    if path:
        if not Path(path).expanduser().is_file():
            raise RemoteError(f"SSH config {path} does not exist; fix STUDIO_SSH_CONFIG or unset it to use ~/.ssh/config")
        return [str(Path(path).expanduser())]
    default = Path("~/.ssh/config").expanduser()
    return [str(default)] if default.is_file() else []


class _KnownHostsLookup:
    """known_hosts as a lookup function: asyncssh calls it with the host and port it resolved
    from ~/.ssh/config, and it remembers whether the file had any entry for them, which tells an
    unknown host from a changed key after asyncssh refuses."""

    def __init__(self, path: Path):
        import asyncssh

        self.path = path
        self.hosts = asyncssh.read_known_hosts(str(path)) if path.is_file() else asyncssh.SSHKnownHosts()
        self.had_entry = False
        self.asked: tuple[str, str, int | None] | None = None

    def __call__(self, host: str, addr: str, port: int | None):
        import asyncssh

        self.asked = (host, addr, port)
        result = asyncssh.match_known_hosts(self.hosts, host, addr, port)
        if result[0] or result[1] or result[3]:   # host keys, CA keys or X.509 certs
            self.had_entry = True
        return result


async def _offered_fingerprint(host: str, port: int | None) -> str:
    """The key the server offers, fetched only to print it in the refusal; never trusted."""
    import asyncio

    import asyncssh

    try:
        key = await asyncio.wait_for(asyncssh.get_server_host_key(host, port or 22), 10)
    except Exception:   # best effort: the refusal stands without a fingerprint
        return ""
    if key is None:
        return ""
    return f"{key.get_algorithm()} key {key.get_fingerprint('sha256')}"


async def connect(spec: HostSpec, *, timeout: float = 20.0):
    """An open `asyncssh.SSHClientConnection` to the host, or a RemoteError saying why not."""
    import asyncssh

    kh_path = known_hosts_path(spec)
    lookup = _KnownHostsLookup(kh_path)
    kwargs: dict[str, Any] = dict(
        config=_ssh_config_paths(spec), known_hosts=lookup, connect_timeout=timeout,
        keepalive_interval=10, keepalive_count_max=3,
    )
    if spec.port:
        kwargs["port"] = spec.port
    if spec.user:
        kwargs["username"] = spec.user
    if spec.identity:
        kwargs["client_keys"] = [str(Path(p).expanduser()) for p in spec.identity]
    try:
        return await asyncssh.connect(spec.host, **kwargs)
    except asyncssh.HostKeyNotVerifiable:
        raise await _host_key_refusal(spec, lookup) from None
    except asyncssh.PermissionDenied:
        keys = ", ".join(spec.identity) or "IdentityFile from ~/.ssh/config, the SSH agent, ~/.ssh/id_*"
        raise RemoteError(
            f"{spec.target}: login refused, no key was accepted (tried {keys}). Put your public key in "
            f"~/.ssh/authorized_keys on that box (`{spec.ssh_command().replace('ssh ', 'ssh-copy-id ', 1)}`) or name the key with "
            "--identity / STUDIO_SSH_IDENTITY") from None
    except asyncssh.KeyImportError as exc:
        raise RemoteError(f"{spec.target}: cannot read the SSH key: {exc}; load it into ssh-agent "
                          "(ssh-add) or name another key with --identity") from None
    except (OSError, TimeoutError, asyncssh.Error) as exc:
        where = f"{spec.host}:{spec.port}" if spec.port else spec.host
        raise RemoteError(f"{spec.target}: cannot connect to {where}: {exc or type(exc).__name__}; "
                          "check the name, the port and that sshd runs there "
                          f"(`{spec.ssh_command()}` should work)") from None


async def _host_key_refusal(spec: HostSpec, lookup: _KnownHostsLookup) -> HostKeyError:
    host, _addr, port = lookup.asked or (spec.host, spec.host, spec.port)
    name = f"[{host}]:{port}" if port and port != 22 else host
    offered = await _offered_fingerprint(host, port)
    offered_text = f" The server offered {offered}." if offered else ""
    kh = lookup.path
    if lookup.had_entry:
        return HostKeyError(
            f"{spec.target}: HOST KEY CHANGED. {kh} holds a different key for {name} than the server "
            f"presented.{offered_text} Someone may be intercepting the connection, or the box was "
            f"reinstalled. The connection was refused. If you know the box was reinstalled, check the "
            f"new fingerprint with its owner, remove the old entry with `ssh-keygen -f {kh} -R '{name}'`"
            " and connect once with ssh to record the new key.")
    return HostKeyError(
        f"{spec.target}: unknown host {name}: it is not in {kh}, and the studio never trusts a host "
        f"key it has not seen.{offered_text} Check that fingerprint with the box's owner, then record "
        f"it by connecting once with `ssh {('-p ' + str(port) + ' ') if port and port != 22 else ''}"
        f"{(spec.user + '@') if spec.user else ''}{host}` (answer yes), or set STUDIO_KNOWN_HOSTS to a "
        "known_hosts file that has it.")
