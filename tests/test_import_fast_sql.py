"""The fast import path computes language, messages JSON and content hash in SQL for every row:
the answers equal what the Python path (lang.detect, Sample.content_hash) gives, also for text
with control characters and literal escapes, which used to send a row's hash to Python."""
from __future__ import annotations

import json

from curation import lang, store
from curation.importers import fast_alpaca, import_paths
from curation.samples import chat
from curation.sql_json import messages_sql

TRICKY = [
    "Explain DNS.", "解释一下DNS是什么？", "ＤＮＳ 是什么", "Кто ты?", "日本語のテキストです", "한국어 문장",
    "mixed 中文 and English words here", "中文 quicksort quicksort quicksort", "中文，英文 word words more words",
    "café — naïve", "—", "…中", "Привет 中文", "αβγ 中", "x" * 2100 + "中", "中" * 1990 + " abc def ghi",
    "ctrl \x1b[31m red \x07 bell \x0b\x0e\x0f\x1a\x1c\x1d\x1e\x1f", "literal \\u001B and \\u00e9 and \\\x1b",
    'tab\there "q" back\\slash /', "emoji 😀 ok", "1234 + 5678", "   ",
]


def test_language_and_hash_in_sql_equal_python_on_tricky_text(ws, tmp_path, monkeypatch):
    recs = [{"instruction": t if t.strip() else "blank", "input": "", "output": f"answer {i}: {t}",
             **({"system": "sys \x1b " + t} if i % 3 == 0 else {})} for i, t in enumerate(TRICKY)]
    recs += [{"instruction": a, "input": b, "output": b + " " + a} for a in TRICKY[:8] for b in TRICKY[8:16]]
    src = tmp_path / "a.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")

    def no_python(*_a, **_k):
        raise AssertionError("a content hash left SQL")

    monkeypatch.setattr(fast_alpaca, "Sample", no_python)  # what the Python fallback builds
    assert import_paths(ws, [src]).files[0].fast_path
    assert ws.con.execute("SELECT count(lang) FROM samples").fetchone()[0] == 0  # filled after the import
    assert store.fill_all_derived(ws.con) == len(recs)
    got = ws.con.execute(f"SELECT system, instruction, answer, lang, content_hash, {messages_sql()} FROM samples ORDER BY id").fetchall()
    assert len(got) == len(recs)
    assert ws.con.execute("SELECT count(messages) FROM samples").fetchone()[0] == 0  # built on read, not stored
    for system, user, answer, lg, digest, messages in got:
        sample = chat(user, answer, system=system)
        assert lg == lang.detect(user + " " + answer), user[:40]
        assert digest == sample.content_hash(), user[:40]
        assert messages == sample.messages_json(), user[:40]  # byte for byte, escapes included


def _counting_check(monkeypatch):
    """Wrap fast_alpaca.rows_if_fast: the threads it ran on, in call order."""
    import threading

    calls: list[str] = []
    real = fast_alpaca.rows_if_fast

    def spy(*args, **kwargs):
        calls.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(fast_alpaca, "rows_if_fast", spy)
    return calls


def test_the_fast_check_runs_once_beside_the_file_hash(ws, tmp_path, monkeypatch):
    """The read_json check of a plain JSONL file runs on a thread while the main thread hashes the
    file: once, not again after the scan; a file already imported is skipped with the check
    stopped, and imports nothing twice."""
    import threading

    calls = _counting_check(monkeypatch)
    src = tmp_path / "a.jsonl"
    src.write_text("".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(500)),
                   encoding="utf-8")
    first = import_paths(ws, [src])
    assert first.files[0].fast_path and first.files[0].rows_imported == 500
    assert calls == ["studio-import-check"]
    again = import_paths(ws, [src])
    assert again.files[0].skipped_as_already_imported
    assert ws.con.execute("SELECT count(*) FROM samples").fetchall()[0][0] == 500
    assert calls == ["studio-import-check"] * 2  # the second stopped once the hash was known
    assert "studio-import-check" not in {t.name for t in threading.enumerate()}


def test_a_blank_line_past_the_head_sends_the_file_to_the_precise_path(ws, tmp_path, monkeypatch):
    """The early check only sees the first 4 KB: a blank line further on (which would shift line
    numbers) is found by the scan, and the file is then read by the Python path, every row kept."""
    calls = _counting_check(monkeypatch)
    rows = [json.dumps({"instruction": f"question {i} " + "x" * 40, "output": f"a{i}"}) for i in range(300)]
    src = tmp_path / "b.jsonl"
    src.write_text("\n".join(rows[:200]) + "\n\n" + "\n".join(rows[200:]) + "\n", encoding="utf-8")
    assert src.read_bytes().index(b"\n\n") > 4096
    report = import_paths(ws, [src])
    assert not report.files[0].fast_path and report.files[0].rows_imported == 300
    assert len(calls) == 1  # the early one, stopped or finished, not run again
    assert ws.con.execute("SELECT max(source_row) FROM samples").fetchall()[0][0] == 301


