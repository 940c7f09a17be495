"""Undo by kind: one table in code (curation.undo.undo_handlers) says how each kind of operation
is undone. Every kind the curation engine records is in it, and a workspace written by an older
studio, whose operations named their undo code in `details` ("curation.dedup:undo_operation", a
recipe), migrates (0007 drops those keys) and still undoes each step, as `studio undo` reports."""
from __future__ import annotations

import json
import re
from pathlib import Path

from curation import dedup, quality, undo
from curation.augment.templates import OPERATIONS
from curation.importers import import_paths
from curation.workspace import open_workspace
from studio.cli import main
from tests.conftest import ROOT

# What older studios stored in an operation's details, by kind.
OLD_UNDO_KEYS = {
    "dedup": {"undo_handler": "curation.dedup:undo_operation"},
    "keeper": {"undo_handler": "curation.dedup:undo_operation"},
    "quality": {"undo_handler": "curation.quality:undo_operation"},
    "augment:rewrite": {"undo_handler": "curation.augment.jobs:undo_augment"},
    "augment:lineage": {"undo": {"clear_sample_columns": ["duplicate_of"]}},
}


def _recorded_kinds() -> set[str]:
    """The operation kinds the curation sources record (`record_operation("kind"` / f"augment:{op}")."""
    kinds = set()
    for path in (ROOT / "curation").rglob("*.py"):
        for kind in re.findall(r'record_operation\(\s*f?"([^"]+)"', path.read_text(encoding="utf-8")):
            kinds |= {kind.replace("{spec.op}", op) for op in OPERATIONS} if "{" in kind else {kind}
    return kinds


def test_every_recorded_kind_has_an_undo():
    kinds = _recorded_kinds()
    assert {"status", "edit", "import", "dedup", "keeper", "quality", "augment:lineage", "augment:judge"} <= kinds
    assert kinds - {"undo"} <= set(undo.undo_handlers()), kinds - set(undo.undo_handlers())


def _write_data(path: Path) -> Path:
    rows = [{"instruction": "How do I sort a list in Python?", "output": "Use sorted(xs) or xs.sort()."},
            {"instruction": "How do I sort a list in Python ?", "output": "Use sorted(xs) or xs.sort()."},
            {"instruction": "What is the capital of France?", "output": "I'm sorry, but I can't help with that request."},
            {"instruction": "Name a prime number.", "output": "7"}]
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def _age(ws_path: Path) -> None:
    """Make the workspace what an older studio left: the undo keys in details, migration 0007 not applied."""
    with open_workspace(ws_path) as ws:
        for op_id, kind in ws.con.execute("SELECT id, kind FROM operations").fetchall():
            if kind in OLD_UNDO_KEYS:
                ws.con.execute("UPDATE operations SET details = json_merge_patch(details, ?) WHERE id = ?",
                               [json.dumps(OLD_UNDO_KEYS[kind]), op_id])
        ws.con.execute("DELETE FROM schema_migrations WHERE version = 7")


def _state(ws) -> tuple:
    one = lambda sql: tuple(ws.con.execute(sql).fetchall())  # noqa: E731
    return (one("SELECT id, duplicate_of, cluster_id FROM samples ORDER BY id"),
            one("SELECT id, keeper_id FROM dup_clusters ORDER BY id"), one("SELECT count(*) FROM quality_flags"),
            one("SELECT count(*) FROM quality_values"))


def test_an_old_workspace_migrates_and_still_undoes_each_step(ws_path, tmp_path, capsys):
    data = _write_data(tmp_path / "pairs.json")
    with open_workspace(ws_path) as ws:
        states = [_state(ws)]  # the workspace after each step, to come back to one undo at a time
        import_paths(ws, [data])
        ids = [r[0] for r in ws.con.execute("SELECT id FROM samples ORDER BY id").fetchall()]
        states.append(_state(ws))
        dedup.find_duplicates(ws, dedup.DedupParams(), workers=1)
        (cluster,) = dedup.list_clusters(ws.con)
        states.append(_state(ws))
        other = next(m["sample_id"] for m in cluster["members"] if not m["keeper"])
        assert dedup.set_keeper(ws, cluster["cluster_id"], other) is not None
        states.append(_state(ws))
        assert quality.run_quality(ws, workers=1).flagged_samples
        states.append(_state(ws))
        # an augment:lineage operation as curation/augment/jobs.py records one: a new sample marked
        # duplicate_of what it repeats
        with ws.transaction():
            op = ws.record_operation("augment:lineage", sample_count=1, details={"job_id": 1, "field": "instruction"})
            ws.con.execute("INSERT INTO op_samples VALUES (?, ?, 'pending', 'pending', 1, 1)", [op, ids[3]])
            ws.con.execute("UPDATE samples SET duplicate_of = ? WHERE id = ?", [ids[2], ids[3]])
        kinds = [r[0] for r in ws.con.execute("SELECT kind FROM operations ORDER BY id").fetchall()]
    assert kinds == ["import", "dedup", "keeper", "quality", "augment:lineage"]
    assert len(set(states)) == len(states)  # every step changed something undo must put back
    _age(ws_path)

    with open_workspace(ws_path) as ws:
        undo_keys = ws.con.execute("SELECT count(*) FROM operations WHERE json_exists(details, '$.undo_handler') "
                                   "OR json_exists(details, '$.undo')").fetchall()[0][0]
        dedup_details = json.loads(ws.con.execute("SELECT details FROM operations WHERE kind = 'dedup'").fetchall()[0][0])
    assert undo_keys == 0
    assert dedup_details["threshold"] == dedup.DEFAULT_THRESHOLD and "undo_note" in dedup_details  # the rest stays
    for kind in reversed(kinds):
        assert main(["undo", "-w", str(ws_path)]) == 0
        out = capsys.readouterr().out
        assert re.fullmatch(rf"undid operation \d+: {kind}, [\d,]+ samples?\n", out), out
        with open_workspace(ws_path) as ws:
            assert _state(ws) == states.pop(), kind
    assert not states
