"""Importing each supported format into a real workspace: rows, lineage (file, row, id), encodings,
field mapping, the same file twice, and the fast path storing exactly what the Python path stores."""
from __future__ import annotations

import json

import pytest

from curation import store
from curation.importers import import_paths
from curation.samples import from_row
from curation.sql_json import messages_sql
from tests.conftest import SAMPLE_DATA


def rows(ws, where="TRUE"):
    # messages as every reader takes them: the fast import stores none for its rows (sql_json.messages_sql)
    cur = ws.con.execute(f"SELECT * REPLACE ({messages_sql()} AS messages) FROM samples WHERE {where} ORDER BY id")
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


ALPACA = [
    {"id": "a-1", "instruction": "把这句话翻译成英文", "input": "你好，世界", "output": "Hello, world"},
    {"_id": 7, "instruction": "Name a prime.", "input": "", "output": "7", "system": "Be brief."},
    {"uid": "u3", "instruction": "Continue", "output": "Sure.", "history": [["Hi", "Hello!"]], "tags": ["chat"]},
]


def test_alpaca_jsonl_keeps_turns_lineage_and_ids(ws, tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", ALPACA)
    report = import_paths(ws, [src])
    assert report.rows_imported == 3 and report.files[0].format == "alpaca"
    got = rows(ws)
    first = from_row(got[0])
    assert first.instruction == "把这句话翻译成英文\n\n你好，世界" and first.answer == "Hello, world"
    assert [(r["source_file"], r["source_row"], r["source_id"]) for r in got] == [("a.jsonl", 1, "a-1"), ("a.jsonl", 2, "7"), ("a.jsonl", 3, "u3")]
    assert got[1]["system"] == "Be brief." and got[1]["instruction"] == "Name a prime."
    multi = from_row(got[2])
    assert [(m.role, m.content) for m in multi.messages] == [("user", "Hi"), ("assistant", "Hello!"), ("user", "Continue"), ("assistant", "Sure.")]
    assert multi.tags == ("chat",)
    for r in got:
        assert r["content_hash"] == from_row(r).content_hash()
        assert r["lang"] == from_row(r).detected_lang()
    imp = ws.con.execute("SELECT id, rows, format, op_id FROM imports").fetchall()
    op = ws.con.execute("SELECT kind, sample_count, details FROM operations").fetchall()
    assert imp[0][:3] == (1, 3, "alpaca") and op[0][0] == "import" and op[0][1] == 3
    details = json.loads(op[0][2])
    assert details["import_id"] == 1 and details["rows"] == 3 and details["first_sample_id"] == got[0]["id"]


def test_same_file_twice_adds_nothing(ws, tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", ALPACA)
    import_paths(ws, [src])
    copy = tmp_path / "renamed.jsonl"
    copy.write_bytes(src.read_bytes())
    again = import_paths(ws, [src, copy])
    assert [f.skipped_as_already_imported for f in again.files] == [True, True]
    assert "already imported as import #1" in again.files[1].summary()
    assert ws.count() == 3 and ws.con.execute("SELECT count(*) FROM operations").fetchone()[0] == 1


def test_content_duplicates_in_another_file_are_kept_for_dedup(ws, tmp_path):
    import_paths(ws, [write_jsonl(tmp_path / "a.jsonl", ALPACA[:1])])
    import_paths(ws, [write_jsonl(tmp_path / "b.jsonl", ALPACA[:1] + ALPACA[1:2])])
    assert ws.count() == 3


def test_fast_path_stores_what_the_python_path_stores(ws_path, tmp_path):
    """Plain alpaca JSONL goes through DuckDB's read_json; add `tags` and the Python path takes it."""
    from curation.workspace import open_workspace

    texts = ["Explain DNS.", "解释一下DNS是什么？", "ＤＮＳ 是什么", "Кто ты?", "日本語のテキストです", "한국어 문장",
             "mixed 中文 and English words here", "ctrl \x1b[31m red \x07 bell", "emoji 😀 ok", "   ", "x" * 2100 + "中"]
    recs = [{"instruction": t if t.strip() else "blank input row", "input": t, "output": f"answer {i}：{t}", "id": i}
            for i, t in enumerate(texts)]
    fast_src = write_jsonl(tmp_path / "fast.jsonl", recs)
    slow_src = write_jsonl(tmp_path / "slow.jsonl", [dict(r, tags=[]) for r in recs])
    columns = f"kind, system, {messages_sql()}, text, instruction, answer, lang, tags, source_row, source_id, content_hash"
    out = {}
    for name, src in (("fast", fast_src), ("slow", slow_src)):
        with open_workspace(tmp_path / name) as w:
            report = import_paths(w, [src])
            assert report.files[0].fast_path is (name == "fast")
            assert store.fill_all_derived(w.con) == (len(texts) if name == "fast" else 0)  # language and search text
            out[name] = w.con.execute(f"SELECT {columns}, search_text FROM samples ORDER BY id").fetchall()
    assert len(out["fast"]) == len(texts)
    for f, s in zip(out["fast"], out["slow"]):
        assert f == s  # messages too, byte for byte: stored by the Python path, built on read for the fast one


@pytest.mark.parametrize("fmt", ["json", "jsonl-named-json"])
def test_json_array_and_jsonl_named_json(ws, tmp_path, fmt):
    src = tmp_path / "data.json"
    if fmt == "json":
        src.write_text(json.dumps(ALPACA, ensure_ascii=False, indent=2), encoding="utf-8")
    else:
        write_jsonl(src, ALPACA)
    assert import_paths(ws, [src]).rows_imported == 3
    assert [r["source_row"] for r in rows(ws)] == [1, 2, 3]


def test_sharegpt_messages_and_text(ws, tmp_path):
    share = write_jsonl(tmp_path / "s.jsonl", [{"id": "c1", "conversations": [
        {"from": "system", "value": "sys"}, {"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"},
        {"from": "user", "value": "more"}, {"from": "chatgpt", "value": "ok"}]}])
    msgs = write_jsonl(tmp_path / "m.jsonl", [{"messages": [
        {"role": "system", "content": "S"}, {"role": "user", "content": [{"type": "text", "text": "parts"}]},
        {"role": "assistant", "content": "A"}]}])
    text = write_jsonl(tmp_path / "t.jsonl", [{"text": "raw \x1b[2J text", "id": "t1"}])
    report = import_paths(ws, [share, msgs, text])
    assert [f.format for f in report.files] == ["sharegpt", "messages", "text"]
    s, m, t = (from_row(r) for r in rows(ws))
    assert s.system == "sys" and [x.role for x in s.messages] == ["user", "assistant", "user", "assistant"]
    assert m.system == "S" and m.instruction == "parts"
    assert t.kind == "text" and t.text == "raw \x1b[2J text" and t.source_id == "t1"


def test_csv_reports_file_lines_and_tsv(ws, tmp_path):
    src = tmp_path / "d.csv"
    src.write_text('instruction,input,output\n"multi\nline",,"a"\nsecond,,b\n', encoding="utf-8")
    tsv = tmp_path / "d.tsv"
    tsv.write_text("text\nhello tsv\n", encoding="utf-8")
    import_paths(ws, [src, tsv])
    got = rows(ws)
    assert [(r["instruction"], r["source_row"]) for r in got[:2]] == [("multi\nline", 2), ("second", 4)]
    assert got[2]["text"] == "hello tsv"


def test_parquet_and_save_to_disk(ws, tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"instruction": "q1", "output": "a1", "id": 5}]), tmp_path / "p.parquet")
    ds = datasets.Dataset.from_list([{"conversations": [{"from": "human", "value": "h"}, {"from": "gpt", "value": "g"}]}] * 2)
    ds.save_to_disk(str(tmp_path / "hf"))
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list([{"text": "t1"}]), "test": datasets.Dataset.from_list([{"text": "t2"}])})
    dd.save_to_disk(str(tmp_path / "hfdict"))
    report = import_paths(ws, [tmp_path / "p.parquet", tmp_path / "hf", tmp_path / "hfdict"])
    assert [(f.format, f.rows_imported) for f in report.files] == [("alpaca", 1), ("sharegpt", 2), ("text", 2)]
    assert rows(ws)[0]["source_id"] == "5"
    assert import_paths(ws, [tmp_path / "hf"]).files[0].skipped_as_already_imported


