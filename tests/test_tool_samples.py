"""A tool-use sample stays whole when the studio makes a new version or a copy of it: an edit
(review.edit) and an augmentation copy keep its tool calls, tool turns and tool schemas."""
from __future__ import annotations

import json
from pathlib import Path

from tests.augment_helpers import FAST, configure

TOOLS_FILE = Path(__file__).parent / "data" / "openai_tools.jsonl"


def _import_first_tool_sample(ws) -> int:
    from curation.importers import import_paths

    import_paths(ws, [TOOLS_FILE])
    row = ws.con.execute("SELECT id FROM samples WHERE tools IS NOT NULL ORDER BY id LIMIT 1").fetchall()
    assert row, "the test file holds tool-use rows"
    return int(row[0][0])


def _stored(ws, sample_id: int) -> tuple[list[dict], list[dict]]:
    msgs, tools = ws.con.execute("SELECT messages, tools FROM samples WHERE id = ?", [sample_id]).fetchall()[0]
    return json.loads(msgs), json.loads(tools) if tools else []


def test_an_edit_keeps_the_tool_calls(ws):
    from curation import review

    sid = _import_first_tool_sample(ws)
    msgs, tools = _stored(ws, sid)
    assert any(m.get("tool_calls") for m in msgs) and tools
    edited = [dict(m) for m in msgs]
    first_user = next(i for i, m in enumerate(edited) if m["role"] == "user")
    edited[first_user]["content"] += " Please."
    assert review.edit(ws, sid, messages=edited) is not None  # was refused: "expected {role, content}"
    after, after_tools = _stored(ws, sid)
    assert after == edited and after_tools == tools


def test_an_augmented_copy_keeps_tool_calls_and_tools(ws, fake, monkeypatch):
    from curation.augment.jobs import Spec, run

    sid = _import_first_tool_sample(ws)
    msgs, tools = _stored(ws, sid)
    configure(ws, fake, monkeypatch)
    result = run(ws, Spec(op="rewrite", n=1, ids=[sid], checks=False), client_options=FAST)
    assert result.state == "done" and len(result.new_sample_ids) == 1
    copy, copy_tools = _stored(ws, result.new_sample_ids[0])
    assert copy_tools == tools  # the copy lost its tool schemas
    assert [m.get("tool_calls") for m in copy] == [m.get("tool_calls") for m in msgs]  # ... and its calls
    assert [m["role"] for m in copy] == [m["role"] for m in msgs]
