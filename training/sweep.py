"""Hyperparameter sweep: a grid of runs over rank, learning rate and epochs, ranked by eval loss.

The seed's advice: try r 8/16/32, learning rate 2e-4/1e-4/5e-5, and judge epochs by validation
loss. `plan_sweep` expands the grid into configs (lora.alpha follows 2*r, the seed's rule, so the
update's scale alpha/r stays the same across ranks); `run_sweep` creates one ordinary run directory
per point (named SWEEP-r16-lr2e-4-e3, so `studio runs`, chat, merge and serve work on each) and
trains them one after another; `rank` orders them by final eval loss, best first. The sweep
itself is recorded in RUNS_DIR/SWEEP.sweep.json (grid, runs, ranking).

A sweep needs validation rows: without them there is nothing to rank by, so it refuses up front.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .config import TrainConfig, with_changes
from .errors import TrainingError
from .rundir import RunStatus


@dataclass(frozen=True)
class SweepPoint:
    name: str  # the run id
    changes: dict[str, Any]  # dotted config keys this point sets


def _fmt(x: float) -> str:
    """2e-4 -> '2e-4', 3.0 -> '3', 0.5 -> '0.5': short and filesystem-safe."""
    if float(x).is_integer():
        return str(int(x))
    s = f"{x:.0e}" if abs(x) < 1e-2 else f"{x:g}"
    return s.replace("e-0", "e-").replace("e+0", "e")


def plan_sweep(sweep: str, *, r: list[int] | None = None, lr: list[float] | None = None,
               epochs: list[float] | None = None, extra: dict[str, list[Any]] | None = None) -> list[SweepPoint]:
    """The grid's points in a stable order (r, then lr, then epochs); axes left out keep the config's value."""
    axes: list[tuple[str, list[Any]]] = []
    if r:
        axes.append(("lora.r", r))
    if lr:
        axes.append(("train.learning_rate", lr))
    if epochs:
        axes.append(("train.epochs", epochs))
    for key, values in (extra or {}).items():
        axes.append((key, values))
    if not axes:
        raise TrainingError("a sweep needs at least one axis: --r 8,16,32, --lr 2e-4,1e-4 or --epochs 1,2,3")
    for key, values in axes:
        if len(set(values)) != len(values):
            raise TrainingError(f"sweep axis {key}: {values} repeats a value")
    short = {"lora.r": "r", "train.learning_rate": "lr", "train.epochs": "e"}
    points = []
    for combo in itertools.product(*(values for _, values in axes)):
        changes = dict(zip((k for k, _ in axes), combo))
        if "lora.r" in changes:
            changes["lora.alpha"] = 2 * int(changes["lora.r"])
        label = "-".join(f"{short.get(k, k.split('.')[-1])}{_fmt(v) if isinstance(v, (int, float)) else v}"
                         for k, v in zip((k for k, _ in axes), combo))
        points.append(SweepPoint(name=f"{sweep}-{label}", changes=changes))
    return points


def check_has_validation(cfg: TrainConfig) -> int:
    """Validation rows of the config's split; raises when there are none (nothing to rank by)."""
    from .data import load_split

    split = load_split(cfg.data.split, val_fraction=cfg.data.val_fraction_if_missing, seed=cfg.train.seed)
    if not split.val:
        raise TrainingError(f"{cfg.data.split}: no validation rows, so a sweep has nothing to rank by; export the "
                            f"split with --val 0.1, or --set data.val_fraction_if_missing=0.1 for a single file")
    return len(split.val)


