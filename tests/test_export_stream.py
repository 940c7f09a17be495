"""Export in one pass, range by range (issue 20): a split's bytes do not depend on how its rows are
cut into id ranges and Arrow batches, nor on the order DuckDB hands the rows over; the rows
format_row writes (tool use, multi-turn) and the rows a format refuses are handled inside the pass,
a refused row named by the line it would have had; the files are written and hashed on background
threads (a failed write reaches the caller as it was raised); and an export loads no pandas."""
from __future__ import annotations

import errno
import hashlib
import json
import re
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation import export, hashed_writer, review, store
from curation.errors import StudioError
from curation.importers import import_paths
from curation.samples import Sample, chat
from tests.conftest import ROOT
from tests.test_export_targets import TOOL_ROWS


def _mixed(ws, tmp_path) -> list[int]:
    """Plain chat rows (some with a system prompt, one empty answer), multi-turn and tool-use rows
    (format_row writes those), raw text; all approved."""
    src = tmp_path / "tools.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in TOOL_ROWS * 2), encoding="utf-8")
    samples = [chat(f"question {i} \"quoted\"", f"answer {i}\n", system="be brief" if i % 3 == 0 else None,
                    source_file="a.json", source_row=i) for i in range(25)]
    samples[7] = chat("question 7", "")  # OpenAI refuses an empty assistant turn
    samples += [Sample(kind="text", text=f"raw text {i}") for i in range(6)]
    with ws.transaction():
        store.insert_samples(ws.con, samples[:12])
    import_paths(ws, [src], format="messages")
    with ws.transaction():
        store.insert_samples(ws.con, samples[12:])
    ids = [r[0] for r in ws.con.execute("SELECT id FROM samples ORDER BY id").fetchall()]
    review.approve(ws, ids)
    return ids


def _split(m: export.Manifest) -> dict:
    """Everything a split holds: each file's bytes, the lineage table, the manifest's entries."""
    files = {p.name: p.read_bytes() for p in sorted(m.path.iterdir()) if p.suffix == ".jsonl"}
    return {"files": files, "lineage": pq.read_table(m.path / "lineage.parquet").to_pydict(),
            "entries": m.data["files"], "skipped": m.data.get("skipped"), "counts": m.data["counts"]}


@pytest.mark.parametrize("fmt", ["messages", "openai", "sharegpt", "alpaca"])
def test_ranges_and_batches_do_not_change_a_byte(ws, tmp_path, monkeypatch, fmt):
    _mixed(ws, tmp_path)
    whole = export.export_split(ws, "whole", format=fmt, val=0.3, skip_invalid=True)
    monkeypatch.setattr(export, "_RANGE", 4)  # 8 queries, each read in batches of 3 rows
    monkeypatch.setattr(export, "_BATCH", 3)
    cut = export.export_split(ws, "cut", format=fmt, val=0.3, skip_invalid=True)
    assert _split(cut) == _split(whole)
    assert bool(whole.data["skipped"]) == (fmt != "messages")  # the others refuse rows here: refusals took part
    assert sum(whole.data["counts"].values()) + len(whole.data["skipped"]) == 37


def test_a_refused_row_is_named_by_the_line_it_would_have_had(ws, tmp_path, monkeypatch):
    ids = _mixed(ws, tmp_path)
    monkeypatch.setattr(export, "_RANGE", 5)
    monkeypatch.setattr(export, "_BATCH", 2)
    with pytest.raises(StudioError) as err:
        export.export_split(ws, "oa", format="openai", val=0.5)
    assert not (ws.splits_dir / "oa").exists() and list(ws.splits_dir.iterdir()) == []
    problems = re.findall(r"\n  (train|val)\.jsonl:(\d+) \(sample (\d+)\): (.*)", str(err.value))
    assert [p[3] for p in problems] == ["messages[1].content: empty assistant turn"]
    part, line, sid = problems[0][0], int(problems[0][1]), int(problems[0][2])
    assert sid == ids[7]
    m = export.export_split(ws, "oa", format="openai", val=0.5, skip_invalid=True)
    assert m.data["skipped"] == [{"sample_id": sid, "part": part, "problems": [problems[0][3]]}]
    # the line it would have had: one more than the rows of its file with smaller ids
    assert line == 1 + sum(1 for i in m.sample_ids(part) if i < sid)
    assert part == ("val" if sid in export.assign(ids, 0.5, 42) else "train")
    lineage = pq.read_table(m.path / "lineage.parquet").to_pylist()
    for key in ("train", "val", "train.text", "val.text"):
        rows = [r for r in lineage if r["file"] == key]
        assert [r["line"] for r in rows] == list(range(1, len(rows) + 1))
        assert [r["sample_id"] for r in rows] == sorted(r["sample_id"] for r in rows)
        assert len(rows) == len((m.path / f"{key}.jsonl").read_text(encoding="utf-8").splitlines())


