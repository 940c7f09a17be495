"""Run a command under a memory cap: a Linux memory cgroup (v1 or v2) of its own, so "it runs
within 8 GB" is a fact the kernel enforces, not a reading of RSS.

Why a cgroup: RSS counts file pages the kernel may drop (a mapped signature file, DuckDB's reads
through the page cache) and misses nothing the kernel cannot reclaim; a cgroup's limit is what an
8 GB machine would do. Under the cap the kernel reclaims page cache first and kills the process
when anonymous memory (Python objects, numpy arrays, DuckDB's buffers) does not fit; there is no
swap on the bench machines.

Reported per run: whether it completed; the peak of the group's charge (memory.max_usage_in_bytes
or memory.peak: anonymous memory plus page cache, so it sits near the cap for any stage that reads
a large file); the peak of its anonymous memory, sampled every 0.2 s from memory.stat (rss in v1,
anon in v2), which is what must fit.

Needs root (or a delegated cgroup) on Linux: `MemoryCap.create` raises CapUnavailable with the
reason otherwise.
"""
from __future__ import annotations

import os
import re
import threading
import uuid
from pathlib import Path

V1 = Path("/sys/fs/cgroup/memory")
V2 = Path("/sys/fs/cgroup/unified")  # a hybrid layout's v2 mount; a pure v2 host has it at /sys/fs/cgroup


class CapUnavailable(RuntimeError):
    pass


def parse_size(text: str) -> int:
    """Bytes from '8G', '512M', '8GB', '1.5GiB' or a plain number."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"not a size: {text!r} (write 8G, 512M or a number of bytes)")
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))


class MemoryCap:
    """One memory cgroup with a limit; put a child in it with `enter` (as Popen's preexec_fn)."""

    def __init__(self, path: Path, v1: bool, limit: int):
        self.path, self.v1, self.limit = path, v1, limit
        self.anon_peak = 0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    @classmethod
    def create(cls, limit: int) -> "MemoryCap":
        name = f"scale-rows-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        candidates = [(V1, True), (V2, False), (Path("/sys/fs/cgroup"), False)]
        errors = []
        for root, v1 in candidates:
            ctl = root / ("memory.limit_in_bytes" if v1 else "cgroup.controllers")
            if not ctl.exists() or (not v1 and "memory" not in ctl.read_text()):
                continue
            path = root / name
            try:
                path.mkdir()
                (path / ("memory.limit_in_bytes" if v1 else "memory.max")).write_text(str(limit))
                # no swap either (the bench machines have none; a host with swap must not use it here)
                _try_write(path / ("memory.memsw.limit_in_bytes" if v1 else "memory.swap.max"), limit if v1 else 0)
                return cls(path, v1, limit)
            except OSError as exc:
                errors.append(f"{path}: {exc}")
                try:
                    path.rmdir()
                except OSError:
                    pass
        raise CapUnavailable("no memory cgroup could be made (" + ("; ".join(errors) or "no memory controller mounted") + ")")

    def enter(self) -> None:
        """Move the calling process into the group (run in the child: Popen(preexec_fn=cap.enter))."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def start(self) -> None:
        """Reset the peaks and start sampling anonymous memory."""
        self.anon_peak = 0
        if self.v1:
            _try_write(self.path / "memory.max_usage_in_bytes", 0)
        self._stop.clear()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def stop(self) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()
        self._read_anon()

    def _read_anon(self) -> None:
        try:
            stat = (self.path / "memory.stat").read_text()
        except OSError:
            return
        key = "total_rss" if self.v1 else "anon"
        m = re.search(rf"^{key} (\d+)$", stat, re.MULTILINE)
        if m:
            self.anon_peak = max(self.anon_peak, int(m.group(1)))

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self._read_anon()

    def charge_peak(self) -> int | None:
        name = "memory.max_usage_in_bytes" if self.v1 else "memory.peak"
        try:
            return int((self.path / name).read_text())
        except (OSError, ValueError):
            return None

    def oom_kills(self) -> int:
        """How many processes the kernel killed in the group for memory (0 when it cannot say)."""
        try:
            text = (self.path / ("memory.oom_control" if self.v1 else "memory.events")).read_text()
        except OSError:
            return 0
        m = re.search(r"^oom_kill (\d+)$", text, re.MULTILINE)
        return int(m.group(1)) if m else 0

    def remove(self) -> None:
        try:
            self.path.rmdir()
        except OSError:
            pass


def _try_write(path: Path, value: int) -> None:
    try:
        path.write_text(str(value))
    except OSError:
        pass
