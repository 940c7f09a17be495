"""`studio reject ID... [--reason TEXT]`: mark samples rejected (one undoable operation)."""
from __future__ import annotations

from ._status import status_command

command = status_command("reject", "rejected")
