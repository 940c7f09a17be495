"""Issue 18: export targets and the split contract, by real round trips on the demo's data
(sample_data/: alpaca, sharegpt and raw-text files, one planted empty answer).

- raw-text samples go to their own files (train.text.* / val.text.*), never among chat rows;
- `--target jsonl|parquet|hf`, read back with json, pyarrow and `datasets.load_from_disk`, and by
  `training.data.load_split`, which gives the same samples for every format and target;
- LLaMA-Factory's dataset_info.json loads the files the way LLaMA-Factory does (`load_dataset`
  with the file's builder) and names columns and role tags the rows have; the README's axolotl
  snippet points at files that exist;
- `--format openai` rows are checked against OpenAI's fine-tuning format;
- manifest.json carries schema_version 3 (row lineage in lineage.parquet); load_split still reads schema 1
  and refuses a newer one.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest

from curation import export
from curation.errors import StudioError
from curation.importers import import_paths
from curation.workspace import open_workspace
from tests.conftest import SAMPLE_DATA
from training.data import load_split
from training.errors import DataError

DEMO_FILES = ("alpaca_mixed.json", "sharegpt_chat.jsonl", "raw_text.jsonl")
TARGETS = ("jsonl", "parquet", "hf")
PARTS = ("train", "val")
CASES = [(f, t) for f in ("messages", "alpaca", "sharegpt") for t in TARGETS]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's samples (all pending: include approved+pending), exported once per format and
    target. Yields (workspace path, {(format, target): Manifest}, {sample_id: kind})."""
    root = tmp_path_factory.mktemp("demo") / "ws"
    with open_workspace(root) as ws:
        import_paths(ws, [SAMPLE_DATA / f for f in DEMO_FILES])
        kinds = dict(ws.con.execute("SELECT id, kind FROM samples").fetchall())
        splits = {(f, t): export.export_split(ws, f"{f}-{t}", format=f, target=t, include="approved+pending")
                  for f, t in CASES}
    yield root, splits, kinds


def _raw_rows(m: export.Manifest, key: str) -> list[dict]:
    """The rows of file `key` as stored, read with the target's own reader."""
    entry = m.data["files"][key]
    path = m.path / entry["path"]
    if m.data["target"] == "jsonl":
        return _lines(path)
    if m.data["target"] == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    import datasets

    return datasets.load_from_disk(str(path)).to_list()


# -- 1. text and chat kept apart ---------------------------------------------------------------------
@pytest.mark.parametrize("fmt, target", CASES)
def test_raw_text_rows_are_only_in_the_text_files(demo, fmt, target):
    _, splits, kinds = demo
    m = splits[(fmt, target)]
    n_text = sum(k == "text" for k in kinds.values())
    assert n_text == 30  # raw_text.jsonl
    assert m.data["schema_version"] == 3 and m.data["target"] == target
    assert json.loads((m.path / "manifest.json").read_text(encoding="utf-8"))["schema_version"] == 3
    files = m.data["files"]
    assert {k: (e["kind"], e["part"]) for k, e in files.items()} == {
        "train": ("chat", "train"), "val": ("chat", "val"), "train.text": ("text", "train"), "val.text": ("text", "val")}
    chat_key = {"messages": "messages", "alpaca": "instruction", "sharegpt": "conversations"}[fmt]
    for part in PARTS:
        chat, text = _raw_rows(m, part), _raw_rows(m, f"{part}.text")
        assert chat and all("text" not in r and r[chat_key] for r in chat)
        assert text and all(set(r) == {"text"} and r["text"] for r in text)
        assert (len(chat), len(text)) == (files[part]["rows"], files[f"{part}.text"]["rows"])
        # the manifest's rows: the chat file's rows, then the text file's
        ids = m.sample_ids(part)
        assert [kinds[i] for i in ids] == ["chat"] * len(chat) + ["text"] * len(text)
        assert m.counts[part] == len(chat) + len(text)
    assert sum(m.text_rows.values()) == n_text
    assert sum(m.counts.values()) == len(kinds)
    text_file = files["train.text"]["path"]
    assert text_file == {"jsonl": "train.text.jsonl", "parquet": "train.text.parquet", "hf": "text/train"}[target]
    assert m.notes()[0].startswith(f"30 raw-text samples went to {text_file} ({m.text_rows['train']}) and ")
    assert "OpenAI and LLaMA-Factory chat formats can't hold them" in m.notes()[0]


