"""Freeze a train/validation split: `WORKSPACE/splits/NAME/` as docs/contracts.md describes it.

A split is the contract with `training`, so it must be reproducible: the same workspace and the
same arguments give byte-identical files. Rows are sorted by sample id; whether a sample goes to
validation is decided by a seeded sha256 of its id (the `round(n * val)` samples with the smallest
hashes), so it depends on nothing but the seed and the set of ids; the manifest holds no
timestamps and its keys are sorted.

Rejected samples and duplicates (`duplicate_of` set) never reach a split. The split is written into
a hidden temporary folder and renamed into place, so a crash never leaves half a split, and an
existing split is replaced only with `force`. The temporary folders of exports whose process died
(`.NAME.tmp-PID`) are removed when the next export starts.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import duckdb

from .errors import StudioError

FORMATS = ("messages", "alpaca", "sharegpt")
INCLUDES = {"approved": ("approved",), "approved+pending": ("approved", "pending")}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_BATCH = 10_000


def _created_by() -> str:
    try:
        from importlib.metadata import version

        return f"studio {version('finetune-studio')}"
    except Exception:  # not installed as a distribution (a source checkout)
        return "studio"


@dataclass(frozen=True)
class Manifest:
    """The split as written: `path` is its folder, `data` the manifest.json content."""

    path: Path
    data: dict[str, Any]

    @property
    def counts(self) -> dict[str, int]:
        return self.data["counts"]

    def sample_ids(self, part: str) -> list[int]:
        return [r["sample_id"] for r in self.data["rows"][part]]


# -- one line per sample, in each format ----------------------------------------------------------
def format_row(fmt: str, kind: str, system: str | None, messages: list[dict[str, str]], text: str | None) -> dict[str, Any]:
    """One JSONL record in format `fmt` (see docs/contracts.md). Raw text is {"text"} in every format."""
    if kind == "text":
        return {"text": text or ""}
    if fmt == "messages":
        turns = ([{"role": "system", "content": system}] if system else []) + [
            {"role": m["role"], "content": m["content"]} for m in messages]
        return {"messages": turns}
    if fmt == "sharegpt":
        names = {"user": "human", "assistant": "gpt"}
        turns = ([{"from": "system", "value": system}] if system else []) + [
            {"from": names[m["role"]], "value": m["content"]} for m in messages]
        return {"conversations": turns}
    if fmt == "alpaca":
        # The last user turn is the instruction, the last assistant turn the output; the turns
        # before are `history` pairs. (An imported alpaca `input` was joined into the user turn.)
        *earlier, last_user, last_answer = messages
        rec: dict[str, Any] = {"instruction": last_user["content"], "input": "", "output": last_answer["content"]}
        if system:
            rec["system"] = system
        if earlier:
            rec["history"] = [[earlier[i]["content"], earlier[i + 1]["content"]] for i in range(0, len(earlier), 2)]
        return rec
    raise StudioError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}.")


# -- which samples, which part ---------------------------------------------------------------------
def _check_args(val: float, fmt: str, include: str) -> None:
    if fmt not in FORMATS:
        raise StudioError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}.")
    if include not in INCLUDES:
        raise StudioError(f"--include {include!r}: use 'approved' or 'approved+pending'.")
    if not (0 <= val < 1):
        raise StudioError(f"--val {val}: the validation fraction must be at least 0 and below 1 (e.g. 0.1).")


def _where(include: str) -> tuple[str, list[Any]]:
    return "status IN (SELECT unnest(?)) AND duplicate_of IS NULL", [list(INCLUDES[include])]


def val_size(n: int, val: float) -> int:
    """How many of n samples go to validation: round(n * val), at least one when val > 0 and n > 1."""
    k = round(n * val)
    if val > 0 and k == 0 and n > 1:
        k = 1
    return min(k, max(n - 1, 0)) if val > 0 else 0


def _key(seed: int, sample_id: int) -> bytes:
    return hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()


def assign(ids: list[int], val: float, seed: int) -> set[int]:
    """The ids that go to validation: the val_size() ids with the smallest seeded hashes."""
    k = val_size(len(ids), val)
    if k == 0:
        return set()
    return set(sorted(ids, key=lambda i: _key(seed, i))[:k])


def preview_counts(con: duckdb.DuckDBPyConnection, val: float = 0.1, seed: int = 42, include: str = "approved") -> dict[str, Any]:
    """What `export_split` would write, without writing: train/val counts and what stays out."""
    _check_args(val, "messages", include)
    total, approved, pending, rejected, dups = con.execute(
        """SELECT count(*), count(*) FILTER (WHERE status = 'approved' AND duplicate_of IS NULL),
                  count(*) FILTER (WHERE status = 'pending' AND duplicate_of IS NULL),
                  count(*) FILTER (WHERE status = 'rejected'),
                  count(*) FILTER (WHERE status <> 'rejected' AND duplicate_of IS NOT NULL)
           FROM samples"""
    ).fetchone()
    n = approved + (pending if include == "approved+pending" else 0)
    k = val_size(n, val)
    return {"rows": n, "train": n - k, "val": k, "seed": seed, "include": include,
            "excluded": {"rejected": rejected, "duplicates": dups,
                         "pending": 0 if include == "approved+pending" else pending}}


def _rows(con: duckdb.DuckDBPyConnection, include: str) -> Iterator[tuple]:
    where, params = _where(include)
    res = con.execute(
        f"""SELECT id, kind, system, messages, text, source_id, source_file, source_row
            FROM samples WHERE {where} ORDER BY id""", params)
    while True:
        batch = res.fetchmany(_BATCH)
        if not batch:
            return
        yield from batch


# -- writing ----------------------------------------------------------------------------------------
_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)")


def split_leftovers(splits_dir: Path) -> list[dict[str, Any]]:
    """Hidden folders an export leaves when its process dies: `.NAME.tmp-PID` (a split being
    written) and `.NAME.old-PID` (the split it was replacing, between the two renames). Each:
    path, name, kind ('tmp' or 'old'), pid, alive (that process still runs), bytes."""
    from .workspace import pid_alive

    found = []
    if not splits_dir.is_dir():
        return found
    for d in sorted(splits_dir.iterdir()):
        m = _LEFTOVER.fullmatch(d.name)
        if not m or not d.is_dir() or d.is_symlink():
            continue
        pid = int(m.group("pid"))
        size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file() and not f.is_symlink())
        found.append({"path": d, "name": m.group("name"), "kind": m.group("kind"), "pid": pid,
                      "alive": pid == os.getpid() or pid_alive(pid), "bytes": size})
    return found


def remove_dead_temp_folders(splits_dir: Path) -> list[dict[str, Any]]:
    """Remove the `.NAME.tmp-PID` folders of exports whose process is gone (each a partial split,
    often tens of MB); what was removed. A `.NAME.old-PID` is left to `studio check`: it may hold
    the only copy of a split."""
    removed = []
    for item in split_leftovers(splits_dir):
        if item["kind"] == "tmp" and not item["alive"]:
            shutil.rmtree(item["path"], ignore_errors=True)
            if not item["path"].exists():
                removed.append(item)
    return removed


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name or ""):
        raise StudioError(
            f"split name {name!r}: use letters, digits, '.', '_' or '-' (starting with a letter or digit), e.g. v1."
        )


def export_split(ws, name: str, *, val: float = 0.1, seed: int = 42, format: str = "messages",
                 include: str = "approved", force: bool = False) -> Manifest:
    """Write `splits/NAME/` (train.jsonl, val.jsonl, manifest.json) and return its manifest.
    Raises StudioError when the split exists (unless `force`), when no sample qualifies, or for a
    bad argument."""
    _check_name(name)
    _check_args(val, format, include)
    seed = int(seed)
    target = ws.splits_dir / name
    if target.exists() and not force:
        raise StudioError(f"split {name!r} already exists at {target}. Pass --force to replace it, or choose another name.")
    con = ws.con
    where, params = _where(include)
    ids = [r[0] for r in con.execute(f"SELECT id FROM samples WHERE {where} ORDER BY id", params).fetchall()]
    if not ids:
        hint = ("approve samples first (studio approve ID..., or in the review screen) or pass --include approved+pending"
                if include == "approved" else "import samples and leave some not rejected")
        raise StudioError(f"no samples to export into {name!r}: none is {' or '.join(INCLUDES[include])} and not a duplicate; {hint}.")
    val_ids = assign(ids, val, seed)
    last_op = ws.last_operation_id()

    ws.splits_dir.mkdir(parents=True, exist_ok=True)
    remove_dead_temp_folders(ws.splits_dir)  # what killed exports left behind
    tmp = ws.splits_dir / f".{name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        rows_meta: dict[str, list[dict[str, Any]]] = {"train": [], "val": []}
        hashes = {"train": hashlib.sha256(), "val": hashlib.sha256()}
        with open(tmp / "train.jsonl", "wb") as ftrain, open(tmp / "val.jsonl", "wb") as fval:
            files = {"train": ftrain, "val": fval}
            for sid, kind, system, messages, text, source_id, source_file, source_row in _rows(con, include):
                part = "val" if sid in val_ids else "train"
                rec = format_row(format, kind, system, json.loads(messages) if messages else [], text)
                line = (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")
                files[part].write(line)
                hashes[part].update(line)
                rows_meta[part].append({"sample_id": int(sid), "source_id": source_id, "source_file": source_file,
                                        "source_row": source_row})
        counts = {p: len(rows_meta[p]) for p in ("train", "val")}
        data = {
            "name": name,
            "format": format,
            "created_by": _created_by(),
            "settings": {"val": val, "seed": seed, "format": format, "include": include},
            "last_operation_id": last_op,
            "counts": counts,
            "files": {p: {"path": f"{p}.jsonl", "rows": counts[p], "sha256": hashes[p].hexdigest()} for p in ("train", "val")},
            "rows": rows_meta,
        }
        (tmp / "manifest.json").write_text(json.dumps(data, sort_keys=True, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        old = None
        if target.exists():
            old = ws.splits_dir / f".{name}.old-{os.getpid()}"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Manifest(target, data)


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest.json of the split folder `path`."""
    p = Path(path) / "manifest.json"
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudioError(f"{p} does not exist: is {path} a split folder (studio export NAME writes one)?") from None
    except json.JSONDecodeError as exc:
        raise StudioError(f"{p}:{exc.lineno}: not valid JSON ({exc.msg}).") from None


def list_splits(ws) -> list[dict[str, Any]]:
    """Existing splits, by name: name, format, counts, last_operation_id."""
    out = []
    if not ws.splits_dir.exists():
        return out
    for d in sorted(ws.splits_dir.iterdir()):
        if d.is_dir() and not d.name.startswith(".") and (d / "manifest.json").exists():
            try:
                m = read_manifest(d)
            except StudioError:
                continue
            out.append({"name": d.name, "format": m.get("format"), "counts": m.get("counts"),
                        "last_operation_id": m.get("last_operation_id"), "path": str(d)})
    return out
