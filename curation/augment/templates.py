"""Prompt templates: plain text files a person can edit, one per operation and language.

Packaged defaults live in `curation/augment/templates/{en,zh}/OP.txt`; a file at
`WORKSPACE/templates/{en,zh}/OP.txt` overrides the default. The language is the sample's
(Chinese samples get the zh template, everything else en).

File format:

    # version: 3                  <- optional; without it the version is the content's hash
    # any other leading '#' lines are comments
    === system
    text...
    === user
    text with {{placeholders}}

Every result records the template's id (`en/rewrite`), version and source (package/workspace), and
the version is part of the request cache key: editing a template gives fresh requests.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import StudioError

OPERATIONS = ("rewrite", "answers", "reverse", "judge")
LANGS = ("en", "zh")
_VERSION_RE = re.compile(r"^#\s*version:\s*(\S+)\s*$")
_SECTION_RE = re.compile(r"^===\s*(system|user)\s*$")
_PLACEHOLDER_RE = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True)
class Template:
    id: str            # 'en/rewrite'
    version: str
    source: str        # 'package' or 'workspace'
    path: str          # where it was read from (relative for the package)
    system: str | None
    user: str | None

    def render(self, **values: Any) -> list[dict[str, str]]:
        """The chat messages, placeholders filled. Unknown placeholders are a template error."""
        out = []
        for role, text in (("system", self.system), ("user", self.user)):
            if text is None:
                continue
            out.append({"role": role, "content": _fill(text, values, self)})
        return out

    def record(self) -> dict[str, str]:
        return {"id": self.id, "version": self.version, "source": self.source}


def _fill(text: str, values: dict[str, Any], tpl: Template) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            raise StudioError(
                f"{tpl.path}: placeholder {{{{{name}}}}} is not known for {tpl.id}; "
                f"known here: {', '.join('{{' + k + '}}' for k in sorted(values))}."
            )
        return str(values[name])

    return _PLACEHOLDER_RE.sub(sub, text)


def parse(text: str, *, id: str, source: str, path: str) -> Template:
    lines = text.splitlines()
    version = None
    i = 0
    while i < len(lines) and (lines[i].startswith("#") or not lines[i].strip()):
        m = _VERSION_RE.match(lines[i])
        if m:
            version = m.group(1)
        i += 1
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for lineno, line in enumerate(lines[i:], start=i + 1):
        m = _SECTION_RE.match(line)
        if m:
            current = m.group(1)
            if current in sections:
                raise StudioError(f"{path}:{lineno}: section '=== {current}' appears twice.")
            sections[current] = []
        elif current is None:
            if line.strip():
                raise StudioError(f"{path}:{lineno}: text before the first '=== system' or '=== user' line.")
        else:
            sections[current].append(line)
    if not sections:
        raise StudioError(f"{path}: no '=== system' or '=== user' section; see the packaged templates for the format.")
    body = {k: "\n".join(v).strip("\n") for k, v in sections.items()}
    if version is None:
        version = "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return Template(id=id, version=version, source=source, path=path, system=body.get("system"), user=body.get("user"))


def template_lang(sample_lang: str | None) -> str:
    return "zh" if sample_lang == "zh" else "en"


def load(op: str, lang: str, workspace_root: Path | None = None) -> Template:
    if op not in OPERATIONS:
        raise StudioError(f"unknown augment operation {op!r}; choose one of {', '.join(OPERATIONS)}.")
    return load_named(op, lang, workspace_root)


def load_named(name: str, lang: str, workspace_root: Path | None = None) -> Template:
    """Template NAME (`templates/LANG/NAME.txt`): the workspace's override if present, else the
    packaged one; a language without its own packaged file falls back to English."""
    lang = lang if lang in LANGS else "en"
    tid = f"{lang}/{name}"
    if workspace_root is not None:
        override = Path(workspace_root) / "templates" / lang / f"{name}.txt"
        if override.is_file():
            return parse(override.read_text(encoding="utf-8"), id=tid, source="workspace", path=str(override))
    res = resources.files("curation.augment").joinpath("templates", lang, f"{name}.txt")
    if lang != "en" and not res.is_file():
        return load_named(name, "en", workspace_root)
    return parse(res.read_text(encoding="utf-8"), id=tid, source="package", path=f"curation/augment/templates/{tid}.txt")


class TemplateSet:
    """Templates of one job, loaded once per (operation, language)."""

    def __init__(self, workspace_root: Path | None):
        self.root = workspace_root
        self._cache: dict[tuple[str, str], Template] = {}

    def get(self, op: str, sample_lang: str | None) -> Template:
        key = (op, template_lang(sample_lang))
        if key not in self._cache:
            self._cache[key] = load(op, key[1], self.root)
        return self._cache[key]
