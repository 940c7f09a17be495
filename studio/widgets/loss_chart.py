"""LossChart: train loss, eval loss and learning rate of one run, drawn with plotext.

The chart holds the metric points it was given (`points`, the `training.metrics.metric_points` of
the lines read so far) and redraws from them; the Train screen feeds it by offset from the run's
metrics.jsonl, so the chart's data is always a prefix of the file's. The learning rate goes on the
right-hand axis (its scale, 1e-4, would flatten the loss curves).
"""
from __future__ import annotations

import math
from typing import Any

from textual_plotext import PlotextPlot


class LossChart(PlotextPlot):
    DEFAULT_CSS = "LossChart { height: 1fr; min-height: 8; }"

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.run_id: str | None = None
        self.points: list[dict[str, Any]] = []
        self._draw()

    def reset(self, run_id: str | None) -> None:
        """Show another run (or none): the points start empty."""
        self.run_id = run_id
        self.points = []
        self._draw()

    def extend(self, points: list[dict[str, Any]]) -> None:
        if points:
            self.points.extend(points)
            self._draw()

    def series(self, key: str) -> tuple[list[float], list[float]]:
        """(steps, values) of one metric, only the points that carry a finite value."""
        xs, ys = [], []
        for p in self.points:
            v = p.get(key)
            if isinstance(v, (int, float)) and math.isfinite(v):
                xs.append(p["step"])
                ys.append(float(v))
        return xs, ys

    def first_non_finite(self, key: str = "loss") -> int | None:
        """The first step whose `key` is NaN or infinite (the trainer logs a diverged loss as it is)."""
        return next((p["step"] for p in self.points
                     if isinstance(p.get(key), float) and not math.isfinite(p[key])), None)

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.xlabel("step")
        if self.run_id is None:
            plt.title("select a run")
        elif not self.points:
            plt.title("no metrics yet")
        elif (bad := self.first_non_finite()) is not None:
            plt.title(f"loss not finite at step {bad}: lower the learning rate, or use bf16 over fp16")
        else:
            plt.title("loss · eval loss · lr (right)")
        for key, label, side, marker in (("loss", "train loss", "left", "braille"),
                                         ("eval_loss", "eval loss", "left", "dot"),
                                         ("learning_rate", "lr", "right", "braille")):
            xs, ys = self.series(key)
            if xs:
                plt.plot(xs, ys, label=label, yside=side, marker=marker)
        self.refresh()
