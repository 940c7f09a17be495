"""Runs (issue 18): RUN/report.html when a run ends and with `studio report RUN`, and the config's
`report:` trackers (tensorboard, trackio, wandb).

The page is checked by parsing it with the standard library's html.parser: the SVG polylines of the
loss, eval-loss and learning-rate curves (one point a logged step, in step order, on shared axes),
the section headings, every string escaped, nothing fetched from anywhere. A headless Chromium,
when this machine has one, also loads the file with the network off and must find the same curves
in its DOM; without one (CI has none) the parsing is the check.
"""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.training_fixtures import write_split
from training import runs
from training.metrics import metric_points, read_metrics

SVG_NS = "http://www.w3.org/2000/svg"
HOSTILE = "<script>alert('x')</script> & <b>bold</b>"  # in the manifest's settings: must come out escaped
TINY = ["--preset", "tiny-demo", "--set", "train.max_steps=6", "--set", "train.eval_steps=2",
        "--set", "train.logging_steps=1", "--set", "train.save_steps=6", "--set", "data.max_length=64"]


class Page(HTMLParser):
    """What the tests read from report.html: headings, polylines, scripts, and every attribute."""

    def __init__(self, text: str):
        super().__init__()
        self.headings: list[str] = []
        self.polylines: dict[str, list[tuple[float, float]]] = {}
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self.text: list[str] = []
        self._heading: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(k, v or "") for k, v in attrs]
        a = dict(attrs)
        if tag in ("h2", "h3"):
            self._heading = []
        if tag == "polyline":
            pts = [tuple(float(c) for c in p.split(",")) for p in (a.get("points") or "").split()]
            self.polylines[a["data-series"]] = pts

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag):
        if tag in ("h2", "h3") and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data):
        self.text.append(data)
        if self._heading is not None:
            self._heading.append(data)


def _steps(run_dir: Path, key: str) -> list[int]:
    return [p["step"] for p in metric_points(read_metrics(run_dir)[0]) if key in p]


def _cli(capsys, *argv):
    from studio.cli import main

    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny run trained for real with `studio train --foreground`: 6 steps, eval every 2. The
    split's manifest carries HTML in its settings, which the page must escape."""
    from studio.cli import main

    ws = tmp_path_factory.mktemp("report") / "ws"
    split = write_split(ws / "splits" / "v1", n_train=12, n_val=4)
    manifest = json.loads((split / "manifest.json").read_text(encoding="utf-8"))
    manifest["settings"]["note"] = HOSTILE
    (split / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, sort_keys=True), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        assert main(["-w", str(ws), "train", "v1", *TINY, "--foreground", "--name", "r"]) == 0
    return ws, ws / "runs" / "r"


def test_a_foreground_run_ends_with_a_report_that_parses_and_views_offline(finished):
    _ws, run = finished
    path = run / "report.html"
    assert path.is_file()  # was: no report at all
    text = path.read_text(encoding="utf-8")
    page = Page(text)

    # the curves: one polyline point a logged step, in step order, on the same axes
    loss_steps, eval_steps, lr_steps = _steps(run, "loss"), _steps(run, "eval_loss"), _steps(run, "learning_rate")
    assert loss_steps == lr_steps == [1, 2, 3, 4, 5, 6] and eval_steps == [2, 4, 6]
    assert set(page.polylines) == {"loss", "eval_loss", "learning_rate"}
    loss, evals, lr = page.polylines["loss"], page.polylines["eval_loss"], page.polylines["learning_rate"]
    assert (len(loss), len(evals), len(lr)) == (len(loss_steps), len(eval_steps), len(lr_steps))
    for pts in (loss, evals, lr):
        xs = [x for x, _ in pts]
        assert xs == sorted(xs) and len(set(xs)) == len(xs), pts  # strictly increasing in x
    gaps = [b[0] - a[0] for a, b in zip(loss, loss[1:])]
    assert max(gaps) - min(gaps) < 0.05  # steps 1..6 evenly spaced
    by_step = dict(zip(loss_steps, (x for x, _ in loss)))
    assert [round(x, 1) for x, _ in evals] == [round(by_step[s], 1) for s in eval_steps]  # shared x axis
    values = {p["step"]: p["loss"] for p in metric_points(read_metrics(run)[0]) if "loss" in p}
    order = sorted(loss_steps, key=lambda s: values[s])
    assert [round(loss[loss_steps.index(s)][1], 1) for s in order] == sorted(round(y, 1) for _, y in loss)[::-1]
    assert page.tags.count("svg") == 2 and "text" in page.tags  # two charts, with tick labels

    # the sections
    headings = [h.lower() for h in page.headings]
    for word in ("summary", "curves", "memory", "eval", "manifest", "config"):
        assert any(word in h for h in headings), (word, page.headings)
    body = " ".join(page.text)
    assert "# reproduce: studio" in body and "train v1 --config" in body  # config.yaml, as saved
    assert "source file" in body and "fixture.json" in body and "Curation settings" in body
    assert "approved" in body and "messages" in body  # the split's include setting and format
    assert "No eval yet" in body
    import torch

    if not torch.cuda.is_available():
        assert "not measured: the run trained on the CPU" in body
    assert "plan: peak" in body

    # escaped, self-contained, nothing fetched
    assert HOSTILE in body  # shown as text ...
    assert "<script" not in text.lower() and "<b>bold" not in text  # ... never as markup
    assert set(re.findall(r"https?://[^\s\"'<>)]+", text)) == {SVG_NS}
    assert not any(k in ("src", "href") for k, _ in page.attrs) and "link" not in page.tags
    assert "url(" not in text and "@import" not in text


