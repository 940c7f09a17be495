"""YAML with line numbers, so that an error can say `file:line: field: what is wrong`.

`parse_yaml` reads a document once into its data and a map from each key's path (`lora.r`,
`stages[1].split`) to its 1-based line. The config, presets and pipeline files are read through it.

curation/yaml_lines.py is the same module: training may not import curation (a GPU box has only
this package and a split directory) and curation may not import training, so these few lines are
written twice; tests/test_yaml_lines.py keeps the two copies identical.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class YamlDoc:
    """A parsed document: its data, where it came from, and the line of every key and list item."""

    data: Any
    origin: str
    lines: dict[str, int] = field(default_factory=dict)

    def where(self, path: str = "") -> str:
        """`origin:line` for a key path (its nearest known parent's line), or `origin:1` for the root."""
        while path:
            if path in self.lines:
                return f"{self.origin}:{self.lines[path]}"
            path = path[:max(path.rfind("."), path.rfind("["), 0)]
        return f"{self.origin}:1"


def parse_yaml(text: str, origin: str, error: type[Exception] = ValueError) -> YamlDoc:
    """Parse `text`; invalid YAML raises `error` naming `origin:line` and what the parser saw."""
    import yaml  # here, not at the top: importing this module stays free for the CLI

    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{origin}:{mark.line + 1}" if mark else origin
        raise error(f"{at}: not valid YAML ({getattr(exc, 'problem', None) or exc}); fix the syntax") from None
    return YamlDoc(data, origin, key_lines(node))


def key_lines(node: Any) -> dict[str, int]:
    """Each key path in a composed YAML node mapped to its 1-based line."""
    import yaml

    lines: dict[str, int] = {}

    def walk(n: Any, prefix: str) -> None:
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                path = f"{prefix}.{k.value}" if prefix else str(k.value)
                lines[path] = k.start_mark.line + 1
                walk(v, path)
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                path = f"{prefix}[{i}]"
                lines[path] = v.start_mark.line + 1
                walk(v, path)

    if node is not None:
        walk(node, "")
    return lines
