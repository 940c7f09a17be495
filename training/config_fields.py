"""The training config's fields as a list, read from the pydantic models in training/config.py.

One source for two views: the keys `studio train --set KEY=VALUE` accepts (its --help lists each
with the first sentence of its docstring and its default), and the rows of the Train screen's form
(the screen declares which paths it shows; the label is the field's `title`, the input type its
annotation, the default and the validation its own). No list of fields is written anywhere else.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from .config import TrainConfig
from .errors import ConfigError


@dataclass(frozen=True)
class ConfigField:
    """One settable key of the config: `path` as `--set` spells it (lora.r) and its pydantic field."""

    path: str
    info: FieldInfo

    @property
    def label(self) -> str:
        """A short name for a form: the field's title, else its name in words."""
        return self.info.title or self.path.rsplit(".", 1)[-1].replace("_", " ")

    @property
    def doc(self) -> str:
        """The first sentence of the field's docstring, on one line."""
        text = " ".join((self.info.description or "").split())
        m = re.match(r"(.+?(?<!e\.g)(?<!i\.e)\.)(\s|$)", text)
        return m.group(1) if m else text

    @property
    def default(self) -> Any:
        return self.info.get_default(call_default_factory=True)

    @property
    def kind(self) -> str:
        """The form input's type: integer, number or text."""
        return {int: "integer", float: "number"}.get(self.info.annotation, "text")  # type: ignore[arg-type]

    def value(self, cfg: TrainConfig) -> Any:
        """This field's value in `cfg`."""
        value: Any = cfg
        for name in self.path.split("."):
            value = getattr(value, name)
        return value

    def parse(self, text: str) -> Any:
        """`text` as this field's value, checked by the field's own type and constraints; a
        ConfigError naming the label and the key otherwise."""
        annotated: Any = Annotated[(self.info.annotation, *self.info.metadata)]  # the type with its constraints
        adapter: TypeAdapter[Any] = TypeAdapter(annotated)
        try:
            return adapter.validate_python(text.strip())
        except ValidationError as exc:
            err = exc.errors()[0]
            if err["type"] in ("int_parsing", "int_from_float", "float_parsing"):
                what = "a whole number" if self.kind == "integer" else "a number"
                problem = f"is not {what}"
            else:
                problem = str(err["msg"]).removeprefix("Input ")
            raise ConfigError(f"{self.label} ({self.path}): {text.strip()!r} {problem}") from None


def _walk(model: type[BaseModel], prefix: str) -> list[ConfigField]:
    found: list[ConfigField] = []
    for name, info in model.model_fields.items():
        path = prefix + name
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.extend(_walk(annotation, path + "."))
        else:
            found.append(ConfigField(path, info))
    return found


def config_fields() -> list[ConfigField]:
    """Every settable key of TrainConfig, in the order the models declare them."""
    return _walk(TrainConfig, "")


def config_field(path: str) -> ConfigField:
    for f in config_fields():
        if f.path == path:
            return f
    raise ConfigError(f"the training config has no key {path!r}; `studio train --help` lists them")


def set_help_rows() -> list[tuple[str, str]]:
    """(key, first sentence and default) for every key `--set` takes: `studio train --help`."""
    rows = []
    for f in config_fields():
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        rows.append((f.path, f"{f.doc} (default: {shown})" if shown not in (None, "") else f.doc))
    return rows
