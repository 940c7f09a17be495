"""The Train and Playground screens through the real app (Pilot): a real tiny CPU training launched
from the form, whose curve the chart follows point by point from metrics.jsonl; the plan's EOS
check; a run started before the studio opened; base and adapter answers side by side."""
from __future__ import annotations

import asyncio
import json
import shutil
import time

import pytest
from textual.widgets import Input, Select

from curation.safe_text import visible
from studio.app import StudioApp
from studio.widgets.loss_chart import LossChart
from tests.sshd import sshd  # noqa: F401  (fixture)
from tests.test_app_review import plain
from tests.test_remote import host_env  # noqa: F401  (fixture)
from tests.training_fixtures import tiny_config, write_split

TRAIN_TIMEOUT_S = 240


async def settle(pilot, rounds: int = 10) -> None:
    """Wait for the screen's one-shot workers (the follow/list timers start new ones every second,
    so this waits a bounded number of rounds rather than for silence)."""
    for _ in range(rounds):
        await pilot.pause()
        busy = [w for w in pilot.app.workers if not w.is_finished and w.group not in ("tr-stream", "pg-generate")]
        if not busy:
            break
        await asyncio.wait_for(pilot.app.workers.wait_for_complete(busy), 60)
    await pilot.pause()


async def until(pilot, predicate, timeout: float = TRAIN_TIMEOUT_S, every: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate.__doc__ or predicate}")
        await pilot.pause(every)


def points_of(run_dir):
    from training.metrics import metric_points, read_metrics

    return metric_points(read_metrics(run_dir)[0])


def state_of(run_dir) -> str:
    from training.runs import effective_status

    return effective_status(run_dir).state


async def confirm_launch(pilot) -> None:
    """Ctrl+S plans the launch, then Launch (y) in the confirmation it opens."""
    await pilot.press("ctrl+s")
    await until(pilot, lambda: type(pilot.app.screen).__name__ == "LaunchConfirmScreen", timeout=120, every=0.1)
    await pilot.press("y")
    await pilot.pause()


def run_row(screen, run_id: str) -> dict[str, str]:
    """The runs table's row of `run_id` as plain text by column key (run, state, step, loss, eval, ...)."""
    table = screen.query_one("#tr-runs")
    cells = table.get_row(run_id)
    return {str(key.value): (c.plain if hasattr(c, "plain") else str(c)) for key, c in zip(table.columns, cells)}


async def pick(pilot, selector: str, value: str) -> None:
    pilot.app.screen.query_one(selector, Select).value = value
    await pilot.pause()


async def test_launch_from_the_form_and_watch_the_curve_grow(train_ws):
    app = StudioApp(train_ws, screen="train")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert screen.query_one("#tr-split", Select).value == "v1"
        assert app.focused is screen.query_one("#tr-preset")  # no runs yet: the form has the keys
        assert screen.query_one("#tr-gpus", Input).value == "1"
        assert screen.query_one("#tr-r", Input).value == "16"  # the seed's recipe until a preset is picked
        await pick(pilot, "#tr-preset", "tiny-demo")
        assert screen.query_one("#tr-r", Input).value == "8" and screen.query_one("#tr-base", Input).value == "tiny"
        screen.query_one("#tr-sets", Input).value = ("train.max_steps=12 train.eval_steps=4 "
                                                     "train.gradient_checkpointing=false debug.step_sleep_s=0.3")
        await confirm_launch(pilot)
        await until(pilot, lambda: screen.selected is not None)
        run_dir = train_ws / "runs" / screen.selected
        chart = screen.query_one("#tr-chart", LossChart)
        seen: list[int] = []

        def finished() -> bool:
            if not seen or seen[-1] != len(chart.points):
                seen.append(len(chart.points))
            return state_of(run_dir) in ("done", "failed", "cancelled") and chart.points == points_of(run_dir) \
                and bool(chart.points)

        await until(pilot, finished)
        assert state_of(run_dir) == "done", (run_dir / "train.log").read_text()[-2000:]
        # the chart grew while the run trained, and holds exactly the file's points
        assert len([n for n in seen if 0 < n < len(chart.points)]) >= 2, seen
        assert chart.points == points_of(run_dir)
        steps, losses = chart.series("loss")
        assert steps[-1] == 12 and len(losses) == 12
        assert chart.series("eval_loss")[0] == [4, 8, 12]
        assert len(chart.series("learning_rate")[0]) == 12
        await pilot.pause(2.5)  # the runs list refreshes every 2 s
        row = run_row(screen, run_dir.name)
        assert row["state"].endswith("done") and row["step"] == "12/12"
        # what the run used on this machine, from its start line: sdpa on a CPU, no recomputation
        assert str(screen.query_one("#tr-view").border_subtitle) == "lora · fp32 · sdpa · no recomputation"
    # the run reproduces from the CLI: config.yaml says how it was made
    first_line = (run_dir / "config.yaml").read_text().splitlines()[0]
    assert first_line.startswith("# reproduce: studio -w") and " train v1 --config " in first_line


