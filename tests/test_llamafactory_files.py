"""LLaMA-Factory's own demo files (tests/data/llamafactory/, from its repository at the commit in
tests/data/README.md): the folder imports as its users' `studio import data/ --skip-invalid` would,
with nothing lost, and every tool-use conversation goes round to an OpenAI fine-tuning file, a
LLaMA-Factory ShareGPT file and training's tokens."""
from __future__ import annotations

import json
from pathlib import Path

from studio.cli import main

LF = Path(__file__).resolve().parent / "data" / "llamafactory"


def _rows(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines()) if path.suffix == ".jsonl" else len(json.loads(path.read_text("utf-8")))


def test_the_demo_folder_imports_whole_and_skips_the_index(tmp_path, capsys):
    ws = tmp_path / "ws"
    assert main(["import", str(LF), "-w", str(ws), "--skip-invalid", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    by_file = {Path(f["path"]).name: f for f in report["files"]}
    data_files = [p for p in sorted(LF.iterdir()) if p.name != "dataset_info.json"]
    for p in data_files:  # the glaive files lost 153 of 300 rows, and 38 more their tools, before
        assert by_file[p.name]["rows_imported"] == _rows(p), (p.name, by_file[p.name])
    assert "dataset_info.json" not in by_file or not by_file["dataset_info.json"].get("rows_imported")

    from curation.workspace import open_workspace

    with open_workspace(ws) as w:
        with_tools = w.con.execute(
            "SELECT count(*) FROM samples WHERE source_file LIKE '%glaive%' AND tools IS NOT NULL").fetchall()[0][0]
        glaive_rows = sum(_rows(LF / f"glaive_toolcall_{lang}_demo.json") for lang in ("en", "zh"))
        glaive_with_tools = sum(1 for lang in ("en", "zh") for r in json.loads((LF / f"glaive_toolcall_{lang}_demo.json")
                                                                                .read_text("utf-8")) if json.loads(r.get("tools") or "[]"))
        assert with_tools == glaive_with_tools and glaive_rows == 80


def test_tool_use_goes_round_to_openai_sharegpt_and_training_tokens(tmp_path, capsys):
    from curation.export import check_openai_file
    from training.data import load_split, tokenise_sample
    from training.tiny import build_tokenizer

    ws = tmp_path / "ws"
    assert main(["import", str(LF / "glaive_toolcall_en_demo.json"), "-w", str(ws)]) == 0
    for fmt in ("openai", "sharegpt"):
        assert main(["export", fmt, "-w", str(ws), "--format", fmt, "--include", "approved+pending", "--val", "0"]) == 0
    capsys.readouterr()
    assert check_openai_file(ws / "splits" / "openai" / "train.jsonl") == []
    sharegpt = [json.loads(line) for line in (ws / "splits" / "sharegpt" / "train.jsonl").read_text("utf-8").splitlines()]
    source = json.loads((LF / "glaive_toolcall_en_demo.json").read_text("utf-8"))
    assert len(sharegpt) == len(source) == 40
    roles = lambda convs: [[t["from"] for t in c] for c in convs]  # noqa: E731
    assert sorted(roles(r["conversations"] for r in sharegpt)) == sorted(roles(r["conversations"] for r in source))
    info = json.loads((ws / "splits" / "sharegpt" / "dataset_info.json").read_text("utf-8"))
    assert info["sharegpt"]["formatting"] == "sharegpt" and info["sharegpt"]["columns"].get("tools") == "tools"

    split = load_split(ws / "splits" / "openai")
    tok = build_tokenizer(list(split.all_texts()), 400)  # its ChatML template renders tools
    calls = 0
    for row in split.train:
        t = tokenise_sample(tok, row)
        trained = tok.decode([x for x in t.labels if x != -100])
        calls += trained.count("<tool_call>")
        assert "<|im_start|>user" not in trained  # only the assistant's turns, tool calls included, are trained
    assert calls == sum(1 for r in source for turn in r["conversations"] if turn["from"] == "function_call")