@pytest.mark.parametrize("encoding,arg", [("utf-8-sig", None), ("utf-16", None), ("gbk", "gbk")])
def test_encodings(ws, tmp_path, encoding, arg):
    src = tmp_path / "e.jsonl"
    src.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ALPACA[:2]).encode(encoding))
    import_paths(ws, [src], encoding=arg)
    assert rows(ws)[0]["instruction"] == "把这句话翻译成英文\n\n你好，世界"


def test_gbk_without_encoding_says_where_and_what_to_pass(ws, tmp_path):
    from curation.errors import StudioError

    src = tmp_path / "g.jsonl"
    src.write_bytes(b'{"instruction": "ok", "output": "ok"}\n' + json.dumps({"instruction": "中文", "output": "好"}, ensure_ascii=False).encode("gbk") + b"\n")
    with pytest.raises(StudioError) as err:
        import_paths(ws, [src])
    assert "g.jsonl:2: file: not valid UTF-8" in str(err.value) and "--encoding gbk" in str(err.value)
    assert "offset 17" in str(err.value) or "offset" in str(err.value)


def test_mapping_names_the_files_fields(ws, tmp_path):
    src = write_jsonl(tmp_path / "qa.jsonl", [{"question": "Why?", "answer": "Because."}, {"question": 3, "answer": "x"}])
    from curation.errors import StudioError

    with pytest.raises(StudioError, match=r"qa.jsonl:2: question: must be a string"):
        import_paths(ws, [src], mapping={"instruction": "question", "output": "answer"})
    import_paths(ws, [src], mapping={"instruction": "question", "output": "answer"}, skip_invalid=True)
    assert from_row(rows(ws)[0]).answer == "Because."


