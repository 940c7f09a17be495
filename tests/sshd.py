"""A real OpenSSH server on 127.0.0.1 for the remote-training tests.

`sshd` starts `/usr/sbin/sshd -D -e -f CONFIG` with a fresh host key, a fresh user key and an
authorized_keys file in tmp folders, on a free port, as the current user (root in CI, hence
`PermitRootLogin yes`). The "remote" is this machine, so a test's remote python is this venv's.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"


@dataclass(frozen=True)
class SshServer:
    host: str
    port: int
    user: str
    client_key: Path          # private key the client authenticates with
    known_hosts: Path         # holds the server's real host key for [127.0.0.1]:port
    host_key_pub: Path
    proc: subprocess.Popen

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path, comment: str) -> None:
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)


def _wait_for_banner(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {proc.stderr.read().decode(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                if s.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("sshd did not answer on its port")


def start_sshd(base: Path) -> SshServer:
    if not os.path.exists(SSHD):
        pytest.skip("OpenSSH's sshd is not installed (apt-get install openssh-server)")
    base.mkdir(parents=True, exist_ok=True)
    host_key = base / "host_ed25519"
    client_key = base / "id_ed25519"
    _keygen(host_key, "test-host")
    _keygen(client_key, "test-client")
    authorized = base / "authorized_keys"
    shutil.copy(client_key.with_suffix(".pub"), authorized)
    authorized.chmod(0o600)
    port = _free_port()
    config = base / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\n"
        f"AuthorizedKeysFile {authorized}\nPidFile {base / 'sshd.pid'}\n"
        "StrictModes no\nUsePAM no\nPermitRootLogin yes\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nSubsystem sftp internal-sftp\n"
        "LogLevel ERROR\nMaxStartups 50\n"
    )
    if os.geteuid() == 0:
        # sshd running as root insists on its compiled-in privilege-separation folder; the
        # Debian package creates it at boot, a container may not have it yet.
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _wait_for_banner(port, proc)
    known_hosts = base / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key.with_suffix('.pub').read_text().strip()}\n")
    import getpass

    return SshServer("127.0.0.1", port, getpass.getuser(), client_key, known_hosts,
                     host_key.with_suffix(".pub"), proc)


def stop_sshd(server: SshServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
    if server.proc.stderr:
        server.proc.stderr.close()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    stop_sshd(server)