def test_rows_stored_out_of_id_order_are_exported_in_id_order(ws, tmp_path):
    _mixed(ws, tmp_path)
    before = export.export_split(ws, "before", val=0.3)
    with ws.transaction():  # the same rows, stored last id first
        ws.con.execute("CREATE TEMP TABLE reversed AS SELECT * FROM samples ORDER BY id DESC")
        ws.con.execute("DELETE FROM samples")
        ws.con.execute("INSERT INTO samples SELECT * FROM reversed")
        ws.con.execute("DROP TABLE reversed")
    assert ws.con.execute("SELECT id FROM samples LIMIT 1").fetchall()[0][0] > 1  # stored order changed
    after = export.export_split(ws, "after", val=0.3)
    assert _split(after) == _split(before)


def test_batches_are_put_in_id_order():
    def batch(ids):
        return pa.record_batch([pa.array(ids, pa.int64())], names=["sample_id"])

    table = pa.Table.from_batches([batch([7, 8, 9]), batch([1, 2, 3]), batch([4, 5])])
    assert [b.column(0).to_pylist() for b in export._in_id_order(table)] == [[1, 2, 3], [4, 5], [7, 8, 9]]
    table = pa.Table.from_batches([batch([1, 5, 3]), batch([4, 2])])  # rows out of order inside batches
    assert [i for b in export._in_id_order(table) for i in b.column(0).to_pylist()] == [1, 2, 3, 4, 5]


def test_pieces_written_in_part_are_written_whole(tmp_path, monkeypatch):
    real = hashed_writer.os.write

    def short_writev(fd, pieces):  # the OS may write less than asked: here at most 5 bytes a call
        return real(fd, b"".join(bytes(p) for p in pieces)[:5])

    monkeypatch.setattr(hashed_writer.os, "writev", short_writev)
    data = b"".join(f'{{"n": {i}}}\n'.encode() for i in range(300))
    pieces = [memoryview(data)[i:i + 17] for i in range(0, len(data), 17)]
    writer = hashed_writer.HashedWriter()
    writer.open("a", tmp_path / "a.jsonl")
    writer.write("a", pieces[:100])
    writer.write("a", pieces[100:])
    assert writer.close() == {"a": hashlib.sha256(data).hexdigest()}
    assert (tmp_path / "a.jsonl").read_bytes() == data


def test_a_failed_write_is_raised_in_the_caller(tmp_path, monkeypatch):
    def full(f, pieces):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hashed_writer, "_write_all", full)
    writer = hashed_writer.HashedWriter()
    writer.open("a", tmp_path / "a.jsonl")
    writer.write("a", [memoryview(b"x" * 10)])
    with pytest.raises(OSError) as err:
        for _ in range(50):  # the thread's error stops the next write, or the close
            writer.write("a", [memoryview(b"x" * 10)])
        writer.close()
    assert err.value.errno == errno.ENOSPC
    writer.abort()  # after an error: returns, raises nothing


def test_an_export_loads_no_pandas(ws, tmp_path):
    _mixed(ws, tmp_path)
    ws.close()
    code = ("import sys; from pathlib import Path; from curation.workspace import open_workspace; "
            "from curation.export import export_split; "
            f"export_split(open_workspace(Path({str(ws.root)!r})), 'v1', val=0.3); print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"], out.stdout + out.stderr  # pyarrow's pa.array / to_numpy load it: 0.25 s
