"""How `studio COMMAND --help` lays out text: the lines an epilog is written in are kept.

A plain wrapper reflows a description or an epilog into one paragraph, so a list of examples runs
together and a long one wraps inside a word (`--preset tiny-` / `demo`). Here each line of a
description or epilog stays a line; a line wider than the terminal wraps at spaces only, except an
example (a line starting with `studio `), which stays whole to copy and paste. Epilogs written on
one line as `examples: A | B | C` (each part starting with `studio `) become one example per line.
"""
from __future__ import annotations

import re
import textwrap

_INLINE_EXAMPLES = re.compile(r"^(examples?):\s+(studio .*)$", re.S)


def example_lines(epilog: str | None) -> str | None:
    """`examples: studio a | studio b` -> "examples:\\n  studio a\\n  studio b"; other text as it is.
    Only ` | ` followed by `studio ` separates examples: a pipe into another program stays."""
    if not epilog or "\n" in epilog:
        return epilog
    m = _INLINE_EXAMPLES.match(epilog.strip())
    if not m:
        return epilog
    parts = re.split(r"\s+\|\s+(?=studio )", m.group(2))
    return f"{m.group(1)}:\n" + "\n".join(f"  {p.strip()}" for p in parts)


def keep_lines(text: str, width: int, indent: str = "") -> str:
    """`text` with its line breaks kept; over-long lines wrapped at spaces only (never inside an
    option like `--max-cost` or a value like `tiny-demo`), examples not at all."""
    out: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            out.append("")
            continue
        lead = indent + line[: len(line) - len(line.lstrip())]
        if line.lstrip().startswith("studio "):  # an example: one line, to copy and paste whole
            out.append(lead + line.strip())
            continue
        # A table row (`  4  every request failed ...`) continues under its text.
        term = re.match(r"\S+\s{2,}", line.strip())
        hang = lead + " " * (term.end() if term else 0)
        out.extend(textwrap.wrap(line.strip(), max(width, 20), initial_indent=lead,
                                 subsequent_indent=hang, break_on_hyphens=False, break_long_words=False))
    return "\n".join(out)
