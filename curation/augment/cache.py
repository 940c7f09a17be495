"""The request cache: every answered request, keyed by what was asked, kept in the workspace.

The key is sha256 over (base_url, model, messages, parameters, template version), never the API
key. Answers are written as they arrive, each in its own small transaction, so a job killed with
kill -9 loses no answered request, and a rerun or resume sends nothing that is already here.

All functions take the DuckDB connection to use: augmentation writes from the one thread that
runs its event loop, through one cursor, never from two threads at once.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable

import duckdb


def request_key(base_url: str, model: str, messages: list[dict[str, str]], params: dict[str, Any], template_version: str) -> str:
    payload = json.dumps(
        {"base_url": base_url.rstrip("/"), "model": model, "messages": messages, "params": params,
         "template_version": template_version},
        ensure_ascii=False, sort_keys=True, separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedAnswer:
    key: str
    content: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


def lookup(con: duckdb.DuckDBPyConnection, keys: Iterable[str]) -> dict[str, CachedAnswer]:
    keys = list(keys)
    if not keys:
        return {}
    rows = con.execute(
        "SELECT key, content, prompt_tokens, completion_tokens, cost_usd FROM llm_cache WHERE key IN (SELECT unnest(?))",
        [keys],
    ).fetchall()
    return {r[0]: CachedAnswer(r[0], r[1], int(r[2] or 0), int(r[3] or 0), float(r[4] or 0.0)) for r in rows}


def store(con: duckdb.DuckDBPyConnection, *, key: str, provider: str, base_url: str, model: str, operation: str,
          template: dict[str, str], request: dict[str, Any], content: str, finish_reason: str | None,
          prompt_tokens: int, completion_tokens: int, cost_usd: float, latency_s: float, job_id: int | None) -> None:
    """Insert one answer. Call inside a transaction (the caller groups it with the samples it yields)."""
    con.execute(
        """INSERT INTO llm_cache (key, provider, base_url, model, operation, template_id, template_version,
               request, content, finish_reason, prompt_tokens, completion_tokens, cost_usd, latency_s, job_id)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING""",
        [key, provider, base_url, model, operation, template["id"], template["version"],
         json.dumps(request, ensure_ascii=False), content, finish_reason, prompt_tokens, completion_tokens,
         cost_usd, latency_s, job_id],
    )


def record_failure(con: duckdb.DuckDBPyConnection, *, job_id: int | None, key: str, sample_id: int | None,
                   reason: str, detail: str, attempts: int) -> None:
    con.execute(
        "INSERT INTO llm_failures (job_id, key, sample_id, reason, detail, attempts) VALUES (?, ?, ?, ?, ?, ?)",
        [job_id, key, sample_id, reason, detail[:2000], attempts],
    )


def applied_keys(con: duckdb.DuckDBPyConnection, keys: Iterable[str]) -> set[str]:
    """Keys whose answers already produced samples (or a judge score): applying them again is skipped."""
    keys = list(keys)
    if not keys:
        return set()
    rows = con.execute("SELECT DISTINCT request_key FROM augment_outputs WHERE request_key IN (SELECT unnest(?))", [keys]).fetchall()
    return {r[0] for r in rows}