def test_studio_report_rewrites_the_page_and_adds_eval_results(finished, capsys, monkeypatch):
    from training.evaluate import EvalResult, ModelSummary, eval_dir, write_results

    ws, run = finished
    before = (run / "report.html").read_text(encoding="utf-8")
    # an eval's results as training/evaluate.py writes them (what `studio eval` leaves in the run)
    result = EvalResult("eval-1", None, str(ws / "splits" / "v1"), "val", "contains",
                        [ModelSummary("base", "base", n=4, correct=1, mean_score=0.25, seconds=2.0),
                         ModelSummary("r", "adapter", n=4, correct=3, mean_score=0.75, seconds=2.0)],
                        [{"id": i, "messages": [{"role": "user", "content": "Say hello."}], "reference": "Hello!",
                          "source": {}, "answers": {}} for i in range(4)])
    write_results(result, eval_dir(run, "eval-1"))
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url, *a, **k: opened.append(url) or True)

    code, out, err = _cli(capsys, "-w", ws, "report", "r", "--open")
    assert code == 0, err  # was: argparse's "invalid choice: 'report'"
    assert out.strip() == f"r: report {run / 'report.html'}"
    assert opened == [(run / "report.html").resolve().as_uri()]
    text = (run / "report.html").read_text(encoding="utf-8")
    assert text != before
    page = Page(text)
    assert "eval-1" in page.headings
    body = " ".join(page.text)
    assert "No eval yet" not in body
    assert "4 items from" in body and "scorer contains" in body
    cells = [t.strip() for t in page.text if t.strip()]
    i = cells.index("adapter")
    assert cells[i - 1:i + 3] == ["r", "adapter", "3/4", "75.0%"]
    j = cells.index("base", cells.index("eval-1"))
    assert cells[j:j + 4] == ["base", "base", "1/4", "25.0%"]

    code, out, _ = _cli(capsys, "-w", ws, "report", "r", "--json")
    assert code == 0 and json.loads(out) == {"run": "r", "report": str(run / "report.html")}
    code, _, err = _cli(capsys, "-w", ws, "report", "nope")
    assert code != 0 and "no run 'nope'" in err


