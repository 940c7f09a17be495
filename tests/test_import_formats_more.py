"""Import of the shapes real datasets come in, end to end: the file -> the canonical sample -> an
exported split (messages format) -> `training.data.load_split` -> token ids and labels.

Compressed files (gzip, zstd, bzip2, xz, recognised by content), Hugging Face hub dataset folders
(split label per file), tool use (glaive / LLaMA-Factory ShareGPT and OpenAI), OpenAI's per-turn
`weight`, role/content vs from/value in either list, and content given as parts. The files are
written by `datasets` or by hand in the documented formats (tests/data/README.md says which)."""
from __future__ import annotations

import bz2
import gzip
import json
import lzma
from pathlib import Path

import pytest

from curation.errors import StudioError
from curation.importers import import_paths
from curation.samples import from_row
from curation.sql_json import messages_sql

DATA = Path(__file__).resolve().parent / "data"
ALPACA = [{"instruction": f"Name the number after {i}.", "output": f"{i + 1}", "id": f"n-{i}"} for i in range(4)]


def rows(ws, where="TRUE"):
    # messages as every reader takes them: the fast import stores none for its rows (sql_json.messages_sql)
    cur = ws.con.execute(f"SELECT * REPLACE ({messages_sql()} AS messages) FROM samples WHERE {where} ORDER BY id")
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def jsonl(records) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


def exported(ws, name="v1"):
    """Export every sample (messages format, no validation part) and read the split as training does."""
    from curation.export import export_split
    from training.data import load_split

    manifest = export_split(ws, name, val=0, include="approved+pending", format="messages")
    return load_split(manifest.path)


def tokenizer_for(split):
    """The tiny training tokenizer (its ChatML template renders tools), trained on the split's text."""
    from training.tiny import build_tokenizer

    return build_tokenizer(list(split.all_texts()), 400)


def trained_text(tok, t) -> str:
    return tok.decode([x for x in t.labels if x != -100])


# -- 1. compressed files, recognised by content -----------------------------------------------------
COMPRESSED = {
    "jsonl.gz": ("x.jsonl.gz", lambda: gzip.compress(jsonl(ALPACA)), True),
    "json.zst": ("x.json.zst", lambda: zstd(json.dumps(ALPACA).encode()), True),  # a JSON array
    "jsonl.bz2": ("x.jsonl.bz2", lambda: bz2.compress(jsonl(ALPACA)), False),
    "jsonl.xz": ("x.jsonl.xz", lambda: lzma.compress(jsonl(ALPACA)), False),
    "gz-named-jsonl": ("x.jsonl", lambda: gzip.compress(jsonl(ALPACA)), True),
}


@pytest.mark.parametrize("kind", list(COMPRESSED))
def test_compressed_file_imports_as_its_rows_and_trains(ws, tmp_path, kind):
    name, make, fast = COMPRESSED[kind]
    src = tmp_path / name
    src.write_bytes(make())
    report = import_paths(ws, [src])
    f = report.files[0]
    assert (f.rows_imported, f.format, f.fast_path) == (4, "alpaca", fast)  # DuckDB reads gzip/zstd itself
    got = rows(ws)
    assert [(r["instruction"], r["answer"], r["source_id"], r["source_file"], r["source_row"]) for r in got] == [
        (a["instruction"], a["output"], a["id"], name, i + 1) for i, a in enumerate(ALPACA)]
    assert all(r["content_hash"] == from_row(r).content_hash() for r in got)
    # the same rows uncompressed are the same file: nothing added
    plain = tmp_path / "plain.jsonl" if name.startswith("x.jsonl") else tmp_path / "plain.json"
    plain.write_bytes(jsonl(ALPACA) if name.startswith("x.jsonl") else json.dumps(ALPACA).encode())
    assert import_paths(ws, [plain]).files[0].skipped_as_already_imported
    split = exported(ws)
    assert [s["messages"][-1]["content"] for s in split.train] == ["1", "2", "3", "4"]
    from training.data import tokenise_sample

    tok = tokenizer_for(split)
    assert trained_text(tok, tokenise_sample(tok, split.train[0])) == "1<|im_end|>\n"


def test_format_jsonl_on_a_gzip_file_reads_it_and_a_damaged_one_says_what_it_is(ws, tmp_path):
    src = tmp_path / "x.jsonl.gz"
    src.write_bytes(gzip.compress(jsonl(ALPACA)))
    assert import_paths(ws, [src], format="jsonl").rows_imported == 4
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(jsonl(ALPACA * 50))[:60])
    with pytest.raises(StudioError) as err:
        import_paths(ws, [cut], format="jsonl")
    msg = str(err.value)
    assert "gzip-compressed file that cannot be decompressed" in msg and "--encoding" not in msg and "\n" not in msg