def test_a_split_without_raw_text_has_no_text_files(ws):
    from curation import review, store
    from curation.samples import chat

    with ws.transaction():
        ids = store.insert_samples(ws.con, [chat(f"q{i}", f"a{i}") for i in range(5)])
    review.approve(ws, ids)
    m = export.export_split(ws, "v1", val=0.2)
    assert sorted(m.data["files"]) == ["train", "val"] and m.notes() == []
    assert sorted(p.name for p in m.path.iterdir()) == ["README.md", "dataset_info.json", "lineage.parquet", "manifest.json",
                                                       "train.jsonl", "val.jsonl"]


# -- 2. parquet and hf targets, read back -------------------------------------------------------------
def test_parquet_and_hf_hold_the_jsonl_rows(demo):
    import datasets
    import pyarrow.parquet as pq

    _, splits, _ = demo
    for fmt in ("messages", "alpaca", "sharegpt"):
        jl = splits[(fmt, "jsonl")]
        pa_split, hf_split = splits[(fmt, "parquet")], splits[(fmt, "hf")]
        dd = datasets.load_from_disk(str(hf_split.path))
        assert sorted(dd) == ["train", "val"]
        text_dd = datasets.load_from_disk(str(hf_split.path / "text"))
        assert sorted(text_dd) == ["train", "val"] and text_dd["train"].column_names == ["text"]
        for key in ("train", "val", "train.text", "val.text"):
            want = _lines(jl.path / jl.data["files"][key]["path"])
            table = pq.read_table(pa_split.path / f"{key}.parquet")
            got_pq = table.to_pylist()
            got_hf = (text_dd if key.endswith(".text") else dd)[key.split(".")[0]].to_list()
            drop_nulls = lambda rows: [{k: v for k, v in r.items() if v is not None} for r in rows]  # noqa: E731
            # an alpaca row without system/history has null there (a fixed schema); the rest is equal
            assert drop_nulls(got_pq) == want, (fmt, key)
            assert drop_nulls(got_hf) == want, (fmt, key)
        assert pq.read_table(pa_split.path / "train.parquet").column_names == {
            "messages": ["messages"], "sharegpt": ["conversations"],
            "alpaca": ["instruction", "input", "output", "system", "history"]}[fmt]
        for entry in pa_split.data["files"].values():
            assert entry["sha256"] == hashlib.sha256((pa_split.path / entry["path"]).read_bytes()).hexdigest()


@pytest.mark.parametrize("target", ["parquet", "hf"])
def test_same_arguments_give_the_same_bytes_in_every_target(ws_path, target):
    with open_workspace(ws_path) as ws:
        import_paths(ws, [SAMPLE_DATA / f for f in DEMO_FILES])
        a = export.export_split(ws, "a", target=target, include="approved+pending", val=0.2, seed=3)
        b = export.export_split(ws, "b", target=target, include="approved+pending", val=0.2, seed=3)
    files = sorted(p.relative_to(a.path) for p in a.path.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b.path) for p in b.path.rglob("*") if p.is_file())
    named = {"manifest.json", "README.md", "dataset_info.json"}  # they hold the split's name
    for f in files:
        if str(f) not in named:
            assert (a.path / f).read_bytes() == (b.path / f).read_bytes(), f
    assert a.data["files"] == b.data["files"]


