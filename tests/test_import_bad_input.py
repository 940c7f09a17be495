"""Malformed input: each case names the exact `file:line: field` and leaves the workspace as it was.
Then --skip-invalid: the valid rows land, the invalid ones go to the rejects file."""
from __future__ import annotations

import json
import os

import pytest

from curation.errors import StudioError
from curation.importers import import_paths


def snapshot(ws):
    return [ws.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("samples", "imports", "operations")]


GOOD = '{"instruction": "ok", "output": "fine"}'


def lines(*rows: str) -> bytes:
    return ("\n".join(rows) + "\n").encode("utf-8")


# (name, file name, content bytes, expected location text in the message)
CASES = [
    ("broken line mid-jsonl", "d.jsonl", lines(GOOD, '{"instruction": "x", "output": ', GOOD), "d.jsonl:2: json: not valid JSON"),
    ("truncated json array", "d.json", b'[\n {"instruction": "a", "output": "b"},\n {"instruction": "c", "out', "d.json:3: json: "),
    ("array missing comma", "d.json", b'[\n {"instruction": "a", "output": "b"}\n {"instruction": "c", "output": "d"}\n]', "d.json:3: json: "),
    ("missing output", "d.jsonl", lines(GOOD, '{"instruction": "no answer"}'), "d.jsonl:2: output: missing"),
    ("null output", "d.jsonl", lines(GOOD, GOOD, '{"instruction": "q", "output": null}'), "d.jsonl:3: output: is null"),
    ("number as instruction", "d.jsonl", lines('{"instruction": 42, "output": "x"}'), "d.jsonl:1: instruction: must be a string, got number"),
    ("list as output", "d.jsonl", lines(GOOD, '{"instruction": "q", "output": ["a"]}'), "d.jsonl:2: output: must be a string, got list"),
    ("blank instruction", "d.jsonl", lines('{"instruction": " \\u3000 ", "output": "x"}'), "d.jsonl:1: instruction: is empty"),
    ("input not a string", "d.jsonl", lines('{"instruction": "q", "input": {"a": 1}, "output": "x"}'), "d.jsonl:1: input: must be a string, got object"),
    ("row is a list", "d.jsonl", lines(GOOD, '["instruction", "output"]'), "d.jsonl:2: row: expected a JSON object, got list"),
    ("extra data on a line", "d.jsonl", lines(GOOD + ' {"a": 1}'), "d.jsonl:1: json: extra data"),
    ("empty file", "d.jsonl", b"", "d.jsonl:1: file: is empty"),
    ("whitespace-only file", "d.jsonl", b"  \n\n\t\n", "d.jsonl:1: file: is empty"),
    ("empty json array", "d.json", b"[ ]", "d.json:1: file: is an empty JSON array"),
    ("NUL byte", "d.jsonl", lines(GOOD, '{"instruction": "a\x00b", "output": "x"}'), "d.jsonl:2: json: raw NUL byte at column 19"),
    ("unpaired surrogate", "d.jsonl", lines('{"instruction": "bad \\ud800 escape", "output": "x"}'), "d.jsonl:1: instruction: holds an unpaired UTF-16 surrogate"),
    ("history not pairs", "d.jsonl", lines('{"instruction": "q", "output": "a", "history": [["only one"]]}'), "d.jsonl:1: history[0]: must be a [user, assistant] pair"),
    ("id is an object", "d.jsonl", lines('{"id": {"x": 1}, "instruction": "q", "output": "a"}'), "d.jsonl:1: id: must be a string or a number"),
    ("tags not strings", "d.jsonl", lines('{"instruction": "q", "output": "a", "tags": [1, 2]}'), "d.jsonl:1: tags: must be a list of strings"),
    ("unknown sharegpt role", "c.jsonl", lines('{"conversations": [{"from": "human", "value": "hi"}, {"from": "narrator", "value": "x"}]}'), "c.jsonl:1: conversations[1].from: unknown role 'narrator'"),
    ("conversations not a list", "c.jsonl", lines('{"conversations": "hi"}'), "c.jsonl:1: conversations: must be a list of turns, got str"),
    ("sharegpt ends with user", "c.jsonl", lines('{"conversations": [{"from": "human", "value": "hi"}]}'), "c.jsonl:1: conversations[0]: conversation must end with an assistant turn"),
    ("messages wrong role order", "m.jsonl", lines('{"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]}'), "m.jsonl:1: messages[0].role: expected 'user'"),
    ("messages order after system", "m.jsonl", lines('{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "user", "content": "q2"}]}'), "m.jsonl:1: messages[2].role: expected 'assistant'"),
    ("system turn in the middle", "m.jsonl", lines('{"messages": [{"role": "user", "content": "q"}, {"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]}'), "m.jsonl:1: messages[1].role: a system turn may only come first"),
    ("message content missing", "m.jsonl", lines('{"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]}'), "m.jsonl:1: messages[0].content: missing"),
    ("text not a string", "t.jsonl", lines('{"text": "fine"}', '{"text": 12}'), "t.jsonl:2: text: must be a string, got number"),
    ("unknown keys", "u.jsonl", lines('{"question": "q", "answer": "a"}'), "u.jsonl:1: row: cannot tell the format from its keys (answer, question)"),
    ("csv short row", "d.csv", b"instruction,output\nq,a\nonly-one\n", "d.csv:3: row: has 1 fields, the header has 2"),
    ("csv header only", "d.csv", b"instruction,output\n", "d.csv:1: file: has a header but no rows"),
    ("json array element not object", "d.json", b'[\n {"instruction": "a", "output": "b"},\n 5\n]', "d.json:3: row: expected a JSON object, got number (element 2)"),
    ("not parquet", "d.parquet", b"PAR1 this is not parquet", "d.parquet:1: file: not a readable Parquet file"),
    ("bad blank lines keep line numbers", "d.jsonl", b'\n\n' + lines(GOOD, '{"instruction": 1, "output": "x"}'), "d.jsonl:4: instruction: must be a string"),
]


