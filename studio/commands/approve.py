"""`studio approve ID... [--reason TEXT]`: mark samples approved (one undoable operation)."""
from __future__ import annotations

from ._status import status_command

command = status_command("approve", "approved")
