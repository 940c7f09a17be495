"""LLM augmentation through any OpenAI-compatible API: rewrite instructions, write alternative
answers, reverse-generate instructions, judge samples. See `jobs` for the entry points.

Names load lazily: `import curation.augment` costs nothing, and `openai` itself is imported only
when a job sends its first request.
"""
from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Spec": "jobs", "AugmentJob": "jobs", "Result": "jobs", "run": "jobs", "resume": "jobs",
    "estimate": "jobs", "list_jobs": "jobs", "usage_by_provider": "jobs", "last_unfinished": "jobs",
    "Provider": "providers", "add_provider": "providers", "remove_provider": "providers",
    "list_providers": "providers", "Estimate": "cost", "TOKENIZER": "cost",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
