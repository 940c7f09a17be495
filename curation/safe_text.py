"""Show untrusted text without letting it drive the terminal.

Imported data may hold ANSI escape sequences, carriage returns or other control characters. They
are kept in the workspace byte for byte, but whatever prints them (CLI, studio) goes through
`visible()`, which turns every control character except newline and tab into a visible escape
(`\\x1b`, `\\r`), so a sample can never recolour, clear or retitle the user's terminal.
"""
from __future__ import annotations

import re

# C0 controls except \t and \n, DEL, and C1 controls (0x80-0x9f: 0x9b is a one-byte CSI).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")  # bidi overrides can disguise text


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    if ch == "\r":
        return "\\r"
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def visible(text: str | None, *, single_line: bool = False) -> str:
    """Return `text` with control characters shown as escapes; `single_line` also escapes \\n and \\t."""
    if text is None:
        return ""
    out = _BIDI.sub(_escape, _CONTROL.sub(_escape, text))
    if single_line:
        out = out.replace("\n", "\\n").replace("\t", "\\t")
    return out
