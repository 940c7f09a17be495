"""The checks an augment Spec's values must pass before any request is made: `studio augment` runs
them before it opens the workspace (naming the flag), the Augment screen on every change (showing
each problem under its field)."""
from __future__ import annotations

import re
from typing import Any

from ..errors import StudioError

LANG_CODE = re.compile(r"^(other|[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*)$")  # zh, en, pt-BR; curation.lang detects zh ja ko en other


def spec_problems(spec: Any) -> dict[str, str]:
    """What is wrong with an augment Spec's values, by field name, each a short sentence. Empty when
    all is well."""
    problems: dict[str, str] = {}
    if spec.lang is not None and not LANG_CODE.match(str(spec.lang)):
        problems["lang"] = f"{str(spec.lang)[:12]!r} is not a language code (zh, en, ja, ko, other)"
    if spec.limit is not None and spec.limit < 1:
        problems["limit"] = "at least 1 sample (empty: no limit)"
    try:
        spec.resolved_n()
    except StudioError:
        problems["n"] = "between 1 and 50 outputs per sample"
    if spec.max_cost is not None and not spec.max_cost > 0:
        problems["max_cost"] = "more than 0 USD (empty: no cap)"
    if spec.reject_below is not None and not 1 <= spec.reject_below <= 5:
        problems["reject_below"] = "a judge score from 1 to 5"
    if spec.temperature is not None and not 0 <= spec.temperature <= 2:
        problems["temperature"] = "between 0 and 2"
    if spec.concurrency is not None and spec.concurrency < 1:
        problems["concurrency"] = "at least 1 request in flight"
    return problems