def test_a_failed_insert_reports_its_own_error(ws, tmp_path, monkeypatch):
    """The staged rows' DROP runs in the insert's aborted transaction and fails there too: that
    must not hide what failed (on a full disk, the disk-full message)."""
    import pytest

    src = tmp_path / "a.jsonl"
    src.write_text(json.dumps({"instruction": "q", "input": "", "output": "a"}) + "\n", encoding="utf-8")
    monkeypatch.setattr(fast_alpaca, "insert_query", lambda: "SELECT error('the insert failed: ' || $2 || $1 || $3 || len($4))")
    with pytest.raises(Exception) as err:
        import_paths(ws, [src])
    assert "the insert failed" in str(err.value) and "aborted" not in str(err.value)
    assert ws.count() == 0
    monkeypatch.undo()
    assert import_paths(ws, [src]).files[0].fast_path and ws.count() == 1  # the workspace is fine afterwards


def test_search_text_and_language_are_filled_after_the_fast_import_with_the_same_matches(ws, tmp_path):
    """The fast path leaves the lowered search column and the language to `store.fill_derived`;
    browse finds the rows before the fill (lowering their text, detecting their language itself)
    and after it, the same ones, and the filled values are what every other writer stores."""
    from curation import browse
    from curation.augment import selection

    recs = [{"instruction": t if t.strip() else "blank", "output": f"ANSWER {i}: Straße {t}"} for i, t in enumerate(TRICKY)]
    src = tmp_path / "s.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    assert import_paths(ws, [src]).files[0].fast_path
    n, lo, hi = store.derived_missing(ws.con)
    assert n == len(recs) and hi - lo + 1 == len(recs)
    needles = ["answer 3", "STRASSE", "straße", "dns", "中文", "квто", "кто", "😀"]
    langs = ["en", "zh", "ja", "ko", "other", "", "fr"]

    def found():
        return ({q: browse.ids(ws.con, browse.Filter(search=q)) for q in needles},
                {g: browse.ids(ws.con, browse.Filter(lang=g)) for g in langs},
                {g: selection.select_ids(ws.con, lang=g) for g in langs},
                [v.lang for v in selection.load(ws.con, browse.ids(ws.con, browse.Filter()))])

    before = found()
    assert before[0]["answer 3"] and before[0]["straße"] and before[0]["кто"] and not before[0]["STRASSE"]
    assert before[1]["en"] and before[1]["zh"] and before[1]["ja"] and before[1]["other"] and not before[1]["fr"]
    assert set(before[3]) >= {"en", "zh", "ko"}
    filled = [store.fill_derived(ws.con, a, min(a + 6, hi)) for a in range(lo, hi + 1, 7)]  # chunks of an odd size
    assert sum(filled) == len(recs) and len(filled) > 2
    assert store.derived_missing(ws.con) == (0, 0, -1)
    assert found() == before
    stored = ws.con.execute(f"SELECT count(*) FROM samples WHERE search_text IS DISTINCT FROM {store.SEARCH_TEXT_SQL}").fetchall()
    assert stored == [(0,)]
    rows = ws.con.execute("SELECT instruction, answer, lang FROM samples ORDER BY id").fetchall()
    assert [g for *_, g in rows] == [lang.detect(i + " " + a) for i, a, _ in rows]  # what every other writer stores
    assert store.fill_derived(ws.con, lo, hi) == 0


def test_rows_keep_their_line_numbers_when_read_json_reads_in_parallel(ws, tmp_path):
    """The staged table's rowid numbers the rows (no WITH ORDINALITY): on a file that read_json
    reads in parallel pieces (past ~40 MB with DuckDB 2.0), every row's id, source_row and text
    still follow the file's line order. (Outside a transaction, with preserve_insertion_order off,
    such a read comes back out of order; inside the import's transaction it kept its order even
    then, so this checks the numbering, not the setting.)"""
    n = 100_000
    src = tmp_path / "many.jsonl"
    pad = "x" * 480
    with src.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(f'{{"instruction": "question {i} {pad[: 400 + i % 80]}", "output": "answer {i}"}}\n')
    assert src.stat().st_size > 45e6
    assert import_paths(ws, [src]).files[0].fast_path
    rows = ws.con.execute("SELECT id, source_row, split_part(instruction, ' ', 2) FROM samples ORDER BY id").fetchall()
    first = rows[0][0]
    assert [(i - first, r, int(k)) for i, r, k in rows] == [(k, k + 1, k) for k in range(n)]