async def test_plan_shows_the_eos_check_and_steps(train_ws):
    app = StudioApp(train_ws, screen="train")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pick(pilot, "#tr-preset", "tiny-demo")
        app.screen.query_one("#tr-runs").focus()
        await pilot.press("p")
        await settle(pilot)
        text = plain(app.screen.query_one("#tr-plan-text").content)
        assert "EOS check: all 12 assistant turns end with" in text
        assert "UNTRAINED tiny model" in text and "steps:" in text and "seed article's table" in text


async def test_choosing_a_preset_fills_the_form_and_says_what_it_is_for(train_ws):
    app = StudioApp(train_ws, screen="train")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        form = app.screen.query_one("#tr-form")
        assert "article" in str(form.border_subtitle)  # seed, the default
        await pick(pilot, "#tr-preset", "fast")
        assert "24 GB" in str(form.border_subtitle)
        def batch():
            return app.screen.query_one("#tr-micro", Input).value, app.screen.query_one("#tr-accum", Input).value

        assert batch() == ("2", "4")  # fast keeps the seed's micro-batch (its layers run as CUDA graphs)
        await pick(pilot, "#tr-preset", "lean")
        assert "QLoRA" in str(form.border_subtitle)
        assert app.screen.query_one("#tr-method", Select).value == "qlora" and batch() == ("4", "2")
        await pick(pilot, "#tr-preset", "fast")
        assert batch() == ("2", "4") and app.screen.query_one("#tr-method", Select).value == "lora"


async def test_bad_field_is_named_and_nothing_starts(train_ws):
    app = StudioApp(train_ws, screen="train")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.screen.query_one("#tr-sets", Input).value = "lora.r=zero"
        await pilot.press("ctrl+s")
        await settle(pilot)
        message = plain(app.screen.query_one("#tr-message").content)
        assert "lora.r" in message
    assert not (train_ws / "runs").exists() or not any((train_ws / "runs").iterdir())


async def test_a_run_started_before_the_studio_opened_shows_its_curve(train_ws):
    from training import runs

    cfg = tiny_config(train_ws / "splits" / "v1", **{"train.max_steps": 10, "debug.step_sleep_s": 0.3})
    run_dir = runs.create_run(train_ws / "runs", cfg, name="before-studio")
    runs.launch(run_dir)
    try:
        app = StudioApp(train_ws, screen="train")
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            screen = app.screen
            assert screen.selected == "before-studio"
            chart = screen.query_one("#tr-chart", LossChart)

            def followed() -> bool:
                return state_of(run_dir) == "done" and bool(chart.points) and chart.points == points_of(run_dir)

            await until(pilot, followed)
            assert len(chart.series("loss")[0]) == 10
    finally:
        runs.cancel(run_dir, wait_s=5)


