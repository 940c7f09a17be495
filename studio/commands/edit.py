"""`studio edit ID`: edit a sample in $EDITOR as YAML; validated on save, one undoable operation.

The sample is written to a temporary YAML file (multi-line text as `|` blocks, so it reads like
the conversation), $VISUAL or $EDITOR (else `vi`) opens it, and on save the content is checked
with the same validation as import. Invalid YAML or an invalid conversation re-opens the file with
the error at the top; saving it unchanged (or quitting without saving) cancels.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from curation.errors import StudioError

from ._command import Args, argument, option, studio_command

HEADER = """\
# Editing sample {id} (version {version}, {status}). Save and quit to apply; quit without
# saving to cancel. Lines starting with # are ignored.
"""
CHAT_HELP = "# messages: turns alternate user / assistant, starting with user and ending with assistant.\n"


class _Literal(str):
    pass


def _dumper():
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def literal(dumper, value):
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style=style)

    Dumper.add_representer(_Literal, literal)
    return Dumper


def to_yaml(d) -> str:
    import yaml

    if d.kind == "text":
        body: dict[str, Any] = {"text": _Literal(d.text or "")}
        helptext = ""
    else:
        body = {"system": _Literal(d.system) if d.system else None,
                "messages": [{"role": m["role"], "content": _Literal(m["content"])} for m in d.messages]}
        helptext = CHAT_HELP
    dumped = yaml.dump(body, Dumper=_dumper(), allow_unicode=True, sort_keys=False, width=100)
    return HEADER.format(id=d.id, version=d.version, status=d.status) + helptext + dumped


def parse(text: str, kind: str) -> dict[str, Any]:
    """The edited fields, or StudioError saying what is wrong (with the line for YAML errors)."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise StudioError(f"{where}not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise StudioError("expected the fields `system` and `messages` (or `text`) at the top level.")
    allowed = {"text"} if kind == "text" else {"system", "messages"}
    extra = set(data) - allowed
    if extra:
        raise StudioError(f"unknown field(s) {', '.join(sorted(extra))}: this sample has {', '.join(sorted(allowed))}.")
    if kind == "text":
        return {"text": data.get("text")}
    msgs = data.get("messages")
    if not isinstance(msgs, list):
        raise StudioError("messages: must be a list of {role, content}.")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            raise StudioError(f"messages[{i}]: each turn needs exactly `role` and `content`.")
        if not isinstance(m["content"], str):
            m["content"] = "" if m["content"] is None else str(m["content"])
    system = data.get("system")
    if system is not None and not isinstance(system, str):
        raise StudioError("system: must be text or null.")
    return {"system": system, "messages": msgs}


def _editor() -> list[str]:
    cmd = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    return shlex.split(cmd)


@studio_command("edit", "edit a sample in $EDITOR (YAML); `studio undo` restores the previous version")
@argument("id", type=int, metavar="ID", help="sample id to edit")
@option("--reason", help="why (kept in the audit log)")
def command(args: Args) -> int:
    from curation import browse, review

    from ._common import open_ws, out

    with open_ws(args) as ws:
        d = browse.get_sample(ws.con, args.id)
        original = to_yaml(d)
        fd, name = tempfile.mkstemp(prefix=f"studio-sample-{d.id}-", suffix=".yaml")
        path = Path(name)
        try:
            os.close(fd)
            shown = original
            path.write_text(shown, encoding="utf-8")
            while True:
                try:
                    rc = subprocess.call(_editor() + [str(path)])
                except FileNotFoundError:
                    raise StudioError(f"editor {_editor()[0]!r} not found: set $EDITOR (e.g. export EDITOR=nano).") from None
                if rc != 0:
                    out(f"editor exited with status {rc}; sample {d.id} not changed.")
                    return 1
                edited = path.read_text(encoding="utf-8")
                if edited == shown:
                    out(f"no changes; sample {d.id} not changed." if shown is original else f"edit cancelled; sample {d.id} not changed.")
                    return 0
                try:
                    fields = parse(edited, d.kind)
                    op_id = review.edit(ws, d.id, reason=args.reason, **fields)
                except StudioError as exc:
                    body = "\n".join(line for line in edited.splitlines() if not line.startswith(("# ERROR", "# Fix it and save")))
                    shown = f"# ERROR: {exc}\n# Fix it and save, or quit without saving to cancel.\n{body}\n"
                    path.write_text(shown, encoding="utf-8")
                    continue
                if op_id is None:
                    out(f"content unchanged; sample {d.id} not changed.")
                else:
                    out(f"saved sample {d.id} as version {d.version + 1} (operation {op_id}). `studio undo` restores version {d.version}.")
                return 0
        finally:
            path.unlink(missing_ok=True)
