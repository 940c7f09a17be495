"""The seed's advanced steps on the real trainer (tiny base, CPU): a hyperparameter sweep ranked by
eval loss, a two-stage pipeline (continued pretraining -> merge -> SFT), and replay mixing."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.training_fixtures import tiny_config, write_split

pytest.importorskip("trl")


def _general(path, n):
    path.write_text("".join(json.dumps({"text": f"general text number {i}."}) + "\n" for i in range(n)))
    return path


# ---------------------------------------------------------------- replay

def test_replay_adds_the_right_number_of_rows_deterministically():
    from training.replay import mix_replay, replay_count

    task = [{"text": f"task {i}"} for i in range(50)]
    general = [{"text": f"general {i}"} for i in range(200)]
    mixed, positions = mix_replay(task, general, 0.1, seed=3)
    assert replay_count(50, 0.1) == 5 and len(mixed) == 55 and len(positions) == 5
    assert [r for i, r in enumerate(mixed) if i not in positions] == task  # task rows untouched, in order
    assert all(mixed[p]["text"].startswith("general") for p in positions)
    assert mix_replay(task, general, 0.1, seed=3) == (mixed, positions)  # same seed, same mix
    assert mix_replay(task, general, 0.1, seed=4) != (mixed, positions)
    assert len(mix_replay(task, general[:2], 0.1, seed=3)[1]) == 2  # a short file gives what it has
    assert mix_replay(task, general, 0.0)[0] == task


def test_replay_split_records_what_was_mixed(tmp_path):
    from training.data import load_split
    from training.replay import write_replay_split

    split = write_split(tmp_path / "v1", n_train=20, n_val=4)
    info = write_replay_split(split, _general(tmp_path / "general.jsonl", 30), tmp_path / "mixed", fraction=0.25, seed=1)
    mixed = load_split(tmp_path / "mixed")
    assert info.replay_rows == 5 and len(mixed.train) == 25 and mixed.val == load_split(split).val
    manifest = json.loads((tmp_path / "mixed" / "manifest.json").read_text())
    assert manifest["settings"]["replay"]["positions"] == list(info.positions)
    assert manifest["settings"]["replay"]["fraction"] == 0.25 and len(manifest["settings"]["replay"]["source_sha256"]) == 64


def test_run_with_replay_trains_on_the_mix_and_says_so_in_its_config(tmp_path):
    from training import runs
    from training.config import load_run_config
    from training.data import load_split
    from training.replay import apply_replay

    split = write_split(tmp_path / "v1", n_train=12, n_val=4)
    run = runs.create_run(tmp_path / "runs", tiny_config(split, **{"train.max_steps": 2}), name="rp",
                          reproduce="studio train v1 --config {config}")
    info = apply_replay(run, _general(tmp_path / "g.jsonl", 10), 0.5)
    text = (run / "config.yaml").read_text()
    assert text.startswith("# reproduce: studio train v1") and "# replay: 6 rows of" in text
    cfg = load_run_config(run)
    assert len(load_split(cfg.data.split).train) == 18 and info.seed == cfg.train.seed
    assert runs.execute(run).state == "done"


# ---------------------------------------------------------------- sweep

def test_sweep_grid_names_and_alpha():
    from training.sweep import plan_sweep

    points = plan_sweep("s", r=[8, 16], lr=[2e-4, 1e-4], epochs=[1, 2])
    assert len(points) == 8 and points[0].name == "s-r8-lr2e-4-e1"
    assert points[-1].changes == {"lora.r": 16, "train.learning_rate": 1e-4, "train.epochs": 2, "lora.alpha": 32}


def test_sweep_trains_every_point_and_ranks_by_eval_loss(tmp_path, capsys):
    from studio.cli import main
    from training.runs import list_runs

    ws = tmp_path / "ws"
    write_split(ws / "splits" / "v1", n_train=12, n_val=4)
    code = main(["-w", str(ws), "sweep", "v1", "--preset", "tiny-demo", "--r", "4,8", "--lr", "1e-2,1e-4",
                 "--set", "train.max_steps=4", "--set", "train.eval_steps=2", "--name", "sw", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    rows = data["ranking"]
    assert sorted(r["run"] for r in rows) == ["sw-r4-lr0.01", "sw-r4-lr1e-4", "sw-r8-lr0.01", "sw-r8-lr1e-4"]
    losses = [r["eval_loss"] for r in rows]
    assert all(isinstance(x, float) for x in losses) and losses == sorted(losses)
    assert [r["best"] for r in rows] == [True, False, False, False]
    assert rows[0]["changes"]["train.learning_rate"] == 1e-2  # 4 steps at 1e-4 barely move: the high lr wins
    listed = {r.id: r for r in list_runs(ws / "runs")}
    for r in rows:
        assert listed[r["run"]].eval_loss == r["eval_loss"] and listed[r["run"]].state == "done"
    record = json.loads((ws / "runs" / "sw.sweep.json").read_text())
    assert [r["run"] for r in record["ranking"]] == [r["run"] for r in rows]

    from training.sweep import format_table, plan_sweep, rank

    table = format_table(rank([ws / "runs" / r["run"] for r in rows], plan_sweep("sw", r=[4, 8], lr=[1e-2, 1e-4])))
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["#", "run", "r", "lr"]
    assert lines[1].startswith("1*") and rows[0]["run"] in lines[1]
    assert [ln.split()[1] for ln in lines[1:5]] == [r["run"] for r in rows]
    assert lines[-1] == f"* best by final eval loss: {rows[0]['run']}"


def test_sweep_with_replay_mixes_every_run(tmp_path, capsys):
    from studio.cli import main
    from training.config import load_run_config
    from training.data import load_split

    ws = tmp_path / "ws"
    write_split(ws / "splits" / "v1", n_train=12, n_val=4)
    general = _general(tmp_path / "general.jsonl", 20)
    code = main(["-w", str(ws), "sweep", "v1", "--preset", "tiny-demo", "--r", "4,8", "--set", "train.max_steps=2",
                 "--name", "rs", "--replay", str(general), "--replay-fraction", "0.5", "--json"])
    rows = json.loads(capsys.readouterr().out)["ranking"]
    assert code == 0 and len(rows) == 2
    for r in rows:
        cfg = load_run_config(ws / "runs" / r["run"])
        assert len(load_split(cfg.data.split).train) == 18 and "# replay: 6 rows" in (ws / "runs" / r["run"] / "config.yaml").read_text()


def test_sweep_without_validation_rows_refuses(tmp_path, capsys):
    from studio.cli import main

    ws = tmp_path / "ws"
    write_split(ws / "splits" / "noval", n_train=8, n_val=0)
    code = main(["-w", str(ws), "sweep", "noval", "--preset", "tiny-demo", "--r", "4,8"])
    assert code == 2 and "no validation rows" in capsys.readouterr().err
    assert not (ws / "runs").exists() or not any((ws / "runs").iterdir())


# ---------------------------------------------------------------- two-stage pipeline

def test_two_stage_pipeline_pretrains_merges_and_fine_tunes(tmp_path, capsys):
    from studio.cli import main
    from training.config import load_run_config
    from training.inference import describe_run, load_session

    ws = tmp_path / "ws"
    write_split(ws / "splits" / "v1", n_train=12, n_val=4)
    corpus = tmp_path / "domain" / "corpus.jsonl"
    corpus.parent.mkdir()
    corpus.write_text("".join(json.dumps({"text": f"The contract clause {i} binds the party of the first part."})
                              + "\n" for i in range(16)))
    general = _general(tmp_path / "domain" / "general.jsonl", 10)
    spec = {"name": "legal", "base": "tiny", "preset": "tiny-demo",
            "set": {"train.max_steps": 3, "train.eval_steps": 3, "train.save_steps": 3},
            "stages": [{"name": "pretrain", "split": "corpus.jsonl",
                        "set": {"data.kind": "text", "lora.r": 32, "lora.alpha": 64}},
                       {"name": "sft", "split": "v1", "set": {"lora.r": 8, "lora.alpha": 16},
                        "replay": {"file": general.name, "fraction": 0.25}}]}
    pfile = tmp_path / "domain" / "legal.yaml"
    pfile.write_text(yaml.safe_dump(spec))

    assert main(["-w", str(ws), "pipeline", str(pfile), "--check"]) == 0
    checked = capsys.readouterr().out
    assert "stage 1 legal-1-pretrain: text" in checked and "r=32" in checked and "stage 2 legal-2-sft: sft" in checked

    code = main(["-w", str(ws), "pipeline", str(pfile), "--merge-dtype", "fp32", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and [s["state"] for s in result["stages"]] == ["done", "done"]
    stage1, stage2 = ws / "runs" / "legal-1-pretrain", ws / "runs" / "legal-2-sft"
    c1, c2 = load_run_config(stage1), load_run_config(stage2)
    assert (c1.data.kind, c1.lora.r, c1.base) == ("text", 32, "tiny")
    assert (c2.data.kind, c2.lora.r) == ("sft", 8)
    assert c2.base == str((stage1 / "merged").resolve())  # stage 2 starts from stage 1's merged model
    assert result["stages"][0]["merge_max_abs_diff"] < 1e-4
    link = json.loads((stage2 / "pipeline.json").read_text())
    assert link["previous"] == "legal-1-pretrain" and link["base_from"] == c2.base and link["stage"] == 2
    assert link["replay"]["replay_rows"] == 3  # 25% of the 12 SFT rows
    assert json.loads((stage1 / "pipeline.json").read_text())["next"] == "legal-2-sft"
    # The final run is an ordinary run: chat with it on top of the merged stage-1 model.
    assert describe_run(stage2).base_path == c2.base
    session = load_session(stage2)
    assert session.generate([{"role": "user", "content": "What is ice?"}], adapter="legal-2-sft",
                            max_new_tokens=4, temperature=0).completion_tokens >= 1


def test_pipeline_file_errors_name_the_stage(tmp_path):
    from training.errors import ConfigError
    from training.pipeline import load_pipeline

    pfile = tmp_path / "p.yaml"
    pfile.write_text("name: p\nstages:\n  - name: a\n    split: x.jsonl\n  - name: b\n    split: y.jsonl\n    set: {lora.rank: 4}\n")
    with pytest.raises(ConfigError, match=r"(?s)p.yaml:5: stage 'b'.*lora.rank: unknown key"):
        load_pipeline(pfile)
    pfile.write_text("name: p\nstages:\n  - name: a\n    splt: x.jsonl\n")
    with pytest.raises(ConfigError, match=r"p.yaml:3: stages\[0\]: unknown key 'splt'"):
        load_pipeline(pfile)
