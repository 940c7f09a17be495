"""LLM providers: where requests go, how fast, and what they cost. Kept in the workspace's
`studio.yaml` under `providers:`.

A provider names the environment variable that holds its API key (`api_key_env`), never the key:
studio.yaml is a file people commit and share. The key is read from the environment only when a
client is built, and goes nowhere else (not the cache key, the database, logs or exports).

With no provider configured, the openai client's own variables are used: OPENAI_BASE_URL (else
api.openai.com) and OPENAI_API_KEY, with the model given by `--model`.
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from ..errors import StudioError

if TYPE_CHECKING:
    from ..workspace import Workspace

DEFAULT_BASE_URL = "https://api.openai.com/v1"
ENV_PROVIDER = "openai-env"  # the name results carry when no provider is configured


@dataclass(frozen=True)
class Provider:
    """One OpenAI-compatible endpoint and the limits the studio keeps to when calling it."""

    name: str
    base_url: str
    model: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    """Name of the environment variable holding the key; empty for servers that need none."""
    concurrency: int = 8
    """Requests in flight at once."""
    requests_per_min: float | None = None
    """Request rate limit; None: no limit beyond concurrency."""
    tokens_per_min: float | None = None
    """Token rate limit (estimated prompt + expected completion tokens), as the provider counts it."""
    input_usd_per_mtok: float | None = None
    """Price of a million prompt tokens in USD; None: unknown (cost reported as 0)."""
    output_usd_per_mtok: float | None = None
    """Price of a million completion tokens in USD."""
    timeout_s: float = 60.0
    """Seconds before one request is abandoned (and retried)."""
    max_attempts: int = 5
    """Tries per request, counting the first, on timeouts, 429 and 5xx."""

    def api_key(self) -> str:
        """The key from the environment, read at call time. Servers without auth get a placeholder
        because the openai client refuses to run without one."""
        if not self.api_key_env:
            return "no-key"
        value = os.environ.get(self.api_key_env)
        if not value:
            raise StudioError(
                f"provider {self.name!r}: environment variable {self.api_key_env} is not set. "
                f"Export it (export {self.api_key_env}=...) before running augmentation; the key is "
                f"never stored in the workspace."
            )
        return value

    @property
    def priced(self) -> bool:
        return self.input_usd_per_mtok is not None and self.output_usd_per_mtok is not None

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return ((prompt_tokens * (self.input_usd_per_mtok or 0.0))
                + (completion_tokens * (self.output_usd_per_mtok or 0.0))) / 1e6

    def public_dict(self) -> dict[str, Any]:
        """What goes into studio.yaml and lineage: everything here is safe to share."""
        out = {k: v for k, v in asdict(self).items() if v is not None}
        out["api_key_env"] = self.api_key_env or ""  # '' (no key) must not fall back to the default
        return out


_FIELDS = {f.name for f in fields(Provider)}
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _validate(where: str, data: dict[str, Any]) -> Provider:
    unknown = set(data) - _FIELDS
    if unknown:
        raise StudioError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(_FIELDS)}.")
    for key in ("name", "base_url"):
        if not data.get(key):
            raise StudioError(f"{where}: field {key!r} is required.")
    if not _NAME_RE.match(str(data["name"])):
        raise StudioError(f"{where}: name {data['name']!r} may use letters, digits, '_', '.', '-' only.")
    if not str(data["base_url"]).startswith(("http://", "https://")):
        raise StudioError(f"{where}: base_url {data['base_url']!r} must start with http:// or https://.")
    env = data.get("api_key_env")
    if env and not _ENV_RE.match(str(env)):
        raise StudioError(
            f"{where}: api_key_env {env!r} is not an environment variable name. It names the variable "
            f"that holds the key (e.g. OPENAI_API_KEY); never put the key itself in studio.yaml."
        )
    try:
        p = Provider(**data)
        for num in ("concurrency", "max_attempts"):
            if int(getattr(p, num)) < 1:
                raise ValueError(f"{num} must be at least 1")
        for num in ("requests_per_min", "tokens_per_min", "input_usd_per_mtok", "output_usd_per_mtok", "timeout_s"):
            v = getattr(p, num)
            if v is not None and float(v) < 0:
                raise ValueError(f"{num} must not be negative")
    except (TypeError, ValueError) as exc:
        raise StudioError(f"{where}: {exc}.") from None
    return p


def list_providers(config: dict[str, Any]) -> list[Provider]:
    raw = config.get("providers") or []
    if not isinstance(raw, list):
        raise StudioError("studio.yaml: providers: expected a list of providers.")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise StudioError(f"studio.yaml: providers[{i}]: expected a mapping.")
        out.append(_validate(f"studio.yaml: providers[{i}]", item))
    return out


def add_provider(ws: Workspace, provider: Provider, *, replace: bool = False) -> None:
    """Add (or with `replace`, overwrite) a provider in the workspace's studio.yaml."""
    _validate("provider", {k: v for k, v in asdict(provider).items() if v is not None})
    config = ws.read_config()
    existing = list_providers(config)
    if any(p.name == provider.name for p in existing) and not replace:
        raise StudioError(f"provider {provider.name!r} already exists in {ws.config_path}; remove it first or pass --replace.")
    kept = [p.public_dict() for p in existing if p.name != provider.name]
    config["providers"] = kept + [provider.public_dict()]
    ws.write_config(config)


def remove_provider(ws: Workspace, name: str) -> None:
    config = ws.read_config()
    existing = list_providers(config)
    if not any(p.name == name for p in existing):
        raise StudioError(f"no provider named {name!r} in {ws.config_path}; `studio providers list` shows them.")
    config["providers"] = [p.public_dict() for p in existing if p.name != name]
    ws.write_config(config)


def resolve(config: dict[str, Any], name: str | None = None, model: str | None = None,
            concurrency: int | None = None) -> Provider:
    """The provider to call: the named one, else the only/first configured one, else the openai
    client's environment variables. `model` and `concurrency` override the provider's."""
    providers = list_providers(config)
    if name:
        match = [p for p in providers if p.name == name]
        if not match:
            known = ", ".join(p.name for p in providers) or "none configured"
            raise StudioError(f"no provider named {name!r} (known: {known}). Add one with `studio providers add`.")
        p = match[0]
    elif providers:
        p = providers[0]
    else:
        p = Provider(name=ENV_PROVIDER, base_url=os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL,
                     api_key_env="OPENAI_API_KEY")
    changes: dict[str, Any] = {}
    if model:
        changes["model"] = model
    if concurrency:
        changes["concurrency"] = int(concurrency)
    if changes:
        p = Provider(**{**asdict(p), **changes})
    if not p.model:
        raise StudioError(f"provider {p.name!r} has no model: pass --model NAME or set model in studio.yaml.")
    return p