async def test_cancel_needs_a_confirmation(train_ws):
    """Cancelling asks first; n keeps the run going, y stops it."""
    from training import runs

    cfg = tiny_config(train_ws / "splits" / "v1", **{"train.max_steps": 400, "debug.step_sleep_s": 0.5})
    run_dir = runs.create_run(train_ws / "runs", cfg, name="to-cancel")
    runs.launch(run_dir)
    try:
        app = StudioApp(train_ws, screen="train")
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            screen = app.screen
            # under load the runs list may fill after the first settle: wait for the run to be selected
            await until(pilot, lambda: screen.selected == "to-cancel", timeout=60, every=0.1)
            screen.query_one("#tr-runs").focus()

            def asking() -> bool:
                return type(app.screen).__name__ == "ConfirmScreen"

            await pilot.press("c")
            await until(pilot, asking, timeout=30, every=0.1)  # it asks first
            await pilot.press("n")
            await until(pilot, lambda: app.screen is screen, timeout=30, every=0.1)
            assert state_of(run_dir) in ("queued", "running")
            screen.query_one("#tr-runs").focus()
            await pilot.press("c")
            await until(pilot, asking, timeout=30, every=0.1)
            await pilot.press("y")
            await until(pilot, lambda: state_of(run_dir) == "cancelled", timeout=60)
    finally:
        runs.cancel(run_dir, wait_s=5)