def test_the_page_loads_in_a_headless_browser_with_the_network_off(finished, tmp_path):
    """Skipped where no Chromium is installed (CI): the parsing above is the check there."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no headless Chromium here: the html.parser checks stand for it")
    _ws, run = finished
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--proxy-server=127.0.0.1:9",
                           f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (run / "report.html").as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = Page(proc.stdout)
    assert set(dom.polylines) == {"loss", "eval_loss", "learning_rate"}
    assert len(dom.polylines["loss"]) == len(_steps(run, "loss"))


def _missing(*names):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kw):
        return None if name.split(".")[0] in names else real(name, *args, **kw)
    return find_spec


def test_a_tracker_that_is_not_installed_is_refused_in_one_line_naming_pip(tmp_path, capsys, monkeypatch):
    ws = tmp_path / "ws"
    write_split(ws / "splits" / "v1", n_train=8, n_val=2)
    monkeypatch.setattr(importlib.util, "find_spec", _missing("tensorboard", "tensorboardX"))
    want = "report names tensorboard, which is not installed here: pip install tensorboard (or take it out of report)"

    code, out, _ = _cli(capsys, "-w", ws, "train", "v1", "--preset", "tiny-demo", "--plan", "--set", "report=[tensorboard]")
    assert code == 1 and f"PROBLEM: {want}" in out.splitlines()
    code, out, err = _cli(capsys, "-w", ws, "train", "v1", "--preset", "tiny-demo", "--foreground", "--name", "x",
                          "--set", "report=[tensorboard]")
    assert code == 2 and want in err and len(err.strip().splitlines()) == 1, err
    assert not (ws / "runs" / "x").exists()  # refused before the run existed

    # a run that gets past the launch checks (one started on an SSH host) fails with the same line
    from tests.training_fixtures import tiny_config

    run = runs.create_run(ws / "runs", tiny_config(ws / "splits" / "v1", report=["tensorboard"],
                                                   **{"train.max_steps": 2}), name="late")
    st = runs.execute(run)
    assert st.state == "failed" and st.error == want
    page = Page((run / "report.html").read_text(encoding="utf-8"))  # a failed run gets its page too
    assert want in " ".join(page.text)

    from training.config import load_config

    two = load_config(preset="tiny-demo", overrides=["report=tensorboard,wandb"])
    monkeypatch.setattr(importlib.util, "find_spec", _missing("tensorboard", "tensorboardX", "wandb"))
    from training.config import report_problem

    assert report_problem(two) == ("report names tensorboard and wandb, which are not installed here: pip install "
                                   "tensorboard wandb (or take them out of report)")


def test_an_unknown_tracker_is_refused_when_the_config_loads(tmp_path, capsys):
    from training.config import load_config
    from training.errors import ConfigError

    assert load_config(preset="tiny-demo").report == []  # off by default
    assert load_config(preset="tiny-demo", overrides=["report=TensorBoard"]).report == ["tensorboard"]
    assert load_config(preset="tiny-demo", overrides=["report=[wandb, trackio, wandb]"]).report == ["wandb", "trackio"]
    with pytest.raises(ConfigError) as exc:
        load_config(preset="tiny-demo", overrides=["report=[bogus]"])
    assert "report: unknown tracker 'bogus': use any of tensorboard, trackio, wandb" in str(exc.value)
    ws = tmp_path / "ws"
    write_split(ws / "splits" / "v1", n_train=4, n_val=0)
    code, _, err = _cli(capsys, "-w", ws, "train", "v1", "--preset", "tiny-demo", "--plan", "--set", "report=[tensorbord]")
    assert code == 2 and "unknown tracker 'tensorbord': use any of tensorboard," in err


def test_report_reaches_the_trainer_and_wandb_gets_no_key_from_the_studio(tmp_path, monkeypatch):
    from tests.training_fixtures import tiny_config
    from training.recipe import sft_args

    split = write_split(tmp_path / "v1", n_train=4, n_val=0)
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert sft_args(tiny_config(split), tmp_path / "run", "fp32", False).report_to == []
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: object() if name == "wandb" else real(name, *a, **k))
    # wandb's package is only looked for here (find_spec), never imported: the Trainer would import it
    args = sft_args(tiny_config(split, report=["wandb"]), tmp_path / "run", "fp32", False)
    assert args.report_to == ["wandb"] and args.run_name == "run"
    import os

    assert "WANDB_API_KEY" not in os.environ and "WANDB_MODE" not in os.environ


def test_tensorboard_event_files_are_written_into_the_run(tmp_path, monkeypatch):
    if not any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")):
        pytest.skip("neither tensorboard nor tensorboardX is installed (the test extra installs tensorboardX)")
    from tests.training_fixtures import tiny_config

    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)  # put back as it was after the run sets it
    split = write_split(tmp_path / "splits" / "v1", n_train=8, n_val=2)
    cfg = tiny_config(split, report=["tensorboard"], **{"train.max_steps": 3, "train.eval_steps": 3})
    run = runs.create_run(tmp_path / "runs", cfg, name="tb")
    assert runs.execute(run).state == "done"
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events), list(run.rglob("*tfevents*"))
    assert not (run / "checkpoints" / "runs").exists()  # transformers' default place is not used
    try:
        from tensorboardX.proto import event_pb2
    except ImportError:
        from tensorboard.compat.proto import event_pb2
    tags = set()
    for e in events:  # TFRecord: length (8 bytes), its CRC (4), the Event, its CRC (4)
        data = e.read_bytes()
        i = 0
        while i < len(data):
            n = int.from_bytes(data[i:i + 8], "little")
            ev = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            tags |= {v.tag for v in ev.summary.value}
            i += 12 + n + 4
    assert {"train/loss", "train/learning_rate", "eval/loss"} <= tags, tags


def test_a_cancelled_run_gets_its_page_and_a_failing_page_never_fails_the_run(tmp_path, monkeypatch, capsys):
    import training.recipe
    import training.report
    from tests.training_fixtures import tiny_config

    split = write_split(tmp_path / "splits" / "v1", n_train=8, n_val=2)

    class Cancelled(training.recipe.CancelFlag):  # as if SIGTERM came during the first step
        def __init__(self):
            self.requested = True

    with monkeypatch.context() as mp:
        mp.setattr(training.recipe, "CancelFlag", Cancelled)
        run = runs.create_run(tmp_path / "runs", tiny_config(split, **{"train.max_steps": 4}), name="c")
        assert runs.execute(run).state == "cancelled"
    body = " ".join(Page((run / "report.html").read_text(encoding="utf-8")).text)
    assert "cancelled" in body and "1 of 4" in body
    assert f"run c: report {run / 'report.html'}" in capsys.readouterr().out  # the one line in the log

    def broken(run_dir):
        raise ValueError("the page could not be drawn")

    monkeypatch.setattr(training.report, "render_report", broken)
    run = runs.create_run(tmp_path / "runs", tiny_config(split, **{"train.max_steps": 2}), name="d")
    st = runs.execute(run)
    assert st.state == "done" and runs.read_status(run).state == "done"
    assert not (run / "report.html").exists()
    err = capsys.readouterr().err
    assert "run d: report.html not written: ValueError: the page could not be drawn" in err