def test_every_reader_sees_the_same_samples_whether_their_messages_are_stored_or_built(tmp_path):
    """The fast import stores no messages (`sql_json.messages_sql` builds them from instruction and
    answer); the Python path stores them. The same rows through each path, then every reader of
    messages: the export in each format, the dedup and quality texts, a sample's detail, an augment
    job's samples, an edit and its undo."""
    from curation import browse, normalize, quality, review, undo
    from curation.augment import selection
    from curation.export import FORMATS, export_split
    from curation.workspace import open_workspace

    recs = [{"instruction": t if t.strip() else "blank", "input": TRICKY[-i], "output": f"answer {i}: {t}",
             **({"system": "sys " + t} if i % 4 == 0 else {})} for i, t in enumerate(TRICKY)]
    seen = {}
    for name, extra in (("fast", {}), ("python", {"tags": []})):  # a tags field sends the file to the Python path
        src = tmp_path / f"{name}.jsonl"
        src.write_text("".join(json.dumps(dict(r, **extra), ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
        with open_workspace(tmp_path / name) as w:
            assert import_paths(w, [src]).files[0].fast_path is (name == "fast")
            stored = w.con.execute("SELECT count(messages) FROM samples").fetchone()[0]
            assert stored == (0 if name == "fast" else len(recs))
            ids = [r[0] for r in w.con.execute("SELECT id FROM samples ORDER BY id").fetchall()]
            got: dict = {"ids": ids}
            for fmt in FORMATS:
                m = export_split(w, f"s-{fmt}", format=fmt, include="approved+pending", skip_invalid=True)
                got[fmt] = {p.name: p.read_bytes() for p in sorted(m.path.parent.glob("*.jsonl"))}
            got["dedup"] = w.con.execute(f"SELECT {normalize.field_text_sql('sample')} FROM samples s ORDER BY id").fetchall()
            got["quality"] = w.con.execute(f"SELECT {quality._WHOLE_COLUMN} FROM samples ORDER BY id").fetchall()
            got["detail"] = [browse.get_sample(w.con, i).messages for i in ids]
            got["augment"] = [v.messages for v in selection.load(w.con, ids)]
            op = review.edit(w, ids[1], messages=[{"role": "user", "content": "new question"},
                                                  {"role": "assistant", "content": "new answer"}])
            got["edited"] = browse.get_sample(w.con, ids[1]).messages
            got["versions"] = [v.messages for v in browse.get_sample(w.con, ids[1]).versions]
            assert undo.undo(w) == [op]
            got["undone"] = (browse.get_sample(w.con, ids[1]).messages,
                             w.con.execute(f"SELECT {messages_sql()}, content_hash FROM samples WHERE id = ?", [ids[1]]).fetchone())
            seen[name] = got
    fast, python = seen["fast"], seen["python"]
    assert fast["detail"][2] == [{"role": "user", "content": recs[2]["instruction"] + "\n\n" + recs[2]["input"]},
                                 {"role": "assistant", "content": recs[2]["output"]}]
    assert fast["edited"][0]["content"] == "new question" and fast["versions"] == [fast["detail"][1]]
    assert fast["undone"][0] == fast["detail"][1]
    for key in python:
        assert fast[key] == python[key], key


def test_cli_stats_counts_the_languages_of_rows_a_fast_import_left_without_one(tmp_path, capsys):
    from curation.workspace import open_workspace
    from studio.cli import main

    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps({"instruction": t if t.strip() else "blank", "output": t}, ensure_ascii=False) + "\n"
                           for t in TRICKY), encoding="utf-8")
    ws_path = tmp_path / "ws"
    assert main(["import", "-w", str(ws_path), str(src), "-q"]) == 0
    with open_workspace(ws_path) as w:
        assert store.derived_missing(w.con)[0] == len(TRICKY)
    capsys.readouterr()
    assert main(["stats", "-w", str(ws_path), "--json"]) == 0
    by_lang = json.loads(capsys.readouterr().out)["by_lang"]
    assert sum(by_lang.values()) == len(TRICKY) and {"en", "zh", "ja", "ko", "other"} <= set(by_lang)
    with open_workspace(ws_path) as w:
        assert store.derived_missing(w.con, search=False) == (0, 0, -1)  # the search column is left to the studio
        assert store.derived_missing(w.con)[0] == len(TRICKY)
        langs = w.con.execute("SELECT id, lang FROM samples ORDER BY id").fetchall()
        assert store.fill_all_derived(w.con) == len(TRICKY)  # then the search column: the languages stay
        assert w.con.execute("SELECT id, lang FROM samples ORDER BY id").fetchall() == langs
        assert store.derived_missing(w.con) == (0, 0, -1)