@pytest.mark.ssh
async def test_launch_on_a_remote_host_and_follow_the_mirror(train_ws, sshd, host_env):  # noqa: F811
    """Host = a real sshd on 127.0.0.1: the run is uploaded and started there; the screen mirrors
    its metrics into the local run directory and the chart follows the mirror to the end."""
    app = StudioApp(train_ws, screen="train")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        await pick(pilot, "#tr-preset", "tiny-demo")
        screen.query_one("#tr-sets", Input).value = "train.max_steps=6 train.eval_steps=3 train.save_steps=1000"
        screen.query_one("#tr-host", Input).value = sshd.target
        await confirm_launch(pilot)
        await until(pilot, lambda: any((train_ws / "runs").glob("*/remote.json")), timeout=120)
        run_id = next((train_ws / "runs").glob("*/remote.json")).parent.name
        await pilot.pause()
        assert screen.selected == run_id
        local, remote = train_ws / "runs" / run_id, host_env / "runs" / run_id
        chart = screen.query_one("#tr-chart", LossChart)

        def mirrored() -> bool:
            return (state_of(local) == "done" and bool(chart.points) and chart.points == points_of(local)
                    and (local / "metrics.jsonl").read_bytes() == (remote / "metrics.jsonl").read_bytes())

        await until(pilot, mirrored)
        assert [p["step"] for p in chart.points if "loss" in p] == [1, 2, 3, 4, 5, 6]
        await pilot.pause(2.5)
        assert run_row(screen, run_id)["where"] == sshd.target


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished tiny run trained for real (foreground, a few steps)."""
    from training import runs

    root = tmp_path_factory.mktemp("trained")
    split = write_split(root / "split")
    run_dir = runs.create_run(root / "runs", tiny_config(split, **{"train.max_steps": 4}), name="tiny-done")
    st = runs.execute(run_dir)
    assert st.state == "done"
    return run_dir


async def test_playground_answers_side_by_side(train_ws, trained_run):
    shutil.copytree(trained_run, train_ws / "runs" / trained_run.name)
    app = StudioApp(train_ws, screen="playground")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.session is not None or "red" in str(screen.query_one("#pg-title").content.style),
                    timeout=60)
        title = plain(screen.query_one("#pg-title").content)
        assert "tiny-done" in title and "UNTRAINED" in title
        box = screen.query_one("#pg-prompt", Input)
        box.focus()
        box.value = "What colour is the sky?"
        await pilot.press("enter")
        await until(pilot, lambda: not any(w.group == "pg-generate" and not w.is_finished for w in app.workers),
                    timeout=60)
        await pilot.pause()
        base, adapter = screen.answer("base"), screen.answer("adapter")
        assert base and adapter
        assert base != adapter  # the adapter moves the answer
        for side, text in (("base", base), ("adapter", adapter)):
            shown = screen.query_one(f"#pg-{side}").content.plain
            assert shown == visible(text)  # random tokens include control bytes: shown escaped
            assert not any(ord(ch) < 32 and ch not in "\n\t" for ch in shown)
        assert "UNTRAINED" in str(screen.query_one("#pg-base-pane").border_title)


def finished_demo_run(ws) -> None:
    """A finished run with fixed metrics (no training: the snapshot must not depend on floats)."""
    from training import runs

    run_dir = runs.create_run(ws / "runs", tiny_config(ws / "splits" / "v1", **{"train.max_steps": 30}),
                              name="demo-run")
    lines = [{"event": "start", "base": "tiny", "untrained": True}]
    for step in range(1, 31):
        lines.append({"step": step, "epoch": step / 15, "loss": 6.0 * 0.93 ** step + 0.5,
                      "learning_rate": 3e-3 * (1 - step / 30), "time": 1000.0 + step})
        if step % 10 == 0:
            lines.append({"step": step, "epoch": step / 15, "eval_loss": 6.2 * 0.94 ** step + 0.6, "time": 1000.0 + step})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    runs.write_status(run_dir, state="done", step=30, max_steps=30, host="fixed-host", started_at="2026-01-01T00:00:00+00:00")


async def test_a_diverged_run_says_so_on_its_curve(train_ws):
    """With train.defer_metrics the Trainer no longer hides a NaN loss behind the running mean: the
    metrics line holds NaN and the chart names the step instead of failing to draw."""
    from training import runs

    run_dir = runs.create_run(train_ws / "runs", tiny_config(train_ws / "splits" / "v1", **{"train.max_steps": 4}),
                              name="diverged")
    lines = [{"event": "start", "base": "tiny", "untrained": True}]
    lines += [{"step": s, "epoch": s / 4, "loss": v, "time": 1000.0 + s}
              for s, v in ((1, 5.0), (2, 4.0), (3, float("nan")), (4, float("inf")))]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    runs.write_status(run_dir, state="done", step=4, max_steps=4)
    app = StudioApp(train_ws, screen="train")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        chart = app.screen.query_one("#tr-chart", LossChart)
        await until(pilot, lambda: len(chart.points) == 4, timeout=20)
        assert chart.first_non_finite() == 3
        assert chart.series("loss") == ([1, 2], [5.0, 4.0])
        assert "not finite at step 3" in chart.plt.build()


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (120, 40)], ids=["80x24", "100x30", "120x40"])
def test_train_screen_snapshot(snap_compare, train_ws, size):
    finished_demo_run(train_ws)

    async def ready(pilot):
        await settle(pilot)
        await until(pilot, lambda: len(pilot.app.screen.query_one("#tr-chart", LossChart).points) == 33, timeout=20)
        await pilot.pause()
        assert pilot.app.focused.id == "tr-runs"  # a run to watch: the runs table has the keys

    assert snap_compare(StudioApp(train_ws, screen="train"), terminal_size=size, run_before=ready)


def test_the_form_rows_are_config_fields_with_their_labels_and_checks(tmp_path):
    """The Train form's knobs are config keys: label, input type and validation come from the
    field in training/config.py (training.config_fields), not from a second list."""
    from studio.screens.train import KNOB_KEYS, knobs, run_request
    from training.config import TrainConfig
    from training.errors import ConfigError

    rows = knobs()
    assert [f.path for _, f in rows] == [key for _, key in KNOB_KEYS]
    sections = TrainConfig.model_fields
    for _, field in rows:
        section, name = field.path.split(".")
        declared = sections[section].annotation.model_fields[name]
        assert field.label == declared.title
        assert field.kind == {int: "integer", float: "number"}[declared.annotation]
    form = {"split": "v1", "micro": "0"}
    with pytest.raises(ConfigError, match=r"micro-batch \(train.micro_batch_size\): '0' should be greater than 0"):
        run_request(tmp_path, form)
    with pytest.raises(ConfigError, match=r"lr \(train.learning_rate\): 'fast' is not a number"):
        run_request(tmp_path, {"split": "v1", "lr": "fast"})