def run_sweep(runs_dir: str | Path, cfg: TrainConfig, points: list[SweepPoint], *, sweep: str,
              reproduce: str | None = None, execute: Callable[[Path], RunStatus] | None = None,
              on_run: Callable[[SweepPoint, Path, RunStatus], None] | None = None,
              replay: tuple[str | Path, float] | None = None) -> list[dict[str, Any]]:
    """Create and train each point's run in turn (a failed run does not stop the sweep); returns `rank(...)`.
    `replay` = (general-data file, fraction) mixes the same replay rows into every run (training/replay.py)."""
    from . import runs
    from .replay import apply_replay

    run_one: Callable[[Path], RunStatus] = execute or runs.run_foreground
    check_has_validation(cfg)
    runs_dir = Path(runs_dir)
    taken = [p.name for p in points if (runs_dir / p.name).exists()]
    if taken:
        raise TrainingError(f"sweep {sweep!r}: run {taken[0]} already exists in {runs_dir}; pick another --name")
    configs = [with_changes(cfg, p.changes) for p in points]  # validate every point before training any
    run_dirs = []
    for point, point_cfg in zip(points, configs):
        sets = " ".join(f"--set {k}={v}" for k, v in point.changes.items())
        line = f"{reproduce} {sets}".strip() if reproduce else None
        run_dir = runs.create_run(runs_dir, point_cfg, name=point.name, reproduce=line)
        run_dirs.append(run_dir)
        if replay:
            apply_replay(run_dir, replay[0], replay[1])
        _record(runs_dir, sweep, points, run_dirs)
        status = run_one(run_dir)
        if on_run:
            on_run(point, run_dir, status)
    ranking = rank(run_dirs, points)
    _record(runs_dir, sweep, points, run_dirs, ranking)
    return ranking


def rank(run_dirs: list[Path], points: list[SweepPoint] | None = None) -> list[dict[str, Any]]:
    """Rows (run, changes, state, eval_loss, best_eval_loss, loss, best) ordered by final eval loss;
    runs without one (failed, cancelled) come last. `best` marks the first."""
    from .metrics import metric_points, read_metrics
    from .rundir import RunState
    from .runs import run_info

    changes = {p.name: p.changes for p in points or []}
    rows = []
    for run_dir in run_dirs:
        info = run_info(run_dir)
        evals = [p["eval_loss"] for p in metric_points(read_metrics(run_dir)[0]) if "eval_loss" in p]
        rows.append({"run": info.id, "path": str(info.path), "changes": changes.get(info.id, {}),
                     "state": str(info.state), "eval_loss": info.eval_loss if info.state == RunState.DONE else None,
                     "best_eval_loss": min(evals) if evals else None, "loss": info.loss, "step": info.step,
                     "best": False})
    rows.sort(key=lambda r: (r["eval_loss"] is None, r["eval_loss"] if r["eval_loss"] is not None else 0.0))
    if rows and rows[0]["eval_loss"] is not None:
        rows[0]["best"] = True
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The ranking as a fixed-width table, best first, marked with *."""
    keys = sorted({k for r in rows for k in r["changes"] if k != "lora.alpha"},
                  key=lambda k: ["lora.r", "train.learning_rate", "train.epochs"].index(k)
                  if k in ("lora.r", "train.learning_rate", "train.epochs") else 9)
    head = {"lora.r": "r", "train.learning_rate": "lr", "train.epochs": "epochs"}
    cols = ["#", "run"] + [head.get(k, k) for k in keys] + ["eval_loss", "min_eval", "train_loss", "state"]
    table = []
    for i, r in enumerate(rows, 1):
        def num(v: Any, fmt: str = ".4f") -> str:
            return f"{v:{fmt}}" if isinstance(v, (int, float)) else "-"

        table.append([f"{i}{'*' if r['best'] else ''}", r["run"]]
                     + [str(_fmt(r["changes"][k]) if isinstance(r["changes"].get(k), (int, float)) else r["changes"].get(k, "-"))
                        for k in keys]
                     + [num(r["eval_loss"]), num(r["best_eval_loss"]), num(r["loss"]), r["state"]])
    widths = [max(len(str(c)) for c in col) for col in zip(cols, *table)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(cols, widths)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    if rows and rows[0]["best"]:
        lines.append(f"* best by final eval loss: {rows[0]['run']}")
    return "\n".join(lines)


def _record(runs_dir: Path, sweep: str, points: list[SweepPoint], run_dirs: list[Path],
            ranking: list[dict[str, Any]] | None = None) -> None:
    data = {"sweep": sweep, "points": [{"run": p.name, "changes": p.changes} for p in points],
            "started": [d.name for d in run_dirs], "ranking": ranking}
    path = runs_dir / f"{sweep}.sweep.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
