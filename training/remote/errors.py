"""Errors a user can cause over SSH: unknown or changed host key, refused login, unreachable box,
a remote without Python or torch. Each message names the host and says what to do."""
from __future__ import annotations

from training.errors import TrainingError


class RemoteError(TrainingError):
    """Something on the way to, or on, the remote GPU box that the user can fix."""


class HostKeyError(RemoteError):
    """The server's host key is unknown or differs from known_hosts: the connection is refused."""


class ConnectionLostError(RemoteError):
    """The SSH connection dropped; a detached run keeps going and `studio attach` resumes it."""
