"""Profile a window of optimizer steps and summarise where the wall time goes (benches/gpu/NOTES.md).

`ProfileSteps(first, count, path)` is a TrainerCallback: it profiles optimizer steps first+1 ..
first+count and writes a text summary to `path`:
- wall time of the window, GPU busy time (union of kernel intervals) and the busy share;
- the GPU's idle gaps over 0.2 ms: count, total, and for the longest ones the CPU ops that were
  running when the GPU ran dry (a sync such as `.item()` or a slow Python op shows here);
- with `stacks`, for the longest gaps the Python functions the host was in (innermost first), and
  every host sync grouped by the Python functions that asked for it (torch's Python tracer: it
  slows the host several-fold, so the busy share and the gaps are then not the run's own);
- top kernels by GPU time, top CPU ops by self CPU time, and the number of kernel launches and
  synchronisations.
On a machine without CUDA only the CPU tables are written (the CPU smoke test runs it).
"""
from __future__ import annotations

import time
from pathlib import Path

from transformers import TrainerCallback


class ProfileSteps(TrainerCallback):
    def __init__(self, first: int, count: int, path: str | Path, stacks: bool = False):
        self.first, self.count, self.path, self.stacks = first, count, Path(path), stacks
        self.prof, self.t0 = None, 0.0

    def on_step_begin(self, args, state, control, **kw):
        if state.global_step == self.first and self.prof is None:
            import torch
            from torch.profiler import ProfilerActivity, profile

            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
            self.prof = profile(activities=acts, with_stack=self.stacks)
            self.prof.__enter__()
            self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        if self.prof and state.global_step == self.first + self.count:
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()
            wall = time.perf_counter() - self.t0
            self.prof.__exit__(None, None, None)
            try:
                text = summarise(self.prof, wall, self.count)
            except Exception:  # a profiler API change must not cost the run: keep what can be said
                import traceback

                text = traceback.format_exc() + "\n" + self.prof.key_averages().table(
                    sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=60)
            self.path.write_text(text)
            self.prof = False


def summarise(prof, wall_s: float, steps: int) -> str:
    from torch.autograd import DeviceType

    out = [f"window: {steps} optimizer steps, {wall_s * 1e3:.1f} ms wall"]
    events = prof.events()
    kernels = sorted((e.time_range.start, e.time_range.end) for e in events if e.device_type == DeviceType.CUDA)
    if kernels:
        busy, gaps, (cs, ce) = 0.0, [], kernels[0]
        for s, e in kernels[1:]:
            if s > ce:
                busy += ce - cs
                if s - ce > 200:
                    gaps.append((s - ce, ce))
                cs, ce = s, e
            else:
                ce = max(ce, e)
        busy += ce - cs
        span = kernels[-1][1] - kernels[0][0]
        out.append(f"GPU busy {busy / 1e3:.1f} ms of {span / 1e3:.1f} ms from first to last kernel "
                   f"({100 * busy / span:.1f}%); of the wall window {100 * busy / (wall_s * 1e6):.1f}%")
        out.append(f"idle gaps over 0.2 ms: {len(gaps)}, {sum(g for g, _ in gaps) / 1e3:.1f} ms in all")
        cpu = [e for e in events if e.device_type == DeviceType.CPU and not _is_python(e)]
        py = [e for e in events if _is_python(e)]
        for rank, (g, at) in enumerate(sorted(gaps, reverse=True)[:15]):
            around = sorted((e for e in cpu if e.time_range.start <= at <= e.time_range.end),
                            key=lambda e: e.time_range.end - e.time_range.start)[:4]
            out.append(f"  gap {g / 1e3:7.2f} ms at +{(at - kernels[0][0]) / 1e3:8.1f} ms during: "
                       + " < ".join(e.name[:60] for e in around)
                       + (" | " + " < ".join(_frames(around[0], 4)) if around else ""))
            if rank < 5:  # where the host was: Python functions covering at least a quarter of the gap
                inside = [e for e in py if min(e.time_range.end, at + g) - max(e.time_range.start, at) >= g / 4]
                for e in sorted(inside, key=lambda e: e.time_range.end - e.time_range.start)[:8]:
                    span = (e.time_range.end - e.time_range.start) / 1e3
                    out.append(f"      {span:8.2f} ms  {_short(e.name)}")
    out.extend(_sync_sites(events))
    ka = prof.key_averages()
    counts = {k: 0 for k in ("cudaLaunchKernel", "cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpyAsync",
                             "cudaEventSynchronize", "cuLaunchKernel", "cudaLaunchKernelExC")}
    for e in ka:
        if e.key in counts:
            counts[e.key] = e.count
    out.append("calls: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    if kernels:
        out.append("\ntop kernels by GPU time")
        out.append(ka.table(sort_by="self_device_time_total", row_limit=25, max_name_column_width=60))
    out.append("\ntop ops by self CPU time")
    out.append(ka.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=60))
    return "\n".join(out) + "\n"


SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy")


def _is_python(e) -> bool:
    return bool(getattr(e, "is_python_function", False))


def _short(frame: str, parts: int = 2) -> str:
    """'.../site-packages/transformers/trainer.py(1808): f' -> 'transformers/trainer.py(1808): f'."""
    path, sep, rest = frame.partition("(")
    return "/".join(path.split("/")[-parts:]) + sep + rest


def _frames(e, limit: int) -> list[str]:
    """The innermost Python functions outside torch above event `e` (its parent chain)."""
    out, p = [], e
    while p is not None and len(out) < limit:
        name = p.name
        if _is_python(p) and not name.startswith("<") and "torch/" not in name.split("(")[0]:
            out.append(_short(name))
        p = p.cpu_parent
    return out


def _sync_sites(events, frames: int = 3) -> list[str]:
    """Every host sync, grouped by the innermost Python functions outside torch that led to it
    (through the op that asked for it: the runtime call itself may have no parent)."""
    ops = [e for e in events if not _is_python(e) and e.device_type.name == "CPU" and e.name not in SYNC_CALLS]
    sites: dict[str, list[float]] = {}
    for e in events:
        if e.name not in SYNC_CALLS:
            continue
        owner = e.cpu_parent
        if owner is None:  # the innermost op around it on its thread
            around = [o for o in ops if o.thread == e.thread and o.time_range.start <= e.time_range.start
                      and e.time_range.end <= o.time_range.end]
            owner = min(around, key=lambda o: o.time_range.end - o.time_range.start, default=None)
        where = _frames(owner, frames) if owner is not None else []
        key = f"{e.name} in {owner.name if owner is not None else '?'}: " + (" < ".join(where) or "(no Python frame)")
        sites.setdefault(key, []).append((e.time_range.end - e.time_range.start) / 1e3)
    if not sites:
        return []
    n_py = sum(1 for e in events if _is_python(e))
    out = [f"host syncs by call site (count, ms waited in all; {n_py} Python function events recorded):"]
    for key, waits in sorted(sites.items(), key=lambda kv: -len(kv[1])):
        out.append(f"  {len(waits):4d} {sum(waits):9.2f} ms  {key}")
    return out
