"""`RUN_DIR/report.html`: one self-contained page about a run, to keep, mail or open offline.

Written when a run ends (done, failed or cancelled: `report_at_end`, called by training.runs.execute)
and on demand (`studio report RUN [--open]`). Everything comes from the run directory's files
(docs/contracts.md): status.json, metrics.jsonl, config.yaml, evals/*/summary.json and the split's
manifest.json, so a report can be rewritten at any time, also for a run copied from a GPU box.

The page holds:
- a summary: state, steps, base, method, final and best losses, speed, the error when it failed;
- the curves: training loss with eval loss on one chart, the learning rate on another, as inline
  SVG polylines with axes and ticks, drawn here (no script, no font, no network: the page also
  carries a Content-Security-Policy that forbids loading anything);
- the plan's peak-memory estimate (training.plan.memory_plan) against the measured peak
  (metrics.jsonl's gpu_mem_gb; a CPU run has none: "not measured");
- the eval results, once `studio eval` or `eval.at_end` has written one: accuracy per model;
- the split: its manifest's name, format, counts, files, source files and curation settings;
- the config, as config.yaml holds it (its first line is the command that reproduces the run).

Every string from those files is escaped (html.escape) before it enters the page.
"""
from __future__ import annotations

import errno
import json
import math
import os
import sys
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .rundir import RunStatus

if TYPE_CHECKING:
    from .config import TrainConfig

REPORT_FILE = "report.html"
MAX_POINTS = 2000  # a curve with more points is thinned to the lowest and highest of each bucket

