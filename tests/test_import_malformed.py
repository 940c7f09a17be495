"""Malformed input through `studio import` (in-process, as a person types it): each case gets one
clear line on stderr naming what, where and what to do, no traceback, an exit status that tells the
truth (0 imported, 1 some files left out with --skip-invalid, 2 nothing imported), and a workspace
left as it was where the file is refused. Covers link loops, deep JSON, folders named like files,
repeated source ids, the row's own id in problems, files of no known format, whole-invalid files
under --skip-invalid, and sample ids after a failed import (issue 15 items 8-9, issue 16 item 9)."""
from __future__ import annotations

import json

import pytest

from curation.workspace import open_workspace
from studio.cli import main

GOOD = '{"instruction": "ok", "output": "fine"}'
GOOD2 = '{"instruction": "second", "output": "row"}'


def lines(*rows: str) -> str:
    return "".join(r + "\n" for r in rows)


def studio_import(capsys, ws_dir, *args) -> tuple[int, str, list[str]]:
    """(exit status, stdout, stderr lines other than progress)."""
    rc = main(["import", *map(str, args), "-w", str(ws_dir)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return rc, out, [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("import:")]


def state(ws_dir):
    """What an import can change: rows of samples, imports, operations, and the rejects files."""
    with open_workspace(ws_dir) as ws:
        tables = {t: ws.con.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in ("imports", "operations")}
        tables["samples"] = ws.con.execute("SELECT id, source_file, source_row FROM samples ORDER BY id").fetchall()
    rejects = ws_dir / "rejects"
    tables["rejects"] = sorted(p.name for p in rejects.iterdir()) if rejects.exists() else []
    return tables


def sample_ids(ws_dir) -> list[int]:
    with open_workspace(ws_dir) as ws:
        return [r[0] for r in ws.con.execute("SELECT id FROM samples ORDER BY id").fetchall()]


@pytest.fixture
def ws_dir(tmp_path, capsys):
    """A workspace that already holds one import, so 'unchanged' means something."""
    seed = tmp_path / "seed.jsonl"
    seed.write_text(lines('{"instruction": "seed", "output": "row"}'))
    rc, _, _ = studio_import(capsys, tmp_path / "ws", seed)
    assert rc == 0
    return tmp_path / "ws"


# -- 1. symbolic-link loops ------------------------------------------------------------------------
def test_symlink_loop_named_directly_is_one_line(tmp_path, ws_dir, capsys):
    (tmp_path / "a.jsonl").symlink_to("b.jsonl")
    (tmp_path / "b.jsonl").symlink_to("a.jsonl")
    before = state(ws_dir)
    rc, _, err = studio_import(capsys, ws_dir, tmp_path / "a.jsonl")
    assert rc == 2 and len(err) == 1
    assert "a.jsonl: a symbolic link loop (" in err[0] and "-> b.jsonl -> a.jsonl" in err[0]
    assert state(ws_dir) == before


def test_symlink_loop_on_the_way_is_one_line(tmp_path, ws_dir, capsys):
    (tmp_path / "loop").symlink_to("loop")
    rc, _, err = studio_import(capsys, ws_dir, tmp_path / "loop" / "x.jsonl")
    assert rc == 2 and len(err) == 1 and "link loop" in err[0]


def test_folder_import_passes_over_link_loops_with_a_warning(tmp_path, ws_dir, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "good.jsonl").write_text(lines(GOOD))
    (folder / "loop1.jsonl").symlink_to("loop2.jsonl")
    (folder / "loop2.jsonl").symlink_to("loop1.jsonl")
    (folder / "up").symlink_to("..")  # a link to its own parent: not a data file, not followed
    (folder / "gone.jsonl").symlink_to("nowhere.jsonl")
    rc, out, err = studio_import(capsys, ws_dir, folder)
    assert rc == 0
    assert "data/good.jsonl: 1 rows imported" in out
    assert [e.split(":")[:2] for e in err] == [["studio", " warning"]] * 3
    assert any("data/loop1.jsonl: a symbolic link loop" in e and "skipped it" in e for e in err)
    assert any("data/gone.jsonl: a broken symbolic link" in e for e in err)


# -- 2. JSON nested too deep -----------------------------------------------------------------------
DEEP = 100_000


@pytest.mark.parametrize("name,content,where", [
    ("deep.json", "[" * DEEP + "]" * DEEP, "deep.json:1: json: JSON nested deeper than 100 levels"),
    ("obj.json", '[\n{"instruction": "q", "output": "a"},\n' + '{"a":' * DEEP + "1" + "}" * DEEP + "\n]",
     "obj.json:3: json: JSON nested deeper than 100 levels"),
    ("multi.json", '{"instruction": "q",\n "output": "a",\n "x": ' + "[" * DEEP + "]" * DEEP + "}",
     "multi.json:3: json: JSON nested deeper than 100 levels"),
], ids=["array-of-arrays", "object-in-array", "object-over-lines"])
def test_deep_json_file_is_one_line(tmp_path, ws_dir, capsys, name, content, where):
    src = tmp_path / name
    src.write_text(content)
    before = state(ws_dir)
    rc, _, err = studio_import(capsys, ws_dir, src)
    assert rc == 2 and len(err) == 1 and where in err[0]
    assert state(ws_dir) == before


@pytest.mark.parametrize("deep_row", [
    '{"a":' * DEEP + "1" + "}" * DEEP,                                     # Python's json gives up
    json.dumps({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
                "meta": json.loads("[" * 150 + "]" * 150)}),            # json copes; the limit holds
], ids=["recursion", "past-the-limit"])
def test_deep_jsonl_row_is_rejected_and_the_rest_imported(tmp_path, ws_dir, capsys, deep_row):
    src = tmp_path / "d.jsonl"
    src.write_text(lines('{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}', deep_row))
    before = state(ws_dir)
    rc, _, err = studio_import(capsys, ws_dir, src)
    assert rc == 2 and "d.jsonl:2: json: JSON nested deeper than 100 levels" in "\n".join(err)
    assert state(ws_dir) == before
    rc, out, err = studio_import(capsys, ws_dir, src, "--skip-invalid")
    assert rc == 0 and err == []
    assert "1 rows imported" in out and "1 rejected" in out
    rejects = [json.loads(x) for x in next((ws_dir / "rejects").iterdir()).read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in rejects] == [(2, "json")] and rejects[0]["raw"] == deep_row


def test_deep_json_in_a_csv_cell(tmp_path, ws_dir, capsys):
    src = tmp_path / "d.csv"
    src.write_text('messages\n"' + "[" * DEEP + "]" * DEEP + '"\n')  # a 200 KB cell: longer than csv's default limit
    rc, _, err = studio_import(capsys, ws_dir, src)
    assert rc == 2 and "d.csv:2: messages: JSON nested deeper than 100 levels" in "\n".join(err)


# -- 3. a folder named like a data file ------------------------------------------------------------
def test_folder_named_like_a_file_asks_for_the_folder_form(tmp_path, ws_dir, capsys):
    folder = tmp_path / "x.jsonl"
    folder.mkdir()
    (folder / "part1.jsonl").write_text(lines(GOOD))
    before = state(ws_dir)
    rc, _, err = studio_import(capsys, ws_dir, folder)
    assert rc == 2 and len(err) == 1
    assert "x.jsonl is a folder, not a file" in err[0] and f"{folder}/" in err[0]
    assert state(ws_dir) == before
    rc, out, err = studio_import(capsys, ws_dir, f"{folder}/")
    assert rc == 0 and "x.jsonl/part1.jsonl: 1 rows imported" in out


# -- 4. source ids repeated within one file --------------------------------------------------------
@pytest.mark.parametrize("kind", ["alpaca", "sharegpt"])  # the fast (DuckDB) path and the Python path
def test_duplicate_source_ids_are_named_and_all_rows_kept(tmp_path, ws_dir, capsys, kind):
    def row(i, sid):
        if kind == "alpaca":
            return json.dumps({"id": sid, "instruction": f"q{i}", "output": "a"})
        return json.dumps({"id": sid, "conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": "a"}]})

    ids = ["a", "a", "b", "b", "b", "c"] + [f"r{i // 2}" for i in range(12)]  # a, b, r0..r5 repeat: 8 ids
    src = tmp_path / "dups.jsonl"
    src.write_text(lines(*(row(i, sid) for i, sid in enumerate(ids))))
    rc, out, err = studio_import(capsys, ws_dir, src, "--json")
    assert rc == 0
    result = json.loads(out)["files"][0]
    assert result["rows_imported"] == len(ids)
    assert result["duplicate_source_id_count"] == 8
    assert list(result["duplicate_source_ids"].items())[:2] == [("a", 2), ("b", 3)]
    assert len(result["duplicate_source_ids"]) == 5
    other = tmp_path / "dups2.jsonl"
    other.write_text(lines(row(1, "x"), row(2, "x")))
    rc, out, err = studio_import(capsys, ws_dir, other)
    assert rc == 0 and err == []
    assert "warning: 1 source id appears on more than one row: x (2 rows)" in out


