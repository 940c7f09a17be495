"""Real trl/peft training of the tiny model on CPU: loss, eval, resume, adapters, QLoRA, OOM, detach."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.training_fixtures import tiny_config, write_split
from training import runs
from training.metrics import metric_points, read_metrics


@pytest.fixture
def split(tmp_path):
    return write_split(tmp_path / "splits" / "v1", n_train=12, n_val=4)


def _points(run_dir):
    return metric_points(read_metrics(run_dir)[0])


def test_lora_run_loss_goes_down_with_eval_and_adapter(tmp_path, split):
    cfg = tiny_config(split, **{"train.max_steps": 30, "train.learning_rate": 1e-2})
    run = runs.create_run(tmp_path / "runs", cfg, name="r1")
    st = runs.execute(run)
    assert st.state == "done" and st.step == 30 and st.untrained is True
    recs = read_metrics(run)[0]
    assert recs[0]["event"] == "start" and recs[0]["untrained"] is True and "mfu_formula" in recs[0]
    losses = [p["loss"] for p in _points(run) if "loss" in p]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.1
    evals = [p for p in _points(run) if "eval_loss" in p]
    assert [e["step"] for e in evals] == [10, 20, 30]  # every eval_steps, the last one at the end
    assert all(p["tokens_seen"] > 0 for p in _points(run) if "loss" in p)
    assert (run / "adapter" / "adapter_config.json").is_file() and (run / "base" / "UNTRAINED.txt").is_file()
    assert st.last_checkpoint == "checkpoints/checkpoint-30"
    info = runs.list_runs(tmp_path / "runs")[0]
    assert (info.id, info.state, info.method, info.loss) == ("r1", "done", "lora", losses[-1])
    assert info.eval_loss == evals[-1]["eval_loss"]


def test_reloaded_adapter_gives_the_same_logits(tmp_path, split):
    import torch

    from training.recipe import load_for_inference

    run = runs.create_run(tmp_path / "runs", tiny_config(split, **{"train.max_steps": 6, "train.learning_rate": 2e-2,
                                                                     "lora.use_rslora": True}), name="r")
    assert runs.execute(run).state == "done"
    model, tok = load_for_inference(run)
    prompt = tok.apply_chat_template([{"role": "user", "content": "Say hello."}], tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        tuned = model(input_ids=ids).logits
        with model.disable_adapter():
            base_logits = model(input_ids=ids).logits
    again, _ = load_for_inference(run)
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids).logits, tuned)
    assert not torch.allclose(tuned, base_logits, atol=1e-4)  # the adapter changed something
    merged = again.merge_and_unload()
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, tuned, atol=1e-5, rtol=1e-4)


def test_resume_continues_at_the_checkpoint_without_gap_or_duplicate(tmp_path, split):
    cfg = tiny_config(split, **{"train.max_steps": 20, "train.save_steps": 10, "debug.fail_after_step": 15})
    run = runs.create_run(tmp_path / "runs", cfg, name="r")
    st = runs.execute(run)
    assert st.state == "failed" and "simulated crash after step 15" in st.error
    assert [p["step"] for p in _points(run) if "loss" in p] == list(range(1, 15))  # died before logging 15
    tokens_at_10 = next(p["tokens_seen"] for p in _points(run) if p["step"] == 10 and "loss" in p)
    # the crash hook is in the saved config: clear it as a user would fix the cause, then resume
    text = (run / "config.yaml").read_text().replace("fail_after_step: 15", "fail_after_step: null")
    (run / "config.yaml").write_text(text)
    st = runs.resume(run, foreground=True)
    assert st.state == "done" and st.step == 20 and st.resumed_from == 10 and st.metrics_generation == 1
    loss_steps = [p["step"] for p in _points(run) if "loss" in p]
    assert loss_steps == list(range(1, 21))
    after = [p for p in _points(run) if p["step"] == 11 and "loss" in p][0]
    assert after["tokens_seen"] > tokens_at_10
    assert [e["step"] for e in _points(run) if "eval_loss" in e] == [10, 20]
    with pytest.raises(runs.TrainingError, match="is done"):
        runs.resume(run)


def test_qlora_trains_on_cpu(tmp_path, split):
    cfg = tiny_config(split, **{"method": "qlora", "train.max_steps": 8, "train.learning_rate": 1e-2,
                                "lora.use_dora": False})
    run = runs.create_run(tmp_path / "runs", cfg, name="q")
    st = runs.execute(run)
    assert st.state == "done", st.error
    losses = [p["loss"] for p in _points(run) if "loss" in p]
    assert len(losses) == 8 and losses[-1] < losses[0]
    adapter_cfg = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["r"] == 8 and sorted(adapter_cfg["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]


def test_oom_remedies_in_the_seed_order():
    from training.config import load_config
    from training.oom import remedies

    cfg = load_config(overrides={"train.micro_batch_size": 4, "data.max_length": 2048,
                                 "train.gradient_checkpointing": False})
    assert [r.name for r in remedies(cfg)] == ["smaller batch", "shorter length", "gradient checkpointing", "qlora"]
    assert remedies(cfg)[0].changes == {"train.micro_batch_size": 2, "train.grad_accum": 8}
    done = load_config(overrides={"train.micro_batch_size": 1, "data.max_length": 256, "method": "qlora"})
    assert remedies(done) == []
    # a run recomputing only part of the layers: the checkpointing remedy takes it to all
    part = load_config(preset="fast", require_base=False, overrides={
        "train.cuda_graphs": False, "train.gradient_checkpointing": True, "train.checkpoint_fraction": 0.75})
    ck = [r for r in remedies(part) if r.name == "gradient checkpointing"]
    assert ck and ck[0].changes == {"train.checkpoint_fraction": 1.0}
    # the fast preset's CUDA graphs cannot recompute: the remedy turns them off, and the result is a valid config
    fast = load_config(preset="fast", require_base=False)
    ck = [r for r in remedies(fast) if r.name == "gradient checkpointing"]
    assert ck and ck[0].changes == {"train.gradient_checkpointing": True, "train.checkpoint_fraction": 1.0,
                                    "train.cuda_graphs": False}
    assert load_config(preset="fast", require_base=False, overrides=ck[0].changes).train.gradient_checkpointing


def test_injected_oom_fails_with_remedy_and_retries_with_the_next(tmp_path, split):
    # 2 x 128 tokens > 128: the simulated card is too small until the batch halves
    cfg = tiny_config(split, **{"train.max_steps": 3, "debug.simulated_gpu_tokens": 128, "oom_retry": True})
    run = runs.create_run(tmp_path / "runs", cfg, name="big")
    started = []
    st = runs.execute(run, relaunch=lambda child: started.append(runs.execute(child)))
    assert st.state == "failed" and "out of memory" in st.error
    # max_length 128 is already short: that remedy is skipped
    assert [r["name"] for r in st.remedy] == ["smaller batch", "gradient checkpointing", "qlora"]
    assert st.next_run == "big-oom1"
    child = tmp_path / "runs" / "big-oom1"
    assert started and started[0].state == "done"
    assert runs.read_status(child).applied_remedy["name"] == "smaller batch"
    from training.config import load_run_config

    assert load_run_config(child).train.micro_batch_size == 1 and load_run_config(child).train.grad_accum == 2
    assert "--set train.micro_batch_size=1" in (child / "config.yaml").read_text().splitlines()[0]


def test_detached_run_survives_its_parent_and_cancel_leaves_a_resumable_run(tmp_path, split):
    cfg = tiny_config(split, **{"train.max_steps": 4})
    run = runs.create_run(tmp_path / "runs", cfg, name="bg")
    slow = runs.create_run(tmp_path / "runs", tiny_config(split, **{"train.max_steps": 200, "train.save_steps": 1000,
                                                                     "debug.step_sleep_s": 0.2}), name="slow")
    code = ("import sys; from training.runs import launch; "
            "print(launch(sys.argv[1])); print(launch(sys.argv[2]))")
    parent = subprocess.run([sys.executable, "-c", code, str(run), str(slow)], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert parent.returncode == 0, parent.stderr  # the parent is gone now
    pid, slow_pid = (int(x) for x in parent.stdout.split())
    st = runs.wait(run, timeout_s=240)
    assert st.state == "done", (run / "train.log").read_text()[-2000:]
    assert st.pid == pid and (run / "adapter").is_dir()
    # cancel: SIGTERM, the run stops at a step end with a checkpoint
    import time

    deadline = time.monotonic() + 120
    while (runs.read_status(slow).step or 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    st = runs.cancel(slow, wait_s=60)
    assert st.state == "cancelled", (slow / "train.log").read_text()[-2000:]
    assert not runs.pid_alive(slow_pid)
    assert runs.read_status(slow).last_checkpoint.startswith("checkpoints/checkpoint-")


def test_a_foreground_run_writes_train_log_as_a_detached_one_does(tmp_path, split, capsys):
    """`studio train --foreground` left no train.log (only library warnings, when there were any);
    a detached run's log holds the run's own lines. Now both do, and the terminal still shows them."""
    cfg = tiny_config(split, **{"train.max_steps": 2, "train.eval_steps": 1000, "train.save_steps": 1000})
    fg = runs.create_run(tmp_path / "runs", cfg, name="fg")
    assert runs.run_foreground(fg).state == "done"
    shown = capsys.readouterr()
    log = (fg / runs.LOG_FILE).read_text(encoding="utf-8")
    assert "run fg: done at step 2" in log and "run fg: done at step 2" in shown.out + shown.err

    bg = runs.create_run(tmp_path / "runs", cfg, name="bg")
    runs.launch(bg)
    assert runs.wait(bg, timeout_s=300).state == "done"
    detached = (bg / runs.LOG_FILE).read_text(encoding="utf-8")
    own = [line.replace("bg", "RUN") for line in detached.splitlines() if line.startswith("run bg:")]
    assert own and own == [line.replace("fg", "RUN") for line in log.splitlines() if line.startswith("run fg:")]


def test_a_run_keeps_its_workspace_split_relative_so_the_workspace_can_move(tmp_path):
    """config.yaml stored the split absolute: after moving the workspace, eval and resume looked
    for it where it was."""
    import shutil

    import yaml

    from training.config import load_run_config

    ws = tmp_path / "ws"
    write_split(ws / "splits" / "v1", n_train=4, n_val=2)
    run = runs.create_run(ws / "runs", tiny_config(ws / "splits" / "v1"), name="r")
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["split"] == "../../splits/v1"
    moved = tmp_path / "elsewhere" / "ws"
    moved.parent.mkdir()
    shutil.move(str(ws), str(moved))
    assert load_run_config(moved / "runs" / "r").data.split == str((moved / "splits" / "v1").resolve())


def test_two_threads_of_one_process_write_status_without_tripping_each_other(tmp_path):
    """The Train screen's poll (marking a dead run failed) and its cancel wrote status.json through
    the same temporary name; one os.replace then failed with FileNotFoundError (seen in CI)."""
    import threading

    run = tmp_path / "r"
    run.mkdir()
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(tag: str) -> None:
        start.wait()
        try:
            for i in range(300):
                runs.write_status(run, **{tag: i})
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert not list(run.glob(".status.json.*"))


def test_a_cancel_during_the_child_s_imports_reads_cancelled_not_failed(tmp_path, split):
    """CI: a cancel sent while the detached process was still importing torch met Python's default
    SIGTERM, the process ended without a word, and the next reader wrote the run `failed`. Now the
    child handles SIGTERM from its first line, and a cancel records that it was sent."""
    cfg = tiny_config(split, **{"train.max_steps": 200, "debug.step_sleep_s": 0.2})
    first = runs.create_run(tmp_path / "runs", cfg, name="early")
    pid = runs.launch(first)
    runs.cancel(first, wait_s=0)  # at once: the child is starting up or importing
    st = runs.wait(first, timeout_s=120)
    assert st.state == "cancelled", (first / "train.log").read_text()[-2000:]
    assert not runs.pid_alive(pid) and "Traceback" not in (first / "train.log").read_text()

    # a process that died before any handler (here: SIGKILL after the cancel) still reads cancelled
    second = runs.create_run(tmp_path / "runs", cfg, name="killed")
    pid = runs.launch(second)
    runs.write_status(second, cancel_requested_at=runs.utc_now())
    import os
    import signal

    os.kill(pid, signal.SIGKILL)
    assert runs.wait(second, timeout_s=60).state == "cancelled"
    # a new launch of it clears the request: a later kill -9 is a failure again
    runs.launch(second)
    assert "cancel_requested_at" not in {k for k, v in runs.read_status(second).to_json().items() if v}
    runs.cancel(second, wait_s=60)
