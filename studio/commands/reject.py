"""`studio reject ID... [--reason TEXT]`: mark samples rejected (one undoable operation)."""
from __future__ import annotations

from ._common import add_command
from ._status import add_status_command


def register(sub):
    add_status_command(sub, "reject", "rejected", add_command)