def test_an_archive_named_jsonl_is_named_as_an_archive_not_an_encoding(ws, tmp_path):
    import zipfile

    src = tmp_path / "data.jsonl"
    with zipfile.ZipFile(src, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("data.jsonl", jsonl(ALPACA))
    with pytest.raises(StudioError) as err:
        import_paths(ws, [src], format="jsonl")
    assert "a zip archive: unzip it" in str(err.value) and "--encoding" not in str(err.value)


# -- 2. Hugging Face hub dataset folders -----------------------------------------------------------
def test_hub_dataset_folder_imports_every_split_file_with_its_split_label(ws, tmp_path):
    from datasets import Dataset

    repo = tmp_path / "org--tiny-chat"
    (repo / "data").mkdir(parents=True)
    chat = lambda q, a: [{"role": "user", "content": q}, {"role": "assistant", "content": a}]  # noqa: E731
    Dataset.from_dict({"messages": [chat("train q0", "train a0"), chat("train q1", "train a1")]}).to_parquet(
        repo / "data" / "train-00000-of-00002.parquet")
    Dataset.from_dict({"messages": [chat("train q2", "train a2")]}).to_parquet(repo / "data" / "train-00001-of-00002.parquet")
    Dataset.from_dict({"messages": [chat("test q", "test a")]}).to_parquet(repo / "data" / "test-00000-of-00001.parquet")
    Dataset.from_dict({"instruction": ["validation q"], "output": ["validation a"]}).to_json(repo / "validation.jsonl")
    (repo / "README.md").write_text("---\nconfigs: [{config_name: default}]\n---\n# tiny chat\n")
    (repo / ".gitattributes").write_text("*.parquet filter=lfs\n")
    # what huggingface_hub leaves in a local_dir download, and a clone's .git: never data
    cache = repo / ".cache" / "huggingface" / "download" / "data"
    cache.mkdir(parents=True)
    (cache / "train-00000-of-00002.parquet.metadata").write_text("abc\n123\n")
    (cache / "stray.jsonl").write_text("not json at all\n")
    (repo / ".git").mkdir()
    (repo / ".git" / "packed.json").write_text("{broken")

    report = import_paths(ws, [repo])
    assert [(f.path.name, f.rows_imported) for f in report.files] == [
        ("test-00000-of-00001.parquet", 1), ("train-00000-of-00002.parquet", 2),
        ("train-00001-of-00002.parquet", 1), ("validation.jsonl", 1)]
    got = {r["instruction"]: (r["source_file"], list(r["tags"])) for r in rows(ws)}
    assert got == {
        "test q": ("org--tiny-chat/data/test-00000-of-00001.parquet", ["split:test"]),
        "train q0": ("org--tiny-chat/data/train-00000-of-00002.parquet", ["split:train"]),
        "train q1": ("org--tiny-chat/data/train-00000-of-00002.parquet", ["split:train"]),
        "train q2": ("org--tiny-chat/data/train-00001-of-00002.parquet", ["split:train"]),
        "validation q": ("org--tiny-chat/validation.jsonl", ["split:validation"]),
    }
    split = exported(ws)
    assert sorted(s["messages"][0]["content"] for s in split.train) == sorted(got)


# -- 3. tool use ------------------------------------------------------------------------------------
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city"]}}}


def test_glaive_sharegpt_tool_calls_land_in_openai_shape_and_train(ws):
    report = import_paths(ws, [DATA / "glaive_toolcall_demo.json"])
    assert (report.rows_imported, report.files[0].format) == (2, "sharegpt")
    first = rows(ws)[0]
    assert json.loads(first["messages"]) == [
        {"role": "user", "content": "What is the weather in Lisbon right now?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Lisbon", "unit": "celsius"}'}}]},
        # glaive rows carry no ids: the call gets one and the observation answers it by id (OpenAI's shape)
        {"role": "tool", "content": '{"temperature": 21, "sky": "clear"}', "tool_call_id": "call_1", "name": "get_weather"},
        {"role": "assistant", "content": "It is 21 °C and clear in Lisbon."}]
    assert json.loads(first["tools"]) == [WEATHER]  # the JSON-string `tools` column, kept
    sample = from_row(first)
    assert sample.tools == (WEATHER,) and sample.content_hash() == first["content_hash"]

    split = exported(ws)
    row = split.train[0]
    assert row["tools"] == [WEATHER]
    assert row["messages"][1]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lisbon", "unit": "celsius"}}}]
    # ... so an OpenAI fine-tuning export takes them (it refused tool turns without a tool_call_id)
    from curation.export import check_openai_file, export_split

    oa = export_split(ws, "oa", format="openai", include="approved+pending", val=0)
    assert check_openai_file(ws.splits_dir / "oa" / "train.jsonl") == [] and oa.counts["train"] == 2
    from training.data import tokenise_sample

    tok = tokenizer_for(split)
    t = tokenise_sample(tok, row)
    text = tok.decode(t.input_ids)
    assert '<tools>\n{"type": "function", "function": {"name": "get_weather"' in text  # the template's tools block
    assert '<|im_start|>tool\n{"temperature": 21, "sky": "clear"}<|im_end|>' in text
    assert trained_text(tok, t) == ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lisbon", "unit": "celsius"}}'
                                    '\n</tool_call><|im_end|>\nIt is 21 °C and clear in Lisbon.<|im_end|>\n')