def test_hf_without_datasets_is_one_line_naming_pip_install(ws, monkeypatch):
    from curation import review, store
    from curation.samples import chat

    with ws.transaction():
        ids = store.insert_samples(ws.con, [chat("q", "a"), chat("q2", "a2")])
    review.approve(ws, ids)
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` fails, as when it is not installed
    with pytest.raises(StudioError, match=r"--target hf needs the datasets package: pip install datasets") as err:
        export.export_split(ws, "v1", target="hf")
    assert "\n" not in str(err.value)
    assert not ws.splits_dir.exists() or list(ws.splits_dir.iterdir()) == []
    with pytest.raises(StudioError, match="unknown export target 'csv'"):
        export.export_split(ws, "v1", target="csv")


# -- training reads every target -----------------------------------------------------------------------
def test_load_split_reads_every_format_and_target_alike(demo):
    _, splits, _ = demo
    ref = load_split(splits[("messages", "jsonl")].path)
    assert sum("text" in r for r in ref.train + ref.val) == 30
    assert len(ref.train) + len(ref.val) == 385
    for (fmt, target), m in splits.items():
        got = load_split(m.path)
        assert (got.train, got.val) == (ref.train, ref.val), (fmt, target)
        assert got.format == fmt and got.manifest["schema_version"] == 3
        assert [r["sample_id"] for r in got.manifest["rows"]["train"]] == m.sample_ids("train")


def test_load_split_reads_schema_1_and_refuses_a_newer_one(tmp_path, demo):
    import shutil

    _, splits, _ = demo
    new = splits[("messages", "jsonl")]
    # a schema-1 split as the old export wrote it: raw text among the chat rows, no kind/part
    old = tmp_path / "old"
    old.mkdir()
    rows = {p: _lines(new.path / f"{p}.jsonl") + _lines(new.path / f"{p}.text.jsonl") for p in PARTS}
    manifest = {k: v for k, v in new.data.items() if k not in ("schema_version", "target", "lineage")}
    manifest["rows"] = {p: new.rows(p) for p in PARTS}
    manifest["files"] = {}
    for p in PARTS:
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[p])
        (old / f"{p}.jsonl").write_text(body, encoding="utf-8")
        manifest["files"][p] = {"path": f"{p}.jsonl", "rows": len(rows[p]), "sha256": hashlib.sha256(body.encode()).hexdigest()}
    (old / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    a, b = load_split(old), load_split(new.path)
    assert (a.train, a.val) == (b.train, b.val)

    newer = tmp_path / "newer"
    shutil.copytree(new.path, newer)
    manifest = json.loads((newer / "manifest.json").read_text(encoding="utf-8"))
    manifest["schema_version"] = 4
    (newer / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(DataError, match="schema_version 4: this trainer reads split manifests of schema 1, 2 and 3"):
        load_split(newer)

    # a listed file that is missing (a copy that left out text/ or the .text files) is an error, not fewer rows
    partial = tmp_path / "partial"
    shutil.copytree(splits[("messages", "hf")].path, partial)
    shutil.rmtree(partial / "text")
    with pytest.raises(DataError, match=r"text/train is missing but manifest.json lists 25 rows in it"):
        load_split(partial)


# -- 3. LLaMA-Factory and axolotl ----------------------------------------------------------------------
_LF_BUILDER = {"jsonl": "json", "json": "json", "parquet": "parquet", "arrow": "arrow"}  # LLaMA-Factory's FILEEXT2TYPE


@pytest.mark.parametrize("fmt, target", CASES)
def test_dataset_info_loads_the_files_the_llamafactory_way(demo, tmp_path, fmt, target):
    import datasets

    _, splits, _ = demo
    m = splits[(fmt, target)]
    name = m.data["name"]
    info = json.loads((m.path / "dataset_info.json").read_text(encoding="utf-8"))
    assert sorted(info) == sorted([name, f"{name}_val", f"{name}_text", f"{name}_text_val"])
    for dataset, entry in info.items():
        file = m.path / entry["file_name"]
        assert file.is_file(), entry["file_name"]
        # LLaMA-Factory: load_dataset(FILEEXT2TYPE[ext], data_files=[dataset_dir/file_name], split="train")
        ds = datasets.load_dataset(_LF_BUILDER[file.suffix[1:]], data_files=[str(file)], split="train",
                                   cache_dir=str(tmp_path / "hf-cache"))
        part = "val" if dataset.endswith("_val") else "train"
        kind = "text" if dataset.startswith(f"{name}_text") else "chat"
        assert len(ds) == m.file(part, kind)["rows"]
        cols = entry["columns"]
        assert set(cols.values()) <= set(ds.column_names), (dataset, cols, ds.column_names)
        if kind == "text":
            assert cols == {"prompt": "text"} and "formatting" not in entry  # alpaca formatting, stage pt
            continue
        if fmt == "alpaca":
            assert entry["formatting"] == "alpaca"
            assert {"prompt": "instruction", "query": "input", "response": "output"}.items() <= cols.items()
            assert all(isinstance(r["instruction"], str) and isinstance(r["output"], str) for r in ds)
            continue
        assert entry["formatting"] == "sharegpt" and list(cols) == ["messages"]
        tags = entry["tags"]
        user, assistant, system = tags["user_tag"], tags["assistant_tag"], tags["system_tag"]
        for row in ds:
            turns = row[cols["messages"]]
            if turns and turns[0][tags["role_tag"]] == system:  # LLaMA-Factory takes a leading system turn as the system prompt
                turns = turns[1:]
            roles = [t[tags["role_tag"]] for t in turns]
            # LLaMA-Factory's check: user on even positions, assistant on odd, an even count
            assert roles == [user, assistant] * (len(roles) // 2) and len(roles) % 2 == 0, roles
            assert all(isinstance(t[tags["content_tag"]], str) for t in turns)


def test_alpaca_jsonl_names_only_columns_the_rows_have(ws):
    from curation import review, store
    from curation.samples import chat

    with ws.transaction():
        ids = store.insert_samples(ws.con, [chat(f"q{i}", f"a{i}") for i in range(4)])
    review.approve(ws, ids)
    m = export.export_split(ws, "plain", val=0, format="alpaca")
    info = json.loads((m.path / "dataset_info.json").read_text(encoding="utf-8"))
    # no row has system or history: LLaMA-Factory would look those columns up in every row; no val rows: no entry
    assert info == {"plain": {"file_name": "train.jsonl", "formatting": "alpaca",
                              "columns": {"prompt": "instruction", "query": "input", "response": "output"}}}


@pytest.mark.parametrize("fmt, target", [("messages", "jsonl"), ("sharegpt", "parquet"), ("alpaca", "hf")])
def test_readme_says_how_to_train_and_its_axolotl_snippet_points_at_the_files(demo, fmt, target):
    import yaml

    root, splits, _ = demo
    m = splits[(fmt, target)]
    readme = (m.path / "README.md").read_text(encoding="utf-8")
    name = m.data["name"]
    for words in (f"# Split `{name}`", f"studio train {name}", "### LLaMA-Factory", f"dataset_dir: splits/{name}",
                  "### axolotl", "### OpenAI", f"train {m.counts['train']:,} and val {m.counts['val']:,}"):
        assert words in readme, words
    snippet = re.search(r"### axolotl\n\n```yaml\n(.*?)```", readme, re.S).group(1)
    cfg = yaml.safe_load(snippet)
    entries = cfg["datasets"] + cfg["test_datasets"]
    assert len(entries) == 4 and cfg["val_set_size"] == 0
    for e in entries:
        path = root / e["path"]  # relative to the workspace
        assert path.exists(), e["path"]
        if target == "hf":
            assert e["split"] in ("train", "val") and (path / e["split"] / "state.json").is_file()
        if e["type"] == "chat_template":
            assert e["field_messages"] == {"messages": "messages", "sharegpt": "conversations"}[fmt]
    assert sorted(e["type"] for e in entries) == sorted(
        ["completion", "completion"] + ["alpaca" if fmt == "alpaca" else "chat_template"] * 2)


# -- 4. OpenAI's fine-tuning format --------------------------------------------------------------------
GOOD = [
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                  {"role": "assistant", "content": "4", "weight": 1}]},
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "weight": 0},
                  {"role": "user", "content": "weather in Paris?"},
                  {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                        "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "18C"},
                  {"role": "assistant", "content": "18 degrees."}],
     "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
     "parallel_tool_calls": False},
]
BAD = [  # (row, the problem its line must name)
    ({"messages": [{"role": "user", "content": "only a question"}]}, "no assistant message"),
    ({"messages": [{"role": "user", "content": "q", "weight": 1}, {"role": "assistant", "content": "a"}]},
     "messages[0].weight: on a user turn; OpenAI allows weight (0 or 1) on assistant turns only"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 2}]},
     "messages[1].weight: 2; use 0"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "id": 7},
     "top-level key(s) id: OpenAI accepts only messages, tools, parallel_tool_calls"),
    ({"text": "raw text"}, "top-level key(s) text"),
    ({"messages": [{"role": "human", "content": "q"}, {"role": "assistant", "content": "a"}]},
     "messages[0].role: 'human' is not one of system, user, assistant, tool"),
    ({"messages": [{"role": "user", "content": ["q"]}, {"role": "assistant", "content": "a"}]},
     "messages[0].content: expected a string, got list"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]},
     "messages[1].content: empty assistant turn"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "r"},
                   {"role": "assistant", "content": "a"}]}, "messages[1]: a tool turn needs the tool_call_id"),
]


def test_openai_check_passes_a_good_file_and_names_each_bad_row(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in GOOD), encoding="utf-8")
    assert export.check_openai_file(good) == []
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r, _ in BAD), encoding="utf-8")
    lines = export.check_openai_file(bad, sample_ids=[100 + i for i in range(len(BAD))])
    for i, (_, problem) in enumerate(BAD):
        assert any(line.startswith(f"bad.jsonl:{i + 1} (sample {100 + i}): ") and problem in line for line in lines), problem
    assert len(lines) == len(BAD) + 1  # the raw-text row lacks messages too
    assert all("\n" not in line for line in lines)


def test_openai_export_refuses_a_bad_row_and_skip_invalid_leaves_it_out(ws_path):
    with open_workspace(ws_path) as ws:
        import_paths(ws, [SAMPLE_DATA / f for f in DEMO_FILES])
        empty = ws.con.execute("SELECT id FROM samples WHERE kind = 'chat' AND "
                               "trim(json_extract_string(messages, '$[1].content')) = ''").fetchall()
        assert len(empty) == 1  # the demo's planted empty answer
        sid = empty[0][0]
        with pytest.raises(StudioError) as err:
            export.export_split(ws, "oa", format="openai", include="approved+pending")
        msg = str(err.value)
        assert re.search(rf"\n  (train|val)\.jsonl:\d+ \(sample {sid}\): messages\[1\]\.content: empty assistant turn", msg)
        assert "--skip-invalid" in msg and "not written" in msg
        assert not (ws.splits_dir / "oa").exists() and [p.name for p in ws.splits_dir.iterdir()] == []

        m = export.export_split(ws, "oa", format="openai", include="approved+pending", skip_invalid=True)
        assert [s["sample_id"] for s in m.data["skipped"]] == [sid] and m.data["settings"]["skip_invalid"] is True
        assert sid not in m.sample_ids("train") + m.sample_ids("val")
        assert m.notes()[-1].startswith("1 row left out (--skip-invalid)")
        for part in PARTS:
            assert export.check_openai_file(m.path / f"{part}.jsonl") == []
        assert load_split(m.path).format == "openai"
        # the check finds the sample behind a line through the manifest beside the file
        rows = _lines(m.path / "train.jsonl")
        rows[1]["messages"][0]["weight"] = 1
        (m.path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        second = m.sample_ids("train")[1]
        assert export.check_openai_file(m.path / "train.jsonl") == [
            f"train.jsonl:2 (sample {second}): messages[0].weight: on a user turn; OpenAI allows weight (0 or 1) "
            "on assistant turns only"]


# -- the command line and the Export screen -------------------------------------------------------------
def test_cli_target_and_summary_line(ws_path, capsys):
    from studio.cli import main

    with open_workspace(ws_path) as ws:
        import_paths(ws, [SAMPLE_DATA / f for f in DEMO_FILES])
    assert main(["export", "v1", "--include", "approved+pending", "-w", str(ws_path)]) == 0
    out = capsys.readouterr().out
    assert "wrote split v1" in out and "(messages, jsonl)" in out
    assert re.search(r"^30 raw-text samples went to train\.text\.jsonl \(\d+\) and val\.text\.jsonl \(\d+\): OpenAI and "
                     r"LLaMA-Factory chat formats can't hold them", out, re.M)
    assert main(["export", "v2", "--include", "approved+pending", "--target", "parquet", "--format", "sharegpt",
                 "--json", "-w", str(ws_path)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["target"] == "parquet" and sum(res["text_rows"].values()) == 30 and res["skipped"] == 0
    assert (ws_path / "splits" / "v2" / "train.parquet").is_file()
    assert main(["export", "v3", "--format", "openai", "--include", "approved+pending", "-w", str(ws_path)]) == 2
    err = capsys.readouterr().err
    assert "empty assistant turn" in err and not (ws_path / "splits" / "v3").exists()
    assert main(["export", "v3", "--target", "hf", "--dry-run", "--include", "approved+pending", "-w", str(ws_path)]) == 0
    assert "(messages, hf, approved+pending" in capsys.readouterr().out


async def test_export_screen_offers_the_target(tmp_path, monkeypatch):
    from textual.widgets import Select

    from curation import review, store
    from curation.samples import Sample
    from studio.app import StudioApp
    from tests._studio_ws import make_workspace
    from tests.test_app_curation_screens import settle
    from tests.test_app_review import plain

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    path = make_workspace(tmp_path / "ws")
    with open_workspace(path, create=False) as ws:
        with ws.transaction():
            store.insert_samples(ws.con, [Sample(kind="text", text="a raw document to continue pretraining on")])
        review.set_status(ws, [r[0] for r in ws.con.execute("SELECT id FROM samples").fetchall()], "approved")
    app = StudioApp(path, screen="export")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        box = app.screen.query_one("#ex-target", Select)
        assert box.value == "jsonl"
        box.value = "parquet"
        await settle(pilot)
        await pilot.press("ctrl+s")
        await settle(pilot)
        result = plain(app.screen.query_one("#ex-result").content)
        assert "wrote splits/v1" in result and "parquet" in result
        assert re.search(r"1 raw-text sample went to (train|val)\.text\.parquet \(1\)", result), result
    split = path / "splits" / "v1"
    assert (split / "train.parquet").is_file() and (split / "train.text.parquet").is_file()
    assert json.loads((split / "manifest.json").read_text())["target"] == "parquet"


# -- tool use (curation.samples keeps OpenAI's tool_calls / tool turns / weight 0 / tools) ---------------
TOOL_ROWS = [
    {"messages": [{"role": "user", "content": "weather in Paris?"},
                  {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                        "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "18C"},
                  {"role": "assistant", "content": "18 degrees."}],
     "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]},
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "weight": 0},
                  {"role": "user", "content": "bye"}, {"role": "assistant", "content": "ciao"}]},
    {"messages": [{"role": "user", "content": "plain"}, {"role": "assistant", "content": "answer"}]},
]


def test_tool_use_passes_through_every_target_and_formats_that_cannot_hold_it_refuse(ws_path, tmp_path):
    import pyarrow.parquet as pq

    src = tmp_path / "tools.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in TOOL_ROWS), encoding="utf-8")
    with open_workspace(ws_path) as ws:
        import_paths(ws, [src], format="messages")
        ids = [r[0] for r in ws.con.execute("SELECT id FROM samples ORDER BY id").fetchall()]
        splits = {(f, t): export.export_split(ws, f"{f}-{t}", format=f, target=t, val=0, include="approved+pending")
                  for f in ("messages", "openai") for t in TARGETS}
        # messages rows keep OpenAI's shape; openai rows drop the empty content of a calls-only turn
        assert _lines(splits[("openai", "jsonl")].path / "train.jsonl") == TOOL_ROWS
        msgs = _lines(splits[("messages", "jsonl")].path / "train.jsonl")
        assert msgs[0]["messages"][1] == {"role": "assistant", "content": "", **TOOL_ROWS[0]["messages"][1]}
        assert msgs[1:] == TOOL_ROWS[1:] and msgs[0]["tools"] == TOOL_ROWS[0]["tools"]
        assert export.check_openai_file(splits[("openai", "jsonl")].path / "train.jsonl") == []
        table = pq.read_table(splits[("openai", "parquet")].path / "train.parquet")
        assert table.column_names == ["messages", "tools"]
        assert table.to_pylist()[0]["messages"][1]["tool_calls"][0]["function"]["name"] == "weather"
        ref = load_split(splits[("messages", "jsonl")].path).train
        assert ref[0]["tools"] and ref[0]["messages"][1]["tool_calls"] and ref[1]["messages"][1]["weight"] == 0
        for key, m in splits.items():
            assert load_split(m.path).train == ref, key

        sg = export.export_split(ws, "sg", format="sharegpt", val=0, include="approved+pending", skip_invalid=True)
        assert [s["sample_id"] for s in sg.data["skipped"]] == [ids[1]]  # the weight-0 turn: sharegpt cannot mark it
        conv = _lines(sg.path / "train.jsonl")[0]
        assert [t["from"] for t in conv["conversations"]] == ["human", "function_call", "observation", "gpt"]
        assert json.loads(conv["conversations"][1]["value"]) == {"name": "weather", "arguments": {"city": "Paris"}}
        assert json.loads(conv["tools"]) == TOOL_ROWS[0]["tools"]  # LLaMA-Factory: tools as JSON text
        info = json.loads((sg.path / "dataset_info.json").read_text(encoding="utf-8"))["sg"]
        assert info["columns"] == {"messages": "conversations", "tools": "tools"}
        assert info["tags"]["function_tag"] == "function_call" and info["tags"]["observation_tag"] == "observation"
        no_ids = lambda row: json.loads(re.sub(r', "(tool_call_)?id": "c1"|"id": "c1", ', "", json.dumps(row)))  # noqa: E731
        assert load_split(sg.path).train[0] == no_ids(ref[0])  # sharegpt rows carry no call ids; the rest is equal

        with pytest.raises(StudioError) as err:
            export.export_split(ws, "al", format="alpaca", val=0, include="approved+pending")
        assert f"train.jsonl:1 (sample {ids[0]}): tool calls, tool turns or turn weights: alpaca rows cannot hold them" in str(err.value)
        assert not (ws.splits_dir / "al").exists()