COLOURS = {"loss": "#1f6fb4", "eval_loss": "#d2452a", "learning_rate": "#2a8c4a"}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:980px;padding:0 16px;color:#1d1f21}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin-bottom:4px}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#f6f7f8}td.n{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f6f7f8;padding:10px;overflow-x:auto;font-size:12.5px}
.muted{color:#666}.bad{color:#b3261e}.warn{background:#fff4d6;padding:6px 10px;border-left:3px solid #e0a800}
svg{display:block;margin:8px 0;max-width:100%;height:auto}
svg text{font:11px system-ui,sans-serif;fill:#444}svg .axis{stroke:#888}svg .grid{stroke:#eee}
"""


# ---------------------------------------------------------------- reading the run directory

def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _num(v: Any) -> float | None:
    """A finite number, or None (NaN and inf losses are left out of the curves)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def series(points: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    """(step, value) for the metric lines that have `key`, by step, each step once (the last line wins)."""
    by_step: dict[float, float] = {}
    for p in points:
        step, value = _num(p.get("step")), _num(p.get(key))
        if step is not None and value is not None:
            by_step[step] = value
    return sorted(by_step.items())


def thin(points: list[tuple[float, float]], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """At most about `limit` points, in step order: each bucket keeps its lowest and highest value,
    so a spike stays visible."""
    if len(points) <= limit:
        return points
    size = math.ceil(len(points) / (limit // 2))
    out: list[tuple[float, float]] = []
    for i in range(0, len(points), size):
        bucket = points[i:i + size]
        lo, hi = min(bucket, key=lambda p: p[1]), max(bucket, key=lambda p: p[1])
        out.extend(sorted({lo, hi}))
    return out


# ---------------------------------------------------------------- SVG charts

def nice_ticks(lo: float, hi: float, n: int = 5, *, integer: bool = False) -> list[float]:
    """About `n` round tick values covering [lo, hi] (1, 2, 2.5 or 5 times a power of ten apart;
    `integer`: whole numbers only, as steps are)."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, n)
    if integer:
        raw = max(raw, 1.0)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw and not (integer and (m * mag) % 1))
    start = math.floor(lo / step + 1e-9) * step  # 1e-9: 5.85 / 0.05 is 116.99999999999999
    ticks = []
    k = 0
    while True:
        t = start + k * step
        ticks.append(round(t, 12))
        if t >= hi - step * 1e-9:
            break
        k += 1
    return ticks


def tick_label(v: float, ticks: list[float]) -> str:
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(v) or 1.0
    biggest = max(abs(t) for t in ticks)
    if biggest and (biggest < 1e-3 or biggest >= 1e6):
        return f"{v:.1e}" if v else "0"
    decimals = max(0, -math.floor(math.log10(step)) + (1 if step / 10 ** math.floor(math.log10(step)) == 2.5 else 0))
    return f"{v:.{decimals}f}"


def svg_chart(title: str, curves: list[tuple[str, str, list[tuple[float, float]]]], *, y_label: str,
              width: int = 760, height: int = 280) -> str:
    """An SVG line chart: `curves` are (series key, legend label, [(step, value)]). Each curve is one
    <polyline data-series=KEY> (and a dot per point for sparse ones, such as eval loss)."""
    left, right, top, bottom = 70, 16, 30, 42
    pw, ph = width - left - right, height - top - bottom
    xs = [x for _, _, pts in curves for x, _ in pts]
    ys = [y for _, _, pts in curves for _, y in pts]
    xt = nice_ticks(min(xs), max(xs), 6, integer=True) if len(set(xs)) > 1 else nice_ticks(0, max(xs + [1]), 6, integer=True)
    lo, hi = min(ys), max(ys)
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    yt = nice_ticks(lo, hi, 5)
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + ph - (y - y0) / (y1 - y0) * ph

    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'),
           f"<title>{escape(title)}</title>"]
    for t in yt:
        y = py(t)
        out.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}"/>')
        out.append(f'<line class="axis" x1="{left - 4}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}"/>')
        out.append(f'<text x="{left - 7}" y="{y + 4:.1f}" text-anchor="end">{escape(tick_label(t, yt))}</text>')
    for t in xt:
        x = px(t)
        out.append(f'<line class="axis" x1="{x:.1f}" y1="{top + ph}" x2="{x:.1f}" y2="{top + ph + 4}"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 17}" text-anchor="middle">{escape(tick_label(t, xt))}</text>')
    out.append(f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}"/>')
    out.append(f'<line class="axis" x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}"/>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 6}" text-anchor="middle">step</text>')
    out.append(f'<text x="14" y="{top + ph / 2:.1f}" text-anchor="middle" '
               f'transform="rotate(-90 14 {top + ph / 2:.1f})">{escape(y_label)}</text>')
    legend_x = left + pw
    for key, label, pts in reversed(curves):
        colour = COLOURS.get(key, "#555")
        coords = " ".join(f"{px(x):.2f},{py(y):.2f}" for x, y in pts)
        out.append(f'<polyline class="series" data-series="{escape(key)}" fill="none" stroke="{colour}" '
                   f'stroke-width="1.6" stroke-linejoin="round" points="{coords}"/>')
        if len(pts) <= 60:  # sparse curves (eval loss every eval_steps) get a dot per point
            out.extend(f'<circle cx="{px(x):.2f}" cy="{py(y):.2f}" r="2.6" fill="{colour}"/>' for x, y in pts)
        width_est = 7 * len(label) + 26
        legend_x -= width_est
        out.append(f'<line x1="{legend_x:.0f}" y1="{top - 12}" x2="{legend_x + 16:.0f}" y2="{top - 12}" '
                   f'stroke="{colour}" stroke-width="3"/>')
        out.append(f'<text x="{legend_x + 20:.0f}" y="{top - 8}">{escape(label)}</text>')
    out.append(f'<text x="{left}" y="{top - 8}" font-weight="bold">{escape(title)}</text>')
    out.append("</svg>")
    return "\n".join(out)


# ---------------------------------------------------------------- HTML pieces

def _table(rows: Iterable[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(_text(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _grid(head: list[str], rows: list[list[Any]], numeric: frozenset[int] | set[int] = frozenset()) -> str:
    h = "".join(f"<th>{escape(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{escape(_text(v))}</td>'
                                    for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _text(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, sort_keys=True)
    return str(v)


def _p(text: str, cls: str = "") -> str:
    return f'<p{f" class={cls}" if cls else ""}>{escape(text)}</p>'


def _gb(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.2f} GB" if v >= 0.1 else f"{v * 1024:.2f} MB"


def _duration(start: str | None, end: str | None) -> str | None:
    try:
        s = datetime.fromisoformat(str(start))
        e = datetime.fromisoformat(str(end)) if end else datetime.now(timezone.utc)
    except (TypeError, ValueError):
        return None
    secs = max(0, int((e - s).total_seconds()))
    h, rem = divmod(secs, 3600)
    m, s2 = divmod(rem, 60)
    return f"{h} h {m} min" if h else f"{m} min {s2} s" if m else f"{s2} s"


# ---------------------------------------------------------------- sections

def _summary(run_dir: Path, status: RunStatus, start: dict[str, Any], points: list[dict[str, Any]],
             cfg: TrainConfig | None) -> str:
    from .metrics import run_summary

    loss, evals = series(points, "loss"), series(points, "eval_loss")
    best = min(evals, key=lambda p: p[1]) if evals else None
    tps = [v for _, v in series(points, "tokens_per_s")]
    seen = series(points, "tokens_seen")
    base = status.base or start.get("base") or (cfg.base if cfg else None)
    untrained = bool(status.untrained or start.get("untrained"))
    rows: list[tuple[str, Any]] = [
        ("state", str(status.state)),
        ("step", (f"{status.step if status.step is not None else '-'} of "
                  f"{status.max_steps if status.max_steps is not None else '?'}")),
        ("base", f"{base}" + (" (UNTRAINED built-in model: its answers mean nothing)" if untrained else "")),
        ("method", status.method or start.get("method") or (cfg.method if cfg else None)),
        ("precision, device", ", ".join(str(x) for x in (start.get("precision") or status.precision,
                                                         start.get("device") or status.device) if x) or None),
        ("trainable parameters", f"{start['trainable_params']:,} of {start.get('total_params', 0):,}"
         if isinstance(start.get("trainable_params"), int) else None),
        ("what it used", run_summary([start]) if start else None),
        ("host", status.host),
        ("started", status.started_at),
        ("finished", status.finished_at),
        ("took", _duration(status.started_at, status.finished_at) if status.started_at else None),
        ("final training loss", f"{loss[-1][1]:.4f} at step {loss[-1][0]:g}" if loss else None),
        ("final eval loss", f"{evals[-1][1]:.4f} at step {evals[-1][0]:g}" if evals else None),
        ("best eval loss", f"{best[1]:.4f} at step {best[0]:g}" if best else None),
        ("tokens seen", f"{int(seen[-1][1]):,}" if seen else None),
        ("mean tokens/s", f"{sum(tps) / len(tps):,.0f}" if tps else None),
    ]
    if status.resumed_from is not None:
        rows.append(("resumed from", f"step {status.resumed_from}" + (f" ({status.note})" if status.note else "")))
    if status.next_run:
        rows.append(("retried as", status.next_run))
    out = [_table((k, v) for k, v in rows if v is not None)]
    if status.error:
        out.append(f'<p class="bad">error: {escape(status.error)}</p>')
    for i, r in enumerate(status.remedy or [], 1):
        if isinstance(r, dict):
            sets = " ".join(f"--set {k}={v}" for k, v in (r.get("set") or {}).items())
            out.append(_p(f"remedy {i}: {r.get('name')}: {r.get('why')} ({sets})"))
    if status.eval_state == "failed" and status.eval_error:
        out.append(f'<p class="bad">eval at end failed: {escape(status.eval_error)}</p>')
    return "\n".join(out)


def _curves(points: list[dict[str, Any]]) -> str:
    loss, evals, lr = series(points, "loss"), series(points, "eval_loss"), series(points, "learning_rate")
    out = []
    if loss or evals:
        curves = [(k, label, thin(pts)) for k, label, pts in (("loss", "training loss", loss),
                                                              ("eval_loss", "eval loss", evals)) if pts]
        out.append(svg_chart("Loss", curves, y_label="loss"))
        note = [f"{len(loss)} logged training steps" if loss else "no training loss logged",
                f"{len(evals)} evals" if evals else "no eval loss (no validation rows, or none yet)"]
        if len(loss) > MAX_POINTS:
            note.append(f"the training curve is thinned to {len(thin(loss))} points (each bucket's lowest and highest)")
        out.append(_p("; ".join(note), "muted"))
    else:
        out.append(_p("No metrics logged yet (metrics.jsonl has no step lines).", "muted"))
    if lr:
        out.append(svg_chart("Learning rate", [("learning_rate", "learning rate", thin(lr))], y_label="learning rate"))
    bad = sum(1 for p in points if "loss" in p and _num(p.get("loss")) is None)
    if bad:
        out.append(f'<p class="warn">{bad} logged loss value(s) were NaN or infinite: left out of the curve</p>')
    return "\n".join(out)


def _memory(cfg: TrainConfig | None, status: RunStatus, start: dict[str, Any], points: list[dict[str, Any]]) -> str:
    out = []
    est = None
    if cfg is None:
        out.append(_p("No estimate: config.yaml could not be read.", "muted"))
    else:
        try:
            from .plan import memory_plan

            est = memory_plan(cfg)["memory_gb"][cfg.method]
        except Exception as exc:  # noqa: BLE001 - an unknown shape, an unreadable base: say so, keep the page
            out.append(_p(f"No estimate: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", "muted"))
    peak = [v for _, v in series(points, "gpu_mem_gb")]
    reserved = [v for _, v in series(points, "gpu_reserved_gb")]
    device = start.get("device") or status.device
    measured = max(peak) if peak else None
    if measured is None:
        why = ("not measured: the run trained on the CPU" if device == "cpu"
               else "not measured (no gpu_mem_gb in metrics.jsonl yet)")
    rows: list[tuple[str, Any]] = []
    if est:
        rows += [("plan: peak (what PyTorch allocates)", _gb(est.get("peak_gb"))),
                 ("plan: weights / optimizer / activations",
                  " / ".join(_gb(est.get(k)) for k in ("weights_gb", "optimizer_gb", "activations_gb"))),
                 ("plan: the card needs (peak + CUDA context + slack)", _gb(est.get("total_gb")))]
    rows.append(("measured: peak allocated (gpu_mem_gb)", _gb(measured) if measured is not None else why))
    if reserved:
        rows.append(("measured: peak reserved (gpu_reserved_gb)", _gb(max(reserved))))
    if est and measured is not None and est.get("peak_gb"):
        rows.append(("measured / plan", f"{measured / est['peak_gb']:.2f}x ({(measured / est['peak_gb'] - 1):+.1%})"))
    world = start.get("world_size")
    if isinstance(world, int) and world > 1:
        rows.append(("GPUs", f"{world} ({'FSDP' if start.get('fsdp') else 'DDP'}); both numbers are per GPU"))
    out.insert(0, _table(rows))
    return "\n".join(out)


def _evals(run_dir: Path) -> str:
    found = []
    for f in (run_dir / "evals").glob("*/summary.json"):
        data = _read_json(f)
        if isinstance(data, dict):
            try:
                found.append((f.stat().st_mtime, f.parent.name, data))
            except OSError:
                continue
    if not found:
        return _p("No eval yet. `studio eval` (or eval.at_end in the config) writes RUN/evals/ID/summary.json; "
                  "`studio report RUN` then adds it here.", "muted")
    out = []
    for _mtime, name, s in sorted(found, key=lambda t: t[0], reverse=True):
        out.append(f"<h3>{escape(str(s.get('eval_id') or name))}</h3>")
        out.append(_p(f"{s.get('items', '?')} items from {s.get('source', '?')} ({s.get('part', '?')}), scorer "
                      f"{s.get('scorer', '?')}" + (": CANCELLED, partial" if s.get("cancelled") else "")))
        rows = []
        for m in s.get("models") or []:
            if not isinstance(m, dict):
                continue
            acc = _num(m.get("accuracy"))
            score = _num(m.get("mean_score"))
            rows.append([m.get("name"), m.get("kind"), f"{m.get('correct', '?')}/{m.get('n', '?')}",
                         f"{acc:.1%}" if acc is not None else None, f"{score:.3f}" if score is not None else None,
                         _num(m.get("items_per_s"))])
        out.append(_grid(["model", "kind", "correct", "accuracy", "mean score", "items/s"], rows, {2, 3, 4, 5}))
    return "\n".join(out)


def _split(cfg: TrainConfig | None) -> str:
    where = getattr(getattr(cfg, "data", None), "split", "") if cfg is not None else ""
    if not where:
        return _p("No split named in the config.", "muted")
    path = Path(where)
    head = _p(f"split {where}")
    if path.is_file():
        return head + _p("a data file, without a manifest" + (f" ({path.stat().st_size:,} bytes)" if path.exists() else ""))
    manifest = path / "manifest.json"
    if not path.exists():
        return head + _p("not on this machine (the run may have been trained elsewhere)", "muted")
    data = _read_json(manifest)
    if not isinstance(data, dict):
        return head + _p("no readable manifest.json in it", "muted")
    out = [head, _table((k, data.get(k)) for k in ("name", "format", "target", "schema_version", "created_by",
                                                   "last_operation_id") if data.get(k) is not None)]
    counts = data.get("counts") if isinstance(data.get("counts"), dict) else {}
    if counts:
        out.append("<h3>Counts</h3>" + _grid(["part", "rows"], [[k, v] for k, v in counts.items()], {1}))
    files = data.get("files") if isinstance(data.get("files"), dict) else {}
    if files:
        rows = [[k, f.get("path"), f.get("rows"), f.get("kind"), str(f.get("sha256") or "")[:12] or None]
                for k, f in files.items() if isinstance(f, dict)]
        out.append("<h3>Files</h3>" + _grid(["file", "path", "rows", "kind", "sha256"], rows, {2}))
    sources: Counter[tuple[str, str]] = Counter()
    from .data import split_lineage
    from .errors import DataError

    try:
        lineage: dict[str, Any] = split_lineage(path, data)
    except DataError:
        lineage = {}
    for part, rows in lineage.items():
        for r in rows if isinstance(rows, list) else []:
            if isinstance(r, dict):
                sources[(str(r.get("source_file") or "?"), str(part))] += 1
    if sources:
        by_file: dict[str, dict[str, int]] = {}
        for (src, part), n in sources.items():
            by_file.setdefault(src, {})[part] = n
        parts = sorted({p for _, p in sources})
        rows = sorted(([src] + [c.get(p, 0) for p in parts] for src, c in by_file.items()), key=lambda r: -sum(r[1:]))
        out.append("<h3>Source files</h3>" + _grid(["source file"] + parts, rows, set(range(1, len(parts) + 1))))
    settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
    if settings:
        out.append("<h3>Curation settings</h3>" + _table(sorted(settings.items())))
    skipped = data.get("skipped")
    if isinstance(skipped, list) and skipped:
        out.append(_p(f"{len(skipped)} sample(s) left out by --skip-invalid"))
    return "\n".join(out)


def _config_text(run_dir: Path) -> str:
    try:
        return f"<pre>{escape((run_dir / 'config.yaml').read_text(encoding='utf-8'))}</pre>"
    except OSError as exc:
        return _p(f"config.yaml could not be read: {exc}", "bad")


# ---------------------------------------------------------------- the page

def render_report(run_dir: str | Path) -> str:
    """The report page of a run directory, as a string (reads the run's files; writes nothing)."""
    from .config import load_run_config
    from .metrics import metric_points, read_metrics
    from .rundir import effective_status

    run_dir = Path(run_dir)
    status = effective_status(run_dir)
    records = read_metrics(run_dir)[0]
    points = metric_points(records)
    start = next((r for r in records if r.get("event") == "start"), {})
    try:
        cfg = load_run_config(run_dir)
    except Exception:  # noqa: BLE001 - a hand-edited or damaged config.yaml: the rest of the page still helps
        cfg = None
    title = f"Run {run_dir.name}"
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    sections = [("summary", "Summary", _summary(run_dir, status, start, points, cfg)),
                ("curves", "Curves", _curves(points)),
                ("memory", "Memory: plan against measured", _memory(cfg, status, start, points)),
                ("evals", "Eval results", _evals(run_dir)),
                ("split", "Split manifest", _split(cfg)),
                ("config", "Config (config.yaml)", _config_text(run_dir))]
    body = "\n".join(f'<section id="{sid}"><h2>{escape(h)}</h2>\n{html}\n</section>' for sid, h, html in sections)
    untrained = bool(status.untrained or start.get("untrained"))
    warn = ('<p class="warn">Trained on the UNTRAINED built-in tiny model: for demos and tests; its answers mean '
            "nothing.</p>") if untrained else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        # nothing is fetched: no script, no style sheet, no font, no image from anywhere
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n"
        f"<p class=\"muted\">{escape(str(run_dir.resolve()))} · report written {escape(now)}</p>\n{warn}\n"
        f"{body}\n</body>\n</html>\n")


def write_report(run_dir: str | Path) -> Path:
    """Write RUN_DIR/report.html (through a temporary file, so a reader never sees half a page)."""
    run_dir = Path(run_dir)
    page = render_report(run_dir)
    path = run_dir / REPORT_FILE
    tmp = path.with_name(f".{REPORT_FILE}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def report_at_end(run_dir: str | Path) -> Path | None:
    """write_report when a run ends (training.runs.execute): one line in the log, and never an
    exception, so a report problem cannot fail the run. Only rank 0 of a multi-GPU run writes it.
    On a full disk it says nothing: the run's own last line already says the disk is full."""
    if os.environ.get("RANK", "0") != "0":
        return None
    run_dir = Path(run_dir)
    try:
        path = write_report(run_dir)
    except Exception as exc:  # noqa: BLE001 - the run's result stands; say why the page is missing
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return None  # a full disk: the run's own last line says so, and how to free space
        line, stream, path = f"run {run_dir.name}: report.html not written: {type(exc).__name__}: {exc}", sys.stderr, None
    else:
        line, stream = f"run {run_dir.name}: report {path}", sys.stdout
    try:
        print(line.splitlines()[0] if line else line, file=stream, flush=True)
    except OSError:  # the log's disk is full
        pass
    return path
