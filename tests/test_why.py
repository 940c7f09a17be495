"""`studio why RUN ITEM`: a user's story with real parts. Import an alpaca file, dedup, check
quality, edit a row, export a split, write a run and an eval by hand (no model), then ask why the
fine-tune answered an item the way it did: the planted near-duplicate training row must come first,
with its source file and line, its quality flag, its duplicate cluster and its edit."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from curation.dedup import DedupParams, find_duplicates
from curation.export import export_split
from curation.importers import import_paths
from curation.quality import run_quality
from curation.review import edit
from curation.samples import Message, Sample
from curation.store import insert_samples
from curation.why import item_query, nearest_training_rows, query_text
from curation.workspace import open_workspace
from studio.cli import main
from tests.conftest import ROOT
from training.config import load_config, save_config

RUN_ID = "r-why"
EVAL_ID = "eval-20250101-120000"

# The planted row (line 3 of the file): a long answer with two HTML tags (markup_debris fires at 1),
# and its near duplicate (line 4: one word fewer, so line 3 keeps the longer answer and is the keeper).
PLANTED_Q = "What is the capital of Australia?"
PLANTED_A = ("The capital of Australia is <b>Canberra</b>, a planned city chosen in 1908 as a compromise "
             "between Sydney and Melbourne, the two largest cities, which both wanted the title; parliament "
             "first met there in 1927 and the city is home to the High Court and many national institutions.")
NEAR_DUP_A = PLANTED_A.replace(" national institutions", " institutions")
DISTRACTOR_Q = "What is the capital of Austria?"  # shares most of the prompt, not the answer
DISTRACTOR_A = "Vienna is the capital of Austria and its largest city, on the river Danube."
MODEL_ANSWER = ("The capital of Australia is Canberra, a planned city chosen in 1908 as a compromise between "
                "Sydney and Melbourne, the two largest cities, which both wanted the title.")

FILLER = [
    ("Name a primary colour.", "Red is a primary colour."),
    ("Translate 'cat' into French.", "Chat."),
    ("What is 12 times 12?", "12 times 12 is 144."),
    ("Give a synonym for happy.", "Joyful is a synonym for happy."),
    ("Who wrote Hamlet?", "William Shakespeare wrote Hamlet around 1600."),
    ("What does CPU stand for?", "CPU stands for central processing unit."),
    ("Boil an egg: how long?", "About nine minutes for a hard-boiled egg."),
    ("Spell the word necessary.", "N-E-C-E-S-S-A-R-Y."),
    ("What is the boiling point of water at sea level?", "100 degrees Celsius, or 212 degrees Fahrenheit."),
    ("Suggest a name for a goldfish.", "Bubbles is a classic name for a goldfish."),
]


def _write_alpaca(path: Path) -> Path:
    rows = [{"instruction": q, "input": "", "output": a} for q, a in FILLER[:2]]
    rows += [{"instruction": PLANTED_Q, "input": "", "output": PLANTED_A},   # line 3
             {"instruction": PLANTED_Q, "input": "", "output": NEAR_DUP_A},  # line 4
             {"instruction": DISTRACTOR_Q, "input": "", "output": DISTRACTOR_A}]
    rows += [{"instruction": q, "input": "", "output": a} for q, a in FILLER[2:]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _write_eval(run_dir: Path, *, source: str) -> Path:
    d = run_dir / "evals" / EVAL_ID
    d.mkdir(parents=True)
    items = [
        {"id": "row:1", "messages": [{"role": "user", "content": "Name a colour of the rainbow."}],
         "reference": "Red", "source": {},
         "answers": {"base": {"text": "Blue.", "tokens": 2, "seconds": 0.1, "correct": False, "score": 0.0, "detail": ""},
                     RUN_ID: {"text": "Red.", "tokens": 2, "seconds": 0.1, "correct": True, "score": 1.0, "detail": ""}}},
        {"id": "row:2", "messages": [{"role": "user", "content": "Which city is the capital of Australia?"}],
         "reference": "Canberra", "source": {},
         "answers": {"base": {"text": "Sydney.", "tokens": 2, "seconds": 0.1, "correct": False, "score": 0.0, "detail": ""},
                     RUN_ID: {"text": MODEL_ANSWER, "tokens": 40, "seconds": 0.3, "correct": True, "score": 1.0,
                              "detail": ""}}},
    ]
    (d / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    summary = {"eval_id": EVAL_ID, "source": source, "part": "train", "scorer": "contains", "items": len(items),
               "models": [{"name": "base", "kind": "base"}, {"name": RUN_ID, "kind": "adapter"}]}
    (d / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return d


def make_story(tmp_path: Path) -> dict:
    """A workspace with clusters, flags and an edit; split v1; run r-why with one eval."""
    ws_dir = tmp_path / "ws"
    data = _write_alpaca(tmp_path / "facts.jsonl")
    ws = open_workspace(ws_dir)
    try:
        import_paths(ws, [data])
        ids = {r[1]: r[0] for r in ws.con.execute("SELECT id, source_row FROM samples").fetchall()}
        planted, near_dup, distractor = ids[3], ids[4], ids[5]
        # An edit of the planted row (a fixed typo in the question) before dedup; the answer is kept.
        edit(ws, planted, messages=[{"role": "user", "content": PLANTED_Q.replace("?", " ?")},
                                    {"role": "assistant", "content": PLANTED_A}], reason="spacing before ?")
        dedup = find_duplicates(ws, DedupParams(), workers=1)
        quality = run_quality(ws, workers=1)
        split = export_split(ws, "v1", val=0.0, include="approved+pending")
    finally:
        ws.close()
    assert dedup.near_clusters == 1 and dedup.duplicates == 1
    assert quality.by_rule.get("markup_debris") == 2
    split_dir = ws_dir / "splits" / "v1"
    assert Path(split.path) == split_dir and planted in split.sample_ids("train")
    run_dir = ws_dir / "runs" / RUN_ID
    run_dir.mkdir(parents=True)
    cfg = load_config(overrides={"data.split": str(split_dir), "base": "tiny"})
    save_config(cfg, run_dir / "config.yaml")
    _write_eval(run_dir, source=str(data))
    return {"ws": ws_dir, "data": data, "split": split_dir, "run": run_dir,
            "planted": planted, "near_dup": near_dup, "distractor": distractor}


@pytest.fixture
def story(tmp_path):
    return make_story(tmp_path)


def _why(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["why", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_why_puts_the_planted_near_duplicate_first_with_its_history(story, capsys):
    rc, out, err = _why(capsys, RUN_ID, "row:2", "-w", str(story["ws"]), "--json")
    assert rc == 0, err
    d = json.loads(out)
    # defaults: the newest eval, the run's own adapter column
    assert (d["run"], d["eval"], d["item"], d["model"]) == (RUN_ID, EVAL_ID, "row:2", RUN_ID)
    assert d["answer"]["text"] == MODEL_ANSWER and d["answer"]["correct"] is True
    assert d["reference"] == "Canberra" and d["prompt"] == "Which city is the capital of Australia?"
    rows = d["nearest"]
    # only rows sharing a shingle come back: the planted row and the distractor ("what is the capital of")
    assert [r["sample_id"] for r in rows] == [story["planted"], story["distractor"]]
    first = rows[0]
    assert first["sample_id"] == story["planted"] and first["rank"] == 1
    assert first["answer"] == PLANTED_A
    assert first["instruction"] == "What is the capital of Australia ?"  # the edited text, as exported
    assert 0.3 < first["similarity"] <= 1.0
    assert first["similarity"] > rows[1]["similarity"]
    # the near duplicate left the split (duplicate_of); the distractor is ranked, below the planted row
    assert story["near_dup"] not in [r["sample_id"] for r in rows]
    h = first["history"]
    assert h["source_file"].endswith("facts.jsonl") and h["source_row"] == 3
    assert first["source"]["source_row"] == 3
    assert h["status"] == "pending"
    assert [(f["rule_id"], f["value"], f["threshold"]) for f in h["flags"]] == [("markup_debris", 2.0, 1.0)]
    c = h["cluster"]
    assert c["method"] == "near" and c["size"] == 2 and c["keeper_id"] == story["planted"] and c["is_keeper"] is True
    assert h["edits"]["version"] == 2 and h["edits"]["earlier_versions"] == 1
    assert h["edits"]["latest"]["reason"] == "spacing before ?" and h["edits"]["latest"]["kind"] == "edit"
    assert h["augment"] is None and h["import"]["format"] == "alpaca"


def test_why_other_model_and_readable_output(story, capsys):
    rc, out, err = _why(capsys, RUN_ID[:3], "row:2", "-w", str(story["ws"]), "--model", "base", "-k", "1")
    assert rc == 0, err
    assert "model base" in out and "answer:    Sydney.  [wrong]" in out
    assert " 1. sample " in out and " 2. " not in out  # -k 1
    rc, out, err = _why(capsys, RUN_ID[:3], "row:2", "-w", str(story["ws"]))
    assert rc == 0, err
    assert f"model {RUN_ID}" in out and "[correct]" in out
    assert f" 1. sample {story['planted']}" in out
    assert "source " in out and "facts.jsonl:3" in out
    assert "flags: markup_debris (2 vs 1)" in out
    assert "cluster " in out and "the keeper" in out
    assert "edited: version 2 (1 earlier)" in out and "spacing before ?" in out


def test_why_unknown_item_is_one_clear_line(story, capsys):
    rc, out, err = _why(capsys, RUN_ID, "s999", "-w", str(story["ws"]))
    assert rc == 2 and out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "no item 's999'" in lines[0] and EVAL_ID in lines[0] and "row:1, row:2" in lines[0]


def test_why_without_evals_or_split_says_what_to_do(story, capsys):
    import shutil

    shutil.rmtree(story["run"] / "evals")
    rc, _, err = _why(capsys, RUN_ID, "row:2", "-w", str(story["ws"]))
    assert rc == 2 and "Traceback" not in err
    assert f"run studio eval {RUN_ID} first" in err
    _write_eval(story["run"], source=str(story["data"]))
    shutil.rmtree(story["split"])
    rc, _, err = _why(capsys, RUN_ID, "row:2", "-w", str(story["ws"]))
    assert rc == 2 and "is missing" in err and "studio export v1" in err
    rc, _, err = _why(capsys, "nope", "row:2", "-w", str(story["ws"]))
    assert rc == 2 and "no run 'nope'" in err


HOLD = """
import sys
sys.path.insert(0, sys.argv[2])
from curation.workspace import open_workspace
ws = open_workspace(sys.argv[1])
print("ready", flush=True)
sys.stdin.read()
"""


def test_why_with_the_workspace_locked_is_one_line(story, capsys):
    # another process holds the DuckDB file; the eval and split checks pass, opening the workspace fails
    script = story["ws"].parent / "hold.py"  # a file, so the holder's command line is one line
    script.write_text(HOLD, encoding="utf-8")
    holder = subprocess.Popen([sys.executable, str(script), str(story["ws"]), str(ROOT)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        rc, out, err = _why(capsys, RUN_ID, "row:2", "-w", str(story["ws"]))
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert rc == 2 and out == "" and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert f"process {holder.pid}" in err and "close that studio or wait for that command to finish" in err


def test_nearest_rows_show_augmentation_and_foreign_samples(tmp_path):
    ws = open_workspace(tmp_path / "ws")
    try:
        parent = insert_samples(ws.con, [Sample("chat", (Message("user", "Describe the moon in one line."),
                                                          Message("assistant", "A grey rocky satellite.")),
                                                source_file="moon.json", source_row=1)])[0]
        child = insert_samples(ws.con, [Sample(
            "chat", (Message("user", "Describe the moon of the Earth in a single line, please."),
                     Message("assistant", "The moon is a grey, rocky, cratered satellite of the Earth.")),
            parent_id=parent, operation="augment:rewrite",
            lineage={"job_id": 7, "provider": "local", "model": "qwen-7b", "template": "en/rewrite"})])[0]
        ws.con.execute("INSERT INTO augment_outputs (request_key, sample_id, parent_id, job_id) VALUES ('k', ?, ?, 7)",
                       [child, parent])
        export_split(ws, "moon", val=0.0, include="approved+pending")
        split_dir = ws.splits_dir / "moon"
        q = query_text("Describe the Earth's moon in a single line.",
                       "The moon is a grey, rocky, cratered satellite of the Earth.")
        rows = nearest_training_rows(ws, split_dir, q, k=2)
    finally:
        ws.close()
    assert [r["sample_id"] for r in rows] == [child, parent]
    a = rows[0]["history"]["augment"]
    assert a == {"parent_id": parent, "operation": "rewrite", "job_id": 7, "provider": "local", "model": "qwen-7b",
                 "template": "en/rewrite"}
    assert rows[1]["history"]["augment"] is None and rows[1]["history"]["source_row"] == 1
    # the same split read against another workspace: its sample ids are not there, rows still come back
    other = open_workspace(tmp_path / "other")
    try:
        foreign = nearest_training_rows(other, split_dir, q, k=2)
    finally:
        other.close()
    assert [r["sample_id"] for r in foreign] == [child, parent]
    assert all(r["history"] is None for r in foreign)
    assert foreign[1]["source"] == {"source_id": None, "source_file": "moon.json", "source_row": 1}
    # unmarked queries (plain text) work too; a query with no shingles finds nothing
    assert nearest_training_rows(None, split_dir, "grey rocky cratered satellite of the Earth", k=1)[0]["sample_id"] == child
    assert nearest_training_rows(None, split_dir, "?!", k=3) == []


def test_item_query_uses_the_last_user_turn_and_the_models_answer():
    item = {"messages": [{"role": "user", "content": "first"}, {"role": "assistant", "content": "x"},
                         {"role": "user", "content": "second"}],
            "answers": {"m": {"text": "the answer"}}}
    assert item_query(item, "m") == query_text("second", "the answer")
    assert item_query(item, "other") == query_text("second")


def test_train_rows_read_the_same_from_every_export_target(tmp_path):
    """`studio why` reads the split's train rows: it read them as JSONL only, so a run trained on
    a parquet or hf (save_to_disk) split could not be explained."""
    from curation.export import export_split
    from curation.importers import import_paths
    from curation.why import read_train_rows
    from curation.workspace import open_workspace
    from tests.conftest import SAMPLE_DATA

    with open_workspace(tmp_path / "ws") as ws:
        import_paths(ws, [SAMPLE_DATA / "alpaca_mixed.json", SAMPLE_DATA / "sharegpt_chat.jsonl"])
        read = {}
        for target in ("jsonl", "parquet", "hf"):
            manifest = export_split(ws, target, include="approved+pending", target=target)
            read[target] = read_train_rows(manifest.path)
    pairs, meta = read["jsonl"]
    assert len(pairs) > 100 and all(q or a for q, a in pairs) and meta[0].get("sample_id")
    assert read["parquet"] == read["jsonl"] and read["hf"] == read["jsonl"]
