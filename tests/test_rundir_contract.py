"""docs/contracts.md's status.json row and training.rundir.RunStatus say the same thing: every field of
the model is documented in that row, every key the row documents is a field, and the states it lists
are RunState's. Also the model's promises: unknown keys survive a write, missing keys read as defaults."""
from __future__ import annotations

import json
import re

from tests.conftest import ROOT
from training.rundir import RunState, RunStatus, read_status, write_status


def status_row() -> str:
    text = (ROOT / "docs" / "contracts.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| `status.json` |")]
    assert len(rows) == 1, rows
    return rows[0]


def documented_keys(row: str) -> set[str]:
    """The keys of the row's `{...}` list: the first code span that starts with a brace."""
    span = next(s for s in re.findall(r"`([^`]*)`", row) if s.startswith("{"))
    return set(re.findall(r'"(\w+)"', span))


def test_every_status_field_is_documented_and_every_documented_key_is_a_field():
    keys = documented_keys(status_row())
    fields = set(RunStatus.model_fields)
    assert fields - keys == set(), f"RunStatus fields missing from docs/contracts.md: {sorted(fields - keys)}"
    assert keys - fields == set(), f"documented keys RunStatus lacks: {sorted(keys - fields)}"


def test_the_documented_states_are_run_states_and_final_ones_are_the_ends():
    row = status_row()
    listed = re.search(r"state is ((?:`\w+`(?:, | or )?)+)", row)
    assert listed, row
    assert re.findall(r"`(\w+)`", listed.group(1)) == [s.value for s in RunState]
    assert {s for s in RunState if s.is_final} == {RunState.DONE, RunState.FAILED, RunState.CANCELLED}
    assert RunState.of("lost") is None and RunState.of("done") is RunState.DONE


def test_unknown_keys_survive_a_write_and_missing_keys_read_as_defaults(tmp_path):
    assert read_status(tmp_path) == RunStatus()  # no file yet: queued, nothing else known
    (tmp_path / "status.json").write_text(json.dumps({"state": "running", "from_a_newer_trainer": {"x": 1},
                                                      "step": "not a number"}))
    st = read_status(tmp_path)
    assert st.state == RunState.RUNNING and st.step is None and st.model_extra == {"from_a_newer_trainer": {"x": 1}}
    written = write_status(tmp_path, step=3)
    data = json.loads((tmp_path / "status.json").read_text())
    assert data["from_a_newer_trainer"] == {"x": 1} and data["step"] == 3 and data["state"] == "running"
    assert written.step == 3 and read_status(tmp_path) == written
    (tmp_path / "status.json").write_text("{torn")
    st = read_status(tmp_path)
    assert st.state == RunState.FAILED and "not valid JSON" in st.error