def test_openai_tool_turns_and_weight_zero_are_kept_shown_exported_and_not_trained(ws):
    from curation import browse
    from studio.widgets.sample_view import render_detail
    from training.data import tokenise_sample

    report = import_paths(ws, [DATA / "openai_tools.jsonl"])
    assert (report.rows_imported, report.files[0].format) == (1, "messages")
    r = rows(ws)[0]
    msgs = json.loads(r["messages"])
    assert r["system"] == "You answer weather questions with the tool."
    assert msgs[1] == {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}
    assert msgs[2] == {"role": "tool", "content": '{"temperature": -3}', "tool_call_id": "call_1"}
    assert msgs[3] == {"role": "assistant", "content": "Minus three in Oslo, wrap up.", "weight": 0}
    assert json.loads(r["tools"]) == [WEATHER]

    # Review shows the call, the result's call id and the weight
    shown = "\n".join(t.plain for t in render_detail(browse.get_sample(ws.con, r["id"])).renderables)
    assert '→ get_weather({"city": "Oslo"})' in shown and "tool call_1" in shown and "weight 0: not trained" in shown
    assert "get_weather(city, unit): The current weather in a city" in shown  # the offered tool's schema

    split = exported(ws)
    row = split.train[0]
    assert row["messages"][4] == {"role": "assistant", "content": "Minus three in Oslo, wrap up.", "weight": 0}
    tok = tokenizer_for(split)
    for assistant_only in (True, False):
        t = tokenise_sample(tok, row, assistant_only=assistant_only)
        full = tok.decode(t.input_ids)
        assert "Minus three in Oslo, wrap up." in full  # rendered ...
        assert "Minus three" not in trained_text(tok, t)  # ... never trained: labels -100 over that turn
        start = full.index("Minus three")
        masked = [lab for (a, _), lab in zip(tok(full, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"], t.labels)
                  if start <= a < start + len("Minus three in Oslo, wrap up.<|im_end|>")]
        assert masked and set(masked) == {-100}
    t = tokenise_sample(tok, row)
    assert trained_text(tok, t) == ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>\n'
                                    "That was celsius: -3 °C.<|im_end|>\n")
    assert len(t.turn_ends) == 2  # the weight-0 turn is not checked for EOS either: it is not trained


def test_weight_zero_on_a_plain_conversation_is_kept_and_not_trained(ws, tmp_path):
    from training.data import tokenise_sample

    src = tmp_path / "w.jsonl"
    src.write_bytes(jsonl([{"messages": [
        {"role": "user", "content": "Greet me."}, {"role": "assistant", "content": "Yo.", "weight": 0},
        {"role": "user", "content": "Politely."}, {"role": "assistant", "content": "Good morning.", "weight": 1}]}]))
    import_paths(ws, [src])
    assert json.loads(rows(ws)[0]["messages"])[1:4:2] == [  # weight 1 is the default: not stored
        {"role": "assistant", "content": "Yo.", "weight": 0}, {"role": "assistant", "content": "Good morning."}]
    split = exported(ws)
    tok = tokenizer_for(split)
    t = tokenise_sample(tok, split.train[0])
    assert "Yo." in tok.decode(t.input_ids) and trained_text(tok, t) == "Good morning.<|im_end|>\n"


def test_a_template_without_tools_support_is_refused_in_one_line(ws):
    from tests._tiny_lora import CHATML
    from training.data import tokenise_sample
    from training.errors import DataError

    import_paths(ws, [DATA / "glaive_toolcall_demo.json"])
    split = exported(ws)
    tok = tokenizer_for(split)
    tok.chat_template = CHATML  # plain ChatML, as SmolLM2-Instruct's: it ignores tools and tool_calls
    with pytest.raises(DataError) as err:
        tokenise_sample(tok, split.train[0])
    msg = str(err.value)
    assert "chat template cannot render tool use (it drops the tools and the assistant's tool calls)" in msg
    assert "\n" not in msg
    plain = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    assert trained_text(tok, tokenise_sample(tok, plain)) == "yo<|im_end|>\n"  # plain rows still train


def test_tool_turn_order_is_checked_with_the_file_names_of_the_fields(ws, tmp_path):
    bad = {"conversations": [{"from": "human", "value": "weather?"}, {"from": "observation", "value": "21"},
                             {"from": "gpt", "value": "21"}]}
    notjson = {"conversations": [{"from": "human", "value": "weather?"}, {"from": "function_call", "value": "get_weather(Oslo)"},
                                 {"from": "observation", "value": "21"}, {"from": "gpt", "value": "21"}]}
    src = tmp_path / "t.jsonl"
    src.write_bytes(jsonl([bad, notjson]))
    with pytest.raises(StudioError) as err:
        import_paths(ws, [src])
    assert "t.jsonl:1: conversations[1].from: a tool turn must follow an assistant turn with tool_calls" in str(err.value)
    assert "t.jsonl:2: conversations[1].value: a function_call turn holds JSON" in str(err.value)


# -- 4/5/6. role variants, content parts ------------------------------------------------------------
def test_role_content_and_from_value_are_read_in_either_list(ws, tmp_path):
    files = {
        "m.jsonl": {"messages": [{"from": "human", "value": "from/value in messages"}, {"from": "gpt", "value": "ok 1"}]},
        "c.jsonl": {"conversations": [{"role": "user", "content": "role/content in conversations"},
                                      {"role": "assistant", "content": "ok 2"}]},
    }
    for name, rec in files.items():
        (tmp_path / name).write_bytes(jsonl([rec]))
    report = import_paths(ws, [tmp_path / "m.jsonl", tmp_path / "c.jsonl"])
    assert [f.format for f in report.files] == ["messages", "sharegpt"]
    assert [json.loads(r["messages"]) for r in rows(ws)] == [
        [{"role": "user", "content": "from/value in messages"}, {"role": "assistant", "content": "ok 1"}],
        [{"role": "user", "content": "role/content in conversations"}, {"role": "assistant", "content": "ok 2"}]]
    assert [s["messages"][1]["content"] for s in exported(ws).train] == ["ok 1", "ok 2"]


def test_other_turn_keys_suggest_map_and_map_reads_them(ws, tmp_path):
    src = tmp_path / "speaker.jsonl"
    src.write_bytes(jsonl([{"messages": [{"speaker": "user", "text": "hi"}, {"speaker": "assistant", "text": "hello"}]}]))
    with pytest.raises(StudioError) as err:
        import_paths(ws, [src])
    assert "messages[0]: has no 'role' or 'from' key (its keys: speaker, text); name yours with --map role=YOUR_KEY,content=YOUR_KEY" in str(err.value)
    assert import_paths(ws, [src], mapping={"role": "speaker", "content": "text"}).rows_imported == 1
    assert json.loads(rows(ws)[0]["messages"])[1] == {"role": "assistant", "content": "hello"}


def test_text_parts_are_joined_and_loss_weight_is_read(ws):
    from training.data import tokenise_sample

    report = import_paths(ws, [DATA / "v1_sft_demo.jsonl"])
    assert report.rows_imported == 2
    assert [json.loads(r["messages"]) for r in rows(ws)] == [
        [{"role": "user", "content": "Introduce yourself."}, {"role": "assistant", "content": "I am a small assistant."}],
        [{"role": "user", "content": "Two parts: one, two."}, {"role": "assistant", "content": "Joined."}]]
    split = exported(ws)
    tok = tokenizer_for(split)
    assert trained_text(tok, tokenise_sample(tok, split.train[0])) == "I am a small assistant.<|im_end|>\n"


@pytest.mark.parametrize("part,expect", [
    ({"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}, "image content is not supported; only text turns"),
    ({"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}, "content part of type 'input_audio' is not supported"),
], ids=["image", "audio"])
def test_non_text_parts_are_refused_in_one_line(ws, tmp_path, part, expect):
    src = tmp_path / "mm.jsonl"
    src.write_bytes(jsonl([{"messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, part]},
                                         {"role": "assistant", "content": "A cat."}]}]))
    with pytest.raises(StudioError) as err:
        import_paths(ws, [src])
    assert f"mm.jsonl:1: messages[0].content[1]: {expect}" in str(err.value)