@pytest.mark.parametrize("name,filename,content,where", CASES, ids=[c[0] for c in CASES])
def test_malformed_input_names_the_place_and_changes_nothing(ws, tmp_path, name, filename, content, where):
    good = tmp_path / "good.jsonl"
    good.write_text(GOOD + "\n")
    import_paths(ws, [good])
    before = snapshot(ws)
    src = tmp_path / filename
    src.write_bytes(content)
    with pytest.raises(StudioError) as err:
        import_paths(ws, [src])
    assert where in str(err.value)
    assert snapshot(ws) == before
    assert not (ws.root / "rejects").exists() or not any((ws.root / "rejects").iterdir())


def test_sql_looking_ids_are_kept_as_text(ws, tmp_path):
    src = tmp_path / "sql.jsonl"
    evil = "'; DROP TABLE samples; --"
    src.write_text(json.dumps({"id": evil, "instruction": evil, "output": "x"}) + "\n")
    import_paths(ws, [src])
    assert ws.con.execute("SELECT source_id, instruction FROM samples").fetchall() == [(evil, evil)]


def test_twenty_mb_line(ws, tmp_path):
    """Longer than read_json's object limit: the Python path imports a valid one and places a broken one."""
    big = "長" * (7 * 1024 * 1024)  # 21 MB of UTF-8
    src = tmp_path / "big.jsonl"
    src.write_text(GOOD + "\n" + json.dumps({"instruction": "long", "output": big}, ensure_ascii=False) + "\n")
    assert import_paths(ws, [src]).rows_imported == 2
    broken = tmp_path / "broken.jsonl"
    broken.write_text(GOOD + "\n" + '{"instruction": "long", "output": "' + big + "\n" + GOOD + "\n")
    with pytest.raises(StudioError, match=r"broken.jsonl:2: json: not valid JSON"):
        import_paths(ws, [broken])


@pytest.mark.parametrize("kind", ["missing", "parent-is-file", "folder-without-data", "fifo", "bad-format"])
def test_unreadable_paths(ws, tmp_path, kind):
    before = snapshot(ws)
    path = tmp_path / "x.jsonl"
    expected = {"missing": "no such file or directory", "parent-is-file": "a part of the path is a file",
                "folder-without-data": "no data files in this folder", "fifo": "not a regular file",
                "bad-format": "unknown format 'yaml'"}[kind]
    if kind == "parent-is-file":
        (tmp_path / "afile").write_text("x")
        path = tmp_path / "afile" / "x.jsonl"
    elif kind == "folder-without-data":
        path = tmp_path / "empty_dir"
        path.mkdir()
        (path / "readme.txt").write_text("hi")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "bad-format":
        path.write_text(GOOD)
    with pytest.raises(StudioError, match=expected) as err:
        import_paths(ws, [path], format="yaml" if kind == "bad-format" else None)
    assert kind == "bad-format" or str(path) in str(err.value)
    assert snapshot(ws) == before


def test_many_problems_show_twenty_then_a_count(ws, tmp_path):
    src = tmp_path / "many.jsonl"
    src.write_text("".join('{"instruction": 1, "output": "x"}\n' for _ in range(30)))
    with pytest.raises(StudioError) as err:
        import_paths(ws, [src])
    msg = str(err.value)
    assert "many.jsonl:20: instruction" in msg and "many.jsonl:21:" not in msg and "... and 10 more" in msg


def test_escape_sequences_in_messages_are_made_visible(ws, tmp_path):
    src = tmp_path / "esc.jsonl"
    src.write_text('{"conversations": [{"from": "\\u001b[31mred", "value": "x"}]}\n')
    with pytest.raises(StudioError) as err:
        import_paths(ws, [src])
    from curation.safe_text import visible

    printed = visible(str(err.value))
    assert "\x1b" not in printed and "\\x1b[31mred" in printed


def test_skip_invalid_imports_valid_rows_and_writes_rejects(ws, tmp_path):
    src = tmp_path / "mixed.jsonl"
    src.write_text("\n".join([GOOD, '{"instruction": 5, "output": "x"}', "{broken", '{"instruction": "q2", "output": "a2"}']) + "\n")
    report = import_paths(ws, [src], skip_invalid=True)
    result = report.files[0]
    assert (result.rows_imported, result.rows_rejected) == (2, 2)
    assert result.rejects_file == ws.root / "rejects" / f"mixed-{result.import_id}.jsonl"
    rejects = [json.loads(line) for line in result.rejects_file.read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in rejects] == [(2, "instruction"), (3, "json")]
    assert rejects[1]["raw"] == "{broken" and "must be a string" in rejects[0]["problem"]
    assert ws.con.execute("SELECT source_row FROM samples ORDER BY id").fetchall() == [(1,), (4,)]
    assert ws.con.execute("SELECT rejected FROM imports").fetchone()[0] == 2


def test_one_bad_file_keeps_the_others_out_too(ws, tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(GOOD + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": null, "output": "x"}\n')
    with pytest.raises(StudioError, match="bad.jsonl:1: instruction: is null"):
        import_paths(ws, [good, bad])
    assert snapshot(ws) == [0, 0, 0]


def test_cli_error_is_clean(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": 5, "output": "x"}\n')
    proc = subprocess.run([sys.executable, "-m", "studio.cli", "import", str(bad), "-w", str(tmp_path / "w")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "bad.jsonl:1: instruction: must be a string" in proc.stderr and "--skip-invalid" in proc.stderr
    assert "Traceback" not in proc.stderr
