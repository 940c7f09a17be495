"""`import_paths`: files in, samples out, in one transaction.

For each file: hash it (the same file twice adds nothing), read its rows (the DuckDB fast path
for plain alpaca JSON/JSONL, the precise Python path for everything else or when the fast path
is not sure), validate, and land the samples with an `imports` row and an `import` operation.
All files of one call share one transaction: a bad file, an exception or `kill -9` leaves the
workspace as it was.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa

from ..errors import StudioError
from ..jobs import Job, null_job
from ..samples import Problem, Sample
from ..store import insert_arrow, to_arrow
from . import alpaca, containers, fast_alpaca, messages, reading, sharegpt, text
from .containers import FileProblem, RawRecord
from .report import FileResult, ImportReport, RowProblem, format_problems

ROW_FORMATS = {m.NAME: m for m in (alpaca, sharegpt, messages, text)}
FORMATS = tuple(ROW_FORMATS) + containers.CONTAINERS
ToSample = Callable[[dict, str, int], "tuple[Sample | None, list[Problem]]"]


@dataclass
class _Scan:
    """What reading the bytes once tells: the hash, and whether the fast path can trust line numbers."""

    sha256: str
    size: int
    head: bytes
    lines: int
    blank_lines: bool
    nul: bool


def _scan(path: Path) -> _Scan:
    h = hashlib.sha256()
    size = lines = 0
    head = b""
    blank = nul = False
    prev = b"\n"
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
                if not head:
                    head = chunk[:4096]
                size += len(chunk)
                lines += chunk.count(b"\n")
                joined = prev + chunk[:2]
                blank = blank or b"\n\n" in chunk or b"\n\n" in joined or b"\n\r\n" in chunk or b"\n\r\n" in joined
                nul = nul or b"\0" in chunk
                prev = chunk[-1:]
    except OSError as exc:
        raise StudioError(f"{path}: cannot read it: {exc.strerror or exc}.") from None
    if prev != b"\n" and size:
        lines += 1
    return _Scan(h.hexdigest(), size, head, lines, blank, nul)


def _scan_folder(folder: Path) -> _Scan:
    h = hashlib.sha256()
    size = 0
    for f in containers.hf_data_files(folder):
        s = _scan(f)
        h.update(f.name.encode() + b"\0" + s.sha256.encode())
        size += s.size
    return _Scan(h.hexdigest(), size, b"", 0, False, False)


def _split_format(fmt: str | None) -> tuple[str | None, str | None]:
    if fmt is None:
        return None, None
    fmt = fmt.lower()
    if fmt == "arrow":
        fmt = "hf"
    if fmt in ROW_FORMATS:
        return fmt, None
    if fmt in containers.CONTAINERS:
        return None, fmt
    raise StudioError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}.")


def _apply_mapping(rec: dict, mapping: dict[str, str]) -> dict:
    if not mapping:
        return rec
    rec = dict(rec)
    for canonical, theirs in mapping.items():
        if theirs in rec and theirs != canonical:
            rec[canonical] = rec.pop(theirs)
    return rec


def _their_field(field: str, mapping: dict[str, str]) -> str:
    """Name a field as the file does: with --map instruction=question, say `question`."""
    for canonical, theirs in mapping.items():
        if field == canonical or field.startswith(canonical + "[") or field.startswith(canonical + "."):
            return theirs + field[len(canonical):]
    return field


def detect_row_format(rec: dict) -> str | None:
    keys = set(rec)
    if "conversations" in keys:
        return "sharegpt"
    if "messages" in keys:
        return "messages"
    if keys & {"instruction", "output"}:
        return "alpaca"
    if "text" in keys:
        return "text"
    return None


def _records(df: reading.DataFile, container: str, encoding: str | None) -> Any:
    if container == "hf":
        return containers.iter_hf(df.path, df.name)
    if container == "parquet":
        return containers.iter_parquet(df.path, df.name)
    body = reading.decode(reading.read_bytes(df.path), df.name, encoding)
    if container == "csv":
        return containers.iter_csv(body, df.name, "\t" if df.path.suffix.lower() == ".tsv" else ",")
    if container == "jsonl":
        return containers.iter_jsonl(body, df.name)
    return containers.iter_json(body, df.name)


@dataclass
class _Loaded:
    """A file read and checked: an Arrow table of samples, or (fast path) the rows DuckDB will
    insert straight from the file."""

    format: str
    table: pa.Table | None
    rejected: list[tuple[RawRecord, list[RowProblem]]]
    fast: bool = False
    json_format: str = ""
    fast_rows: int = 0

    @property
    def rows(self) -> int:
        return self.fast_rows if self.table is None else self.table.num_rows


def _load_precise(df: reading.DataFile, container: str, row_format: str | None, mapping: dict[str, str],
                  encoding: str | None, job: Job) -> _Loaded:
    samples: list[Sample] = []
    rejected: list[tuple[RawRecord, list[RowProblem]]] = []
    convert: ToSample | None = ROW_FORMATS[row_format].to_sample if row_format else None
    chosen = row_format
    for n, rec in enumerate(_records(df, container, encoding), 1):
        if n % 10000 == 0:
            job.check()
        if rec.problem is not None:
            rejected.append((rec, [RowProblem(df.name, rec.line, rec.problem.field, rec.problem.message, rec.element)]))
            continue
        value = _apply_mapping(rec.value, mapping)
        if convert is None:
            chosen = detect_row_format(value)
            if chosen is None:
                keys = ", ".join(sorted(map(str, rec.value)))[:200]
                raise FileProblem(RowProblem(
                    df.name, rec.line, "row",
                    f"cannot tell the format from its keys ({keys}); expected instruction/output (alpaca), "
                    f"conversations (sharegpt), messages, or text. Name the fields with --map "
                    f"instruction=YOUR_KEY,output=YOUR_KEY or pass --format.", rec.element))
            convert = ROW_FORMATS[chosen].to_sample
        sample, problems = convert(value, df.name, rec.row)
        if problems:
            rejected.append((rec, [RowProblem(df.name, rec.line, _their_field(p.field, mapping), p.message, rec.element) for p in problems]))
        else:
            samples.append(sample)
    return _Loaded(chosen or "alpaca", to_arrow(samples), rejected)


def _fast_candidate(df: reading.DataFile, container: str, row_format: str | None, scan: _Scan,
                    encoding: str | None) -> str | None:
    """The read_json format when the fast path may try this file, else None."""
    if container not in ("json", "jsonl") or row_format not in (None, "alpaca"):
        return None
    if encoding and encoding.replace("-", "").replace("_", "").lower() not in ("utf8",):
        return None
    head = scan.head
    if scan.nul or head.startswith(b"\xef\xbb\xbf") or head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return None
    first = head.lstrip(b" \t\r\n")[:1]
    if first == b"[":
        return "array"
    if first == b"{" and not scan.blank_lines and not head.startswith((b"\n", b"\r")):
        # An object must name instruction/output near the start for us to guess alpaca.
        if row_format is None and b'"instruction"' not in head and b'"output"' not in head:
            return None
        return "newline_delimited"
    return None


def _load(ws: Any, df: reading.DataFile, scan: _Scan, container: str, row_format: str | None,
          mapping: dict[str, str], encoding: str | None, job: Job) -> _Loaded:
    json_format = _fast_candidate(df, container, row_format, scan, encoding)
    if json_format and set(mapping) <= {"instruction", "input", "output", "system"}:
        cur = ws.cursor()
        try:
            rows = fast_alpaca.rows_if_fast(cur, str(df.path), json_format, mapping)
        finally:
            cur.close()
        if rows is not None and (json_format == "array" or rows == scan.lines):
            return _Loaded("alpaca", None, [], True, json_format, rows)
    return _load_precise(df, container, row_format, mapping, encoding, job)


def _write_rejects(ws: Any, df: reading.DataFile, import_id: int,
                   rejected: list[tuple[RawRecord, list[RowProblem]]]) -> Path:
    folder = ws.root / "rejects"
    folder.mkdir(exist_ok=True)
    stem = df.path.name.split(".")[0] or "rows"
    target = folder / f"{stem}-{import_id}.jsonl"
    tmp = target.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for rec, problems in rejected:
            first = problems[0]
            f.write(json.dumps({
                "line": rec.line, "element": rec.element, "field": first.field, "problem": first.message,
                "problems": [f"{p.field}: {p.message}" for p in problems], "raw": rec.raw,
            }, ensure_ascii=False) + "\n")
    os.replace(tmp, target)
    return target


def import_paths(ws: Any, paths: list[str | os.PathLike[str]] | str | os.PathLike[str], *, format: str | None = None,
                 mapping: dict[str, str] | None = None, encoding: str | None = None, skip_invalid: bool = False,
                 job: Job | None = None) -> ImportReport:
    """Import files (JSON, JSONL, CSV, Parquet, save_to_disk folders; alpaca, sharegpt, messages or
    text rows) into the workspace. Raises StudioError listing `file:line: field: problem` when a
    file has invalid rows (unless `skip_invalid`, which imports the valid rows and writes the
    others to `rejects/<stem>-<import id>.jsonl`); the workspace is then unchanged."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    row_format, container_override = _split_format(format)
    mapping = dict(mapping or {})
    job = job or null_job("import")
    files = reading.expand(list(paths))
    job.set_total(len(files))
    report = ImportReport()
    failures: list[str] = []
    written: list[Path] = []
    try:
        with ws.transaction() as con:
            seen: dict[str, int] = {}
            for df in files:
                job.set_message(df.name)
                result = FileResult(path=df.path)
                report.files.append(result)
                scan = _scan_folder(df.path) if df.path.is_dir() else _scan(df.path)
                prior = con.execute("SELECT min(id) FROM imports WHERE file_sha256 = ?", [scan.sha256]).fetchall()[0][0]
                if prior is None and scan.sha256 in seen:
                    prior = seen[scan.sha256]
                if prior is not None:
                    result.skipped_as_already_imported, result.already_import_id = True, int(prior)
                    job.advance(1)
                    continue
                container = container_override or containers.container_for(df.path, scan.head)
                if container is None:
                    raise StudioError(f"{df.path}: cannot tell the file type from its name or content; pass --format (one of {', '.join(FORMATS)}).")
                try:
                    loaded = _load(ws, df, scan, container, row_format, mapping, encoding, job)
                except FileProblem as exc:
                    result.problems.append(exc.problem)
                    failures.append(f"{exc.problem}")
                    job.advance(1)
                    continue
                result.format = loaded.format
                result.fast_path = loaded.fast
                problems = [p for _, ps in loaded.rejected for p in ps]
                result.problems = problems
                if loaded.rejected and not skip_invalid:
                    failures.append(
                        f"{df.name}: {len(loaded.rejected):,} invalid row(s):\n{format_problems(problems)}")
                    job.advance(1)
                    continue
                import_id = int(con.execute("SELECT coalesce(max(id), 0) + 1 FROM imports").fetchall()[0][0])
                import_id = max(import_id, max(seen.values(), default=0) + 1)
                if loaded.table is None:
                    first, last = fast_alpaca.insert_alpaca(con, str(df.path), df.name, loaded.json_format,
                                                            mapping, loaded.fast_rows, import_id)
                else:
                    first, last = insert_arrow(con, loaded.table, import_id=import_id)
                if loaded.rejected:
                    result.rejects_file = _write_rejects(ws, df, import_id, loaded.rejected)
                    written.append(result.rejects_file)
                result.rows_imported, result.rows_rejected = loaded.rows, len(loaded.rejected)
                details = {
                    "import_id": import_id, "file": str(df.path.resolve()), "source_file": df.name,
                    "format": loaded.format, "rows": result.rows_imported, "rejected": result.rows_rejected,
                    "first_sample_id": first if result.rows_imported else None,
                    "last_sample_id": last if result.rows_imported else None,
                    "rejects_file": str(result.rejects_file) if result.rejects_file else None,
                    "sha256": scan.sha256,
                }
                op_id = ws.record_operation("import", details=details, sample_count=result.rows_imported, con=con)
                con.execute(
                    "INSERT INTO imports (id, path, file_sha256, format, rows, rejected, op_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [import_id, str(df.path.resolve()), scan.sha256, loaded.format, result.rows_imported,
                     result.rows_rejected, op_id])
                result.import_id, result.operation_id = import_id, op_id
                seen[scan.sha256] = import_id
                job.advance(1)
            if failures:
                hint = "" if skip_invalid else (
                    "\nNothing was imported. Fix these rows, or pass --skip-invalid to import the valid rows "
                    "and write the invalid ones to a rejects file.")
                raise StudioError("\n".join(failures) + hint)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return report
