"""Replay mixing: put some general data back into a fine-tuning set, against forgetting.

The seed's answer to a model that "learned lopsided" (catastrophic forgetting) is to mix some of
the original pretraining/general data into the training rows. `mix_replay` does that
deterministically: `fraction` 0.1 adds one general row for every ten training rows, drawn without
replacement from the user's JSONL (any format the trainer reads: chat rows or `{"text"}` rows) by a
seeded RNG and inserted at seeded positions, so the same inputs always give the same mix.

`write_replay_split` writes the mix as a split directory (docs/contracts.md) whose manifest.json
records the replay: source file and its sha256, fraction, seed, rows added and which train rows
they are. Validation rows are the task's own, untouched: eval loss stays comparable with runs
without replay. `apply_replay` does this for a created run (into RUN_DIR/replay-split) and points
the run's config at it, with a `# replay:` line under the reproduce line.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import DataError

REPLAY_DIR = "replay-split"


@dataclass(frozen=True)
class ReplayInfo:
    source: str
    source_sha256: str
    fraction: float
    seed: int
    task_rows: int
    replay_rows: int  # general rows added
    available: int  # rows in the general file
    positions: tuple[int, ...]  # indices in the mixed train rows that are general rows

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["positions"] = list(self.positions)
        return d


def replay_count(n_task: int, fraction: float) -> int:
    """General rows to add for `n_task` task rows: round(fraction * n_task), at least 1 when fraction > 0."""
    if not 0 <= fraction <= 1:
        raise DataError(f"replay fraction {fraction}: must be between 0 and 1 (0.1 = one general row per ten)")
    return 0 if fraction == 0 or n_task == 0 else max(1, round(fraction * n_task))


def mix_replay(task: list[dict], general: list[dict], fraction: float, seed: int = 42) -> tuple[list[dict], list[int]]:
    """(mixed rows, positions of the general rows). Task rows keep their order; general rows are a
    seeded sample without replacement (all of them when the file is shorter) at seeded positions."""
    want = replay_count(len(task), fraction)
    rng = random.Random(f"replay:{seed}")  # a string seed: stable across Python versions
    picked = rng.sample(range(len(general)), min(want, len(general)))
    total = len(task) + len(picked)
    positions = sorted(rng.sample(range(total), len(picked)))
    mixed: list[dict] = []
    task_iter, general_iter = iter(task), iter(general[i] for i in picked)
    slots = set(positions)
    for i in range(total):
        mixed.append(next(general_iter) if i in slots else next(task_iter))
    return mixed, positions


def load_general(path: str | Path) -> tuple[list[dict], str]:
    """Rows of the general-data file (any format the trainer reads) and its sha256."""
    from .data import read_file

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such general-data file for replay (a JSONL of chat or {{\"text\"}} rows)")
    rows = read_file(p)
    if not rows:
        raise DataError(f"{p}: the general-data file has no rows")
    return rows, hashlib.sha256(p.read_bytes()).hexdigest()


def write_replay_split(split: str | Path, general: str | Path, out_dir: str | Path, *, fraction: float,
                       seed: int = 42, val_fraction: float = 0.0) -> ReplayInfo:
    """Write `split` + replayed general rows as a split directory at `out_dir`; returns what was mixed."""
    from .data import load_split

    data = load_split(split, val_fraction=val_fraction, seed=seed)
    general_rows, digest = load_general(general)
    mixed, positions = mix_replay(data.train, general_rows, fraction, seed)
    info = ReplayInfo(source=str(Path(general).resolve()), source_sha256=digest, fraction=fraction, seed=seed,
                      task_rows=len(data.train), replay_rows=len(positions), available=len(general_rows),
                      positions=tuple(positions))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, rows in (("train", mixed), ("val", data.val)):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (out / f"{name}.jsonl").write_text(text, encoding="utf-8")
        files[name] = {"path": f"{name}.jsonl", "rows": len(rows), "sha256": hashlib.sha256(text.encode()).hexdigest()}
    manifest = {"name": out.name, "format": "messages", "created_by": "training.replay",
                "settings": {"from_split": str(Path(split).resolve()), "replay": info.to_dict()},
                "counts": {"train": len(mixed), "val": len(data.val)}, "files": files,
                "rows": (data.manifest or {}).get("rows", {})}
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, sort_keys=True, indent=1) + "\n",
                                       encoding="utf-8")
    return info


def apply_replay(run_dir: str | Path, general: str | Path, fraction: float, seed: int | None = None) -> ReplayInfo:
    """Mix replay rows into a created (not yet started) run: RUN_DIR/replay-split becomes its data,
    and config.yaml records it (data.split, and a `# replay:` line under the reproduce line)."""
    from .config import load_run_config, save_config, with_changes

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    seed = cfg.train.seed if seed is None else seed
    info = write_replay_split(cfg.data.split, general, run_dir / REPLAY_DIR, fraction=fraction, seed=seed,
                              val_fraction=cfg.data.val_fraction_if_missing)
    first = (run_dir / "config.yaml").read_text(encoding="utf-8").splitlines()[0]
    reproduce = first[len("# reproduce: "):] if first.startswith("# reproduce: ") else None
    cfg = with_changes(cfg, {"data.split": str((run_dir / REPLAY_DIR).resolve()),
                             "data.val_fraction_if_missing": 0.0})
    save_config(cfg, run_dir / "config.yaml", reproduce)
    text = (run_dir / "config.yaml").read_text(encoding="utf-8").split("\n", 1)
    note = (f"# replay: {info.replay_rows} rows of {info.source} (sha256 {info.source_sha256[:12]}) mixed into "
            f"{info.task_rows} task rows, fraction {fraction}, seed {seed}; see {REPLAY_DIR}/manifest.json")
    (run_dir / "config.yaml").write_text(text[0] + "\n" + note + "\n" + (text[1] if len(text) > 1 else ""),
                                         encoding="utf-8")
    return info
