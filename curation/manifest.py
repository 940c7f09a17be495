"""The split manifest (`splits/NAME/manifest.json`, docs/contracts.md) as a typed model, and its
row lineage sidecar (`lineage.parquet`).

`Manifest` is what `export_split` writes and what readers in curation get back: format, counts,
files with their sha256, the curation settings, and where the lineage is. The lineage (for every
exported row: its part, file, line, sample id, source id, source file and row) lives in a Parquet
file beside it, so manifest.json stays a few KB at any size (schema 2 listed every row inline:
29 MB at 200k rows). `split_rows` reads the lineage of any schema (1 and 2 inline, 3 sidecar).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from .errors import StudioError

SCHEMA_VERSION: Final = 3  # 1: no schema_version key; 2: rows inline; 3: rows in lineage.parquet
PARTS = ("train", "val")
LINEAGE_FILE = "lineage.parquet"
# The sidecar's columns, in order: `file` is the files key (train, val, train.text, val.text),
# `line` the 1-based line (row) in that file.
LINEAGE_COLUMNS = ("part", "file", "line", "sample_id", "source_id", "source_file", "source_row")
ROW_KEYS = ("sample_id", "source_id", "source_file", "source_row")  # one row's lineage, as readers get it


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Strict):
    """One data file of the split."""

    path: str  # relative to the split folder: train.jsonl, val.parquet, text/train (an hf folder)
    rows: int
    sha256: str  # of the file; of an hf folder's Arrow data files concatenated
    kind: Literal["chat", "text"]
    part: Literal["train", "val"]


class Lineage(_Strict):
    """Where each exported row came from: a Parquet file with LINEAGE_COLUMNS, in file order."""

    path: str = LINEAGE_FILE
    rows: int
    sha256: str


class Settings(_Strict):
    """The arguments of `studio export` that made the split."""

    val: float
    seed: int
    format: str
    include: str
    target: str
    skip_invalid: bool | None = None  # present (true) only with --skip-invalid


class Skipped(_Strict):
    sample_id: int
    part: Literal["train", "val"]
    problems: list[str]


class Manifest(_Strict):
    """manifest.json, schema 3. `path` (not written) is the split folder it was read from or
    written to."""

    schema_version: Literal[3] = SCHEMA_VERSION
    name: str
    format: str
    target: str
    created_by: str
    settings: Settings
    last_operation_id: int | None
    counts: dict[str, int]  # train, val: all rows of the part (chat and text)
    files: dict[str, FileEntry]  # train, val, and train.text, val.text when the split holds raw text
    lineage: Lineage
    skipped: list[Skipped] | None = None  # only with --skip-invalid

    _path: Path | None = PrivateAttr(default=None)

    # -- files -----------------------------------------------------------------------------------
    def to_json(self) -> str:
        """The file's text: keys sorted, UTF-8, no timestamps (same split, same bytes)."""
        data = self.data
        return json.dumps(data, sort_keys=True, ensure_ascii=False, indent=2) + "\n"

    def write(self, folder: Path) -> None:
        (folder / "manifest.json").write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def read(cls, folder: str | os.PathLike[str]) -> "Manifest":
        """The manifest of split folder `folder`; one line naming the problem when it is not one
        this version wrote (a schema 1 or 2 split: export it again)."""
        data = read_manifest(folder)
        version = data.get("schema_version", 1)
        if version != SCHEMA_VERSION:
            raise StudioError(f"{Path(folder) / 'manifest.json'}: schema_version {version}; this studio reads "
                              f"schema {SCHEMA_VERSION} here: export the split again (studio export NAME --force).")
        try:
            m = cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise StudioError(f"{Path(folder) / 'manifest.json'}: {where}: {err['msg']}; export the split again.") from None
        m._path = Path(folder)
        return m

    def at(self, folder: Path) -> "Manifest":
        self._path = Path(folder)
        return self

    # -- what readers ask ------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        if self._path is None:
            raise ValueError("this manifest has no folder yet")
        return self._path

    @property
    def data(self) -> dict[str, Any]:
        """The manifest as its JSON object (what schema 2 callers read): `skipped` and
        `settings.skip_invalid` only with --skip-invalid; last_operation_id null on a fresh workspace."""
        data = self.model_dump(mode="json")
        if data["skipped"] is None:
            del data["skipped"]
        if data["settings"]["skip_invalid"] is None:
            del data["settings"]["skip_invalid"]
        return data

    def rows(self, part: str) -> list[dict[str, Any]]:
        """The lineage of `part`'s rows in file order (chat file, then text file): sample_id,
        source_id, source_file, source_row."""
        return split_rows(self.path, self.data).get(part, [])

    def sample_ids(self, part: str) -> list[int]:
        return [r["sample_id"] for r in self.rows(part)]

    def file(self, part: str, kind: str = "chat") -> dict[str, Any] | None:
        """The `files` entry of `part` (train or val) holding `kind` (chat or text) rows, if written."""
        entry = self.files.get(part if kind == "chat" else f"{part}.text")
        return entry.model_dump() if entry else None

    @property
    def text_rows(self) -> dict[str, int]:
        """Raw-text rows per part (they are in the `.text` files, not in the chat files)."""
        return {p: (self.file(p, "text") or {}).get("rows", 0) for p in PARTS}

    def notes(self) -> list[str]:
        """What the export summary adds to the counts: where raw text went, what was left out."""
        out = []
        text = self.text_rows
        if sum(text.values()):
            where = " and ".join(f"{self.file(p, 'text')['path']} ({text[p]:,})" for p in PARTS if text[p])  # type: ignore[index]
            n = sum(text.values())
            out.append(f"{n:,} raw-text sample{'s' if n != 1 else ''} went to {where}: OpenAI and LLaMA-Factory chat formats "
                       "can't hold them (studio trains them with the chat rows; LLaMA-Factory: --stage pt with "
                       f"dataset {self.name}_text{'' if text['train'] else '_val'})")
        skipped = self.skipped or []
        if skipped:
            why = ("they break OpenAI's fine-tuning format" if self.format == "openai"
                   else f"{self.format} rows can't hold them")
            out.append(f"{len(skipped):,} row{'s' if len(skipped) != 1 else ''} left out (--skip-invalid): {why}; "
                       "manifest.json 'skipped' lists them")
        return out


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest.json of the split folder `path`, as its JSON object (any schema)."""
    p = Path(path) / "manifest.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudioError(f"{p} does not exist: is {path} a split folder (studio export NAME writes one)?") from None
    except json.JSONDecodeError as exc:
        raise StudioError(f"{p}:{exc.lineno}: not valid JSON ({exc.msg}).") from None
    if not isinstance(data, dict):
        raise StudioError(f"{p}: expected a JSON object; export the split again.")
    return data


def split_rows(folder: str | os.PathLike[str], data: dict[str, Any] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Each part's row lineage (sample_id, source_id, source_file, source_row) in file order, for a
    manifest of any schema: inline `rows` (1, 2) or the lineage sidecar (3). {} when there is none."""
    data = read_manifest(folder) if data is None else data
    if isinstance(data.get("rows"), dict):
        return data["rows"]
    lineage = data.get("lineage")
    if not isinstance(lineage, dict):
        return {}
    import pyarrow.parquet as pq

    path = Path(folder) / str(lineage.get("path") or LINEAGE_FILE)
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise StudioError(f"{path}: cannot read the split's lineage ({exc}); export the split again.") from None
    out: dict[str, list[dict[str, Any]]] = {p: [] for p in PARTS}
    for row in table.select(["part", *ROW_KEYS]).to_pylist():
        out.setdefault(row.pop("part"), []).append(row)
    return out