def test_folder_imports_its_data_files(ws, tmp_path):
    folder = tmp_path / "dir"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", ALPACA[:1])
    write_jsonl(folder / "b.jsonl", ALPACA[1:2])
    (folder / "notes.md").write_text("not data")
    assert import_paths(ws, [folder]).rows_imported == 2
    assert [r["source_file"] for r in rows(ws)] == ["dir/a.jsonl", "dir/b.jsonl"]


def test_sample_data_imports_cleanly(ws):
    report = import_paths(ws, [SAMPLE_DATA / "alpaca_mixed.json", SAMPLE_DATA / "sharegpt_chat.jsonl", SAMPLE_DATA / "raw_text.jsonl"])
    assert [f.rows_rejected for f in report.files] == [0, 0, 0]
    counts = [f.rows_imported for f in report.files]
    assert 300 <= counts[0] <= 400 and counts[1] == 40 and counts[2] == 30
    langs = dict(ws.con.execute("SELECT lang, count(*) FROM samples GROUP BY lang").fetchall())
    assert langs["zh"] > 50 and langs["en"] > 50
    row = rows(ws, "source_id = 'p001'")[0]
    assert row["source_file"] == "alpaca_mixed.json" and row["source_row"] >= 1


def test_cli_import_prints_a_summary_and_json(tmp_path, capsys):
    from studio.cli import main

    src = write_jsonl(tmp_path / "a.jsonl", ALPACA)
    assert main(["import", str(src), "-w", str(tmp_path / "w"), "--map", "instruction=instruction"]) == 0
    assert "3 rows imported as import #1" in capsys.readouterr().out
    assert main(["import", str(src), "-w", str(tmp_path / "w"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"][0]["already_import_id"] == 1