def test_duplicate_ids_summary_lists_the_first_few_and_a_count(tmp_path, ws_dir, capsys):
    src = tmp_path / "many.jsonl"
    src.write_text(lines(*(json.dumps({"id": f"id{i // 2}", "instruction": f"q{i}", "output": "a"}) for i in range(20))))
    rc, out, _ = studio_import(capsys, ws_dir, src)
    assert rc == 0 and "20 rows imported" in out
    assert "warning: 10 source ids appear on more than one row: id0 (2 rows), id1 (2 rows), id2 (2 rows), id3 (2 rows), id4 (2 rows) and 5 more" in out


# -- 5. problems name the row's own id -------------------------------------------------------------
@pytest.mark.parametrize("row,where", [
    ({"id": "conv-7", "conversations": [{"from": "human", "value": "hi"}, {"from": "narrator", "value": "x"}]},
     "c.jsonl:2: conversations[1].from: unknown role 'narrator'"),
    ({"id": 42, "messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q2"}]},
     "c.jsonl:2: messages[1].role: expected 'assistant'"),
    ({"_id": "conv-7", "conversations": [{"from": "human", "value": "hi"}]}, "c.jsonl:2: conversations[0]:"),
], ids=["sharegpt", "messages-numeric-id", "sharegpt-_id"])
def test_turn_errors_name_the_conversation_id(tmp_path, ws_dir, capsys, row, where):
    ok = row.copy()
    key = "conversations" if "conversations" in row else "messages"
    ok[key] = ([{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}] if key == "conversations"
               else [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    ok["id" if "id" in row else "_id"] = "fine-1"
    src = tmp_path / "c.jsonl"
    src.write_text(lines(json.dumps(ok), json.dumps(row)))
    rc, _, err = studio_import(capsys, ws_dir, src)
    line = next(e for e in err if where in e)
    sid = row.get("id", row.get("_id"))
    assert rc == 2 and line.endswith(f"(id={sid})")
    rc, out, _ = studio_import(capsys, ws_dir, src, "--skip-invalid")
    assert rc == 0 and f"(id={sid})" in out
    rejects = [json.loads(x) for x in next((ws_dir / "rejects").iterdir()).read_text().splitlines()]
    assert rejects[0]["id"] == str(sid)


def test_an_id_with_an_unpaired_surrogate_is_shown_escaped(tmp_path, ws_dir, capsys):
    src = tmp_path / "s.jsonl"
    src.write_text(lines('{"id": "bad \\ud800 id", "instruction": 5, "output": "x"}', GOOD))
    rc, out, err = studio_import(capsys, ws_dir, src, "--skip-invalid")
    assert rc == 0 and err == [] and "s.jsonl:1: instruction: must be a string, got number 5 (id=bad \\ud800 id)" in out
    rejects = [json.loads(x) for x in next((ws_dir / "rejects").iterdir()).read_text().splitlines()]
    assert rejects[0]["id"] == "bad \\ud800 id"


# -- 6. --skip-invalid and a file with no valid row ------------------------------------------------
def test_skip_invalid_file_with_no_valid_row_fails_that_file(tmp_path, ws_dir, capsys):
    bad = tmp_path / "allbad.jsonl"
    bad.write_text(lines('{"instruction": 5, "output": "x"}', '{"instruction": "q"}'))
    good = tmp_path / "good.jsonl"
    good.write_text(lines(GOOD, GOOD2))
    before = state(ws_dir)
    rc, out, err = studio_import(capsys, ws_dir, bad, good, "--skip-invalid")
    assert rc == 1 and len(err) == 1
    assert err[0].startswith("studio: error: ") and "allbad.jsonl: not imported: none of its 2 rows is valid" in err[0]
    assert "allbad.jsonl:1: instruction: must be a string" in err[0]
    assert "good.jsonl: 2 rows imported" in out and "allbad" not in out
    after = state(ws_dir)
    assert len(after["imports"]) == len(before["imports"]) + 1 and after["rejects"] == []
    # Nothing of the failed file was recorded: once fixed, it imports.
    bad.write_text(lines('{"instruction": "5", "output": "x"}'))
    rc, out, err = studio_import(capsys, ws_dir, bad)
    assert rc == 0 and "allbad.jsonl: 1 rows imported" in out


def test_skip_invalid_single_file_with_no_valid_row_exits_1_and_json_says_so(tmp_path, ws_dir, capsys):
    bad = tmp_path / "allbad.jsonl"
    bad.write_text(lines('{"instruction": 5, "output": "x"}'))
    before = state(ws_dir)
    rc, out, _ = studio_import(capsys, ws_dir, bad, "--skip-invalid", "--json")
    assert rc == 1
    report = json.loads(out)
    assert report["files_failed"] == 1 and report["files"][0]["error"].startswith("none of its 1 rows is valid")
    assert state(ws_dir) == before


def test_help_documents_the_exit_status(capsys):
    with pytest.raises(SystemExit):
        main(["import", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 every file was imported" in text
    assert "1 with --skip-invalid: some files were not imported" in text and "2 nothing was imported" in text


# -- 7. a file of no known format in a batch -------------------------------------------------------
DATASET_INFO = {"alpaca_en_demo": {"file_name": "alpaca_en_demo.json"},
                "glaive_toolcall_en_demo": {"file_name": "glaive_toolcall_en_demo.json", "formatting": "sharegpt",
                                            "columns": {"messages": "conversations", "tools": "tools"}}}


def test_llama_factory_dataset_info_is_recognised(tmp_path, ws_dir, capsys):
    data = tmp_path / "data"
    data.mkdir()
    info = data / "dataset_info.json"
    info.write_text(json.dumps(DATASET_INFO, indent=2))
    good = data / "alpaca_en_demo.json"
    good.write_text(json.dumps([json.loads(GOOD), json.loads(GOOD2)]))
    before = state(ws_dir)
    rc, _, err = studio_import(capsys, ws_dir, info, good)
    assert rc == 2 and len(err) == 1
    assert "dataset_info.json:1: file: this is LLaMA-Factory's dataset index, not data: import the files it lists" in err[0]
    assert "alpaca_en_demo.json, glaive_toolcall_en_demo.json" in err[0] and "--skip-invalid" in err[0]
    assert state(ws_dir) == before
    rc, out, err = studio_import(capsys, ws_dir, info, good, "--skip-invalid")
    assert rc == 1 and len(err) == 1 and "dataset_info.json: not imported:" in err[0]
    assert "alpaca_en_demo.json: 2 rows imported" in out


def test_llama_factory_folder_passes_over_its_index(tmp_path, ws_dir, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset_info.json").write_text(json.dumps(DATASET_INFO))
    (data / "alpaca_en_demo.json").write_text(json.dumps([json.loads(GOOD)]))
    rc, out, err = studio_import(capsys, ws_dir, data)
    assert rc == 0 and err == []
    assert "dataset_info.json: skipped: data/dataset_info.json:1: file: this is LLaMA-Factory's dataset index" in out
    assert "alpaca_en_demo.json: 1 rows imported" in out


@pytest.mark.parametrize("name,content,why", [
    ("notes.txt", b"just some notes\n", "cannot tell the file type"),
    ("keys.jsonl", b'{"question": "q", "answer": "a"}\n', "cannot tell the format from its keys"),
    ("latin.jsonl", '{"instruction": "caf\u00e9", "output": "x"}\n'.encode("latin-1"), "not valid UTF-8"),
    ("cut.json", b'[\n{"instruction": "q", "output": "a"},\n{"instr', "not valid JSON: Unterminated string starting at column 2"),
], ids=["unknown-type", "unknown-keys", "encoding", "truncated-array"])
def test_skip_invalid_leaves_out_a_file_it_cannot_read_and_imports_the_rest(tmp_path, ws_dir, capsys, name, content, why):
    odd = tmp_path / name
    odd.write_bytes(content)
    good = tmp_path / "good.jsonl"
    good.write_text(lines(GOOD))
    before = state(ws_dir)
    rc, _, err = studio_import(capsys, ws_dir, odd, good)
    assert rc == 2 and len(err) == 1 and why in err[0] and "--skip-invalid" in err[0]
    assert state(ws_dir) == before
    rc, out, err = studio_import(capsys, ws_dir, odd, good, "--skip-invalid")
    assert rc == 1 and len(err) == 1
    assert err[0].startswith(f"studio: error: {odd}: not imported: ") and why in err[0]
    assert "good.jsonl: 1 rows imported" in out


# -- 8. sample ids after a failed import -----------------------------------------------------------
@pytest.mark.parametrize("good_rows", [[GOOD, GOOD2],  # the fast path takes the ids
                                       ['{"instruction": "q", "output": "a", "tags": ["t"]}', GOOD2]],  # the Python path
                         ids=["fast-path", "python-path"])
def test_failed_imports_do_not_use_up_sample_ids(tmp_path, capsys, good_rows):
    ws = tmp_path / "fresh"
    good = tmp_path / "good.jsonl"
    good.write_text(lines(*good_rows))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines('{"instruction": null, "output": "x"}'))
    for _ in range(2):  # the good file's rows are inserted, then the bad file rolls the import back
        rc, _, _ = studio_import(capsys, ws, good, bad)
        assert rc == 2
    assert state(ws)["samples"] == []
    rc, _, _ = studio_import(capsys, ws, good)
    assert rc == 0 and sample_ids(ws) == [1, 2]
    with open_workspace(ws) as w:
        assert w.con.execute("SELECT id FROM operations").fetchall() == [(1,)]
    more = tmp_path / "more.jsonl"
    more.write_text(lines('{"instruction": "third", "output": "x"}', '{"instruction": "fourth", "output": "y"}'))
    rc, _, _ = studio_import(capsys, ws, more, bad)
    assert rc == 2
    rc, _, _ = studio_import(capsys, ws, more)
    assert rc == 0 and sample_ids(ws) == [1, 2, 3, 4]
    with open_workspace(ws) as w:
        assert w.con.execute("SELECT id FROM operations ORDER BY id").fetchall() == [(1,), (2,)]
