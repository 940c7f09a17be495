"""`import_paths`: files in, samples out, in one transaction.

For each file: hash it (its decompressed bytes: the same file twice adds nothing, gzipped or not),
read its rows (the DuckDB fast path for plain alpaca JSON/JSONL, the precise Python path for
everything else or when the fast path is not sure), validate, and land the samples with an
`imports` row and an `import` operation (and, for tool-use samples, their `tools`). All files of
one call share one transaction: a bad file, an exception or `kill -9` leaves the
workspace as it was, sample and operation ids included (DuckDB sequences do not roll back, so a
failed import gives back the ids it took: the next import starts where this one would have).

A file that cannot be imported at all (not JSON/CSV/Parquet, rows of no known format, unreadable,
or, with skip_invalid, no valid row) stops the import with one line naming it; with skip_invalid
it is reported (`FileResult.error`) and the other files are imported.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import duckdb

from ..errors import Cancelled, StudioError
from ..jobs import Job, null_job
from ..samples import Problem, Sample
from ..store import insert_arrow, to_arrow
from . import alpaca, containers, fast_alpaca, messages, reading, sharegpt, text
from .containers import FileProblem, RawRecord
from .fields import ID_KEYS
from .report import FileResult, ImportReport, RowProblem, format_problems

if TYPE_CHECKING:
    import pyarrow as pa

    from ..workspace import Workspace

log = logging.getLogger(__name__)

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
    compression: str | None = None  # gzip, zstd, bz2, xz: what the bytes above were decompressed from


def _scan(path: Path) -> _Scan:
    """Read the file once (decompressed: a compressed file is hashed, measured and sniffed by its
    content, so the same rows gzipped or not are the same file)."""
    h = hashlib.sha256()
    size = lines = 0
    head = b""
    blank = nul = False
    prev = b"\n"
    compression = reading.compression_of(reading.read_head(path))
    try:
        f = reading.open_data(path, compression)
    except OSError as exc:
        raise StudioError(f"{path}: cannot read it: {exc.strerror or exc}.") from None
    try:
        with f:
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
    except MemoryError:
        raise
    except Exception as exc:  # a read error, or (compressed) a damaged or cut-short stream
        if compression is None:
            if isinstance(exc, OSError):
                raise StudioError(f"{path}: cannot read it: {exc.strerror or exc}.") from None
            raise
        raise reading.decompress_problem(path, compression, exc) from None
    if prev != b"\n" and size:
        lines += 1
    return _Scan(h.hexdigest(), size, head, lines, blank, nul, compression)


def _scan_folder(folder: Path, display: str) -> _Scan:
    h = hashlib.sha256()
    size = 0
    try:
        data_files = containers.hf_data_files(folder)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise FileProblem(RowProblem(display, 1, "file", f"not a datasets save_to_disk folder: {exc}")) from None
    for f in data_files:
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


TURN_KEYS = ("role", "content", "from", "value")  # --map names these inside each turn of a conversation


def _apply_mapping(rec: dict, mapping: dict[str, str]) -> dict:
    if not mapping:
        return rec
    rec = dict(rec)
    for canonical, theirs in mapping.items():
        if canonical not in TURN_KEYS and theirs in rec and theirs != canonical:
            rec[canonical] = rec.pop(theirs)
    turn_map = {c: t for c, t in mapping.items() if c in TURN_KEYS and c != t}
    if turn_map:
        for key in ("messages", "conversations"):
            if isinstance(rec.get(key), list):
                rec[key] = [_map_turn(t, turn_map) for t in rec[key]]
    return rec


def _map_turn(turn: Any, turn_map: dict[str, str]) -> Any:
    if not isinstance(turn, dict):
        return turn
    turn = dict(turn)
    for canonical, theirs in turn_map.items():
        if theirs in turn and canonical not in turn:
            turn[canonical] = turn.pop(theirs)
    return turn


def _their_field(field: str, mapping: dict[str, str]) -> str:
    """Name a field as the file does: with --map instruction=question, say `question`; with
    --map role=speaker, `messages[1].speaker`."""
    for canonical, theirs in mapping.items():
        if canonical in TURN_KEYS:
            if field.endswith("]." + canonical):
                return field[: -len(canonical)] + theirs
            continue
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


def _row_id(value: Any) -> str | None:
    """The row's own id (`id`, `_id`, `uid`) as people would search their file for it, or None."""
    if not isinstance(value, dict):
        return None
    for key in ID_KEYS:
        v = value.get(key)
        if isinstance(v, str) and v:
            v = v.encode("utf-8", "backslashreplace").decode("utf-8")  # an unpaired surrogate as its escape
            return v if len(v) <= 80 else v[:79] + "…"
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return json.dumps(v)
    return None


# LLaMA-Factory's data/dataset_info.json: {"name": {"file_name": ..., "formatting": ...}, ...}
_INDEX_KEYS = {"file_name", "hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name"}


def _dataset_index_problem(value: Any, df: reading.DataFile, line: int) -> FileProblem | None:
    """A FileProblem saying what the file is when it is LLaMA-Factory's dataset index, else None."""
    if not isinstance(value, dict) or not value or not all(isinstance(e, dict) for e in value.values()):
        return None
    if not any(_INDEX_KEYS & set(e) for e in value.values()):
        return None
    files = [str(e["file_name"]) for e in value.values() if isinstance(e.get("file_name"), str)]
    listed = ", ".join(files[:5]) + (f" and {len(files) - 5:,} more" if len(files) > 5 else "")
    what = (f"import the files it lists ({listed}), e.g. studio import {df.path.parent / files[0]}" if files
            else "its datasets are on a hub: download them, then import the files")
    return FileProblem(RowProblem(df.name, line, "file", f"this is LLaMA-Factory's dataset index, not data: {what}"),
                       not_data=True)


def _records(df: reading.DataFile, container: str, encoding: str | None, compression: str | None = None) -> Any:
    if container == "hf":
        return containers.iter_hf(df.path, df.name)
    if container == "parquet":
        return containers.iter_parquet(df.path, df.name, compression)
    body = reading.decode(reading.read_bytes(df.path, compression), df.name, encoding)
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
    table: "pa.Table | None"
    rejected: list[tuple[RawRecord, list[RowProblem]]]
    fast: bool = False
    json_format: str = ""
    fast_rows: int = 0

    @property
    def rows(self) -> int:
        return self.fast_rows if self.table is None else self.table.num_rows


def split_tags(df: reading.DataFile) -> tuple[str, ...]:
    """The tags every row of the file gets: `split:NAME` for a dataset repository's split file."""
    return (f"split:{df.split}",) if df.split else ()


def _load_precise(df: reading.DataFile, container: str, row_format: str | None, mapping: dict[str, str],
                  encoding: str | None, job: Job, compression: str | None = None) -> _Loaded:
    samples: list[Sample] = []
    rejected: list[tuple[RawRecord, list[RowProblem]]] = []
    convert: ToSample | None = ROW_FORMATS[row_format].to_sample if row_format else None
    chosen = row_format
    extra_tags = split_tags(df)
    for n, rec in enumerate(_records(df, container, encoding, compression), 1):
        if n % 10000 == 0:
            job.check()
        if rec.problem is not None:
            rejected.append((rec, [RowProblem(df.name, rec.line, rec.problem.field, rec.problem.message, rec.element)]))
            continue
        value = _apply_mapping(rec.value, mapping)
        sid = _row_id(value)
        if convert is None:
            chosen = detect_row_format(value)
            if chosen is None:
                index = _dataset_index_problem(rec.value, df, rec.line)
                if index is not None:
                    raise index
                keys = ", ".join(sorted(map(str, rec.value)))[:200]
                raise FileProblem(RowProblem(
                    df.name, rec.line, "row",
                    f"cannot tell the format from its keys ({keys}); expected instruction/output (alpaca), "
                    f"conversations (sharegpt), messages, or text. Name the fields with --map "
                    f"instruction=YOUR_KEY,output=YOUR_KEY or pass --format.", rec.element, sid))
            convert = ROW_FORMATS[chosen].to_sample
        sample, problems = convert(value, df.name, rec.row)
        if problems:
            rejected.append((rec, [RowProblem(df.name, rec.line, _their_field(p.field, mapping), p.message, rec.element, sid)
                                   for p in problems]))
        elif sample is not None:  # a converter gives a sample or problems
            if extra_tags:
                sample = replace(sample, tags=sample.tags + tuple(t for t in extra_tags if t not in sample.tags))
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


class _EarlyCheck:
    """The fast path's check (`fast_alpaca.rows_if_fast`, a read_json pass on its own cursor) run
    on a thread while `_scan` hashes the same file: DuckDB and hashlib both release the GIL, so
    the two passes overlap on two cores (1M real-length rows on a loaded 2-core VM: the scan
    2.8 s, the check 1.9 s, one after the other before). Started only for an uncompressed file whose first 4 KB make it a
    fast-path candidate; `_load` uses its answer when the scan agrees on the format, and a file
    found already imported interrupts it."""

    def __init__(self, ws: Workspace, path: Path, json_format: str, mapping: dict[str, str]) -> None:
        self.json_format = json_format
        self.rows: int | None = None
        self._closed = False
        self._cur = ws.cursor()
        self._thread = threading.Thread(target=self._run, args=(str(path), mapping), daemon=True,
                                        name="studio-import-check")
        self._thread.start()

    def _run(self, path: str, mapping: dict[str, str]) -> None:
        try:
            self.rows = fast_alpaca.rows_if_fast(self._cur, path, self.json_format, mapping)
        except Exception as exc:  # an interrupt, or anything else: the check runs again in _load
            log.debug("early fast-path check of %s stopped: %s", path, exc)
            self.json_format = ""

    def result(self) -> tuple[str, int | None]:
        self._thread.join()
        if not self._closed:
            self._closed = True
            self._cur.close()
        return self.json_format, self.rows

    def cancel(self) -> None:
        if not self._closed:
            self._cur.interrupt()
        self.result()


def _early_check(ws: Workspace, df: reading.DataFile, container_override: str | None, row_format: str | None,
                 mapping: dict[str, str], encoding: str | None) -> _EarlyCheck | None:
    if df.path.is_dir() or not set(mapping) <= {"instruction", "input", "output", "system"}:
        return None
    try:
        with open(df.path, "rb") as f:
            head = f.read(4096)
        if reading.compression_of(head) is not None:
            return None
        container = container_override or containers.container_for(df.path, head)
        if container is None:
            return None
        probe = _Scan(sha256="", size=0, head=head, lines=0, blank_lines=False, nul=b"\0" in head)
        json_format = _fast_candidate(df, container, row_format, probe, encoding)
    except Exception:  # noqa: BLE001 - a guess only: _scan and _load say what is wrong with the file
        return None
    return _EarlyCheck(ws, df.path, json_format, mapping) if json_format else None


def _load(ws: Workspace, df: reading.DataFile, scan: _Scan, container: str, row_format: str | None,
          mapping: dict[str, str], encoding: str | None, job: Job, early: _EarlyCheck | None = None) -> _Loaded:
    json_format = _fast_candidate(df, container, row_format, scan, encoding)
    if json_format and set(mapping) <= {"instruction", "input", "output", "system"}:
        checked, rows = early.result() if early is not None else ("", None)
        if checked != json_format:  # not checked early, or as another format
            cur = ws.cursor()
            try:
                rows = fast_alpaca.rows_if_fast(cur, str(df.path), json_format, mapping, scan.compression)
            finally:
                cur.close()
        if rows is not None and (json_format == "array" or rows == scan.lines):
            return _Loaded("alpaca", None, [], True, json_format, rows)
    elif early is not None:
        early.cancel()
    return _load_precise(df, container, row_format, mapping, encoding, job, scan.compression)


def _write_rejects(ws: Workspace, df: reading.DataFile, import_id: int,
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
                "line": rec.line, "element": rec.element, "id": first.source_id, "field": first.field, "problem": first.message,
                "problems": [f"{p.field}: {p.message}" for p in problems], "raw": rec.raw,
            }, ensure_ascii=False) + "\n")
    os.replace(tmp, target)
    return target


_ID_SEQUENCES = (("sample_id_seq", "samples"), ("op_id_seq", "operations"))
SHOWN_DUPLICATE_IDS = 5


def _sequence_marks(con: Any) -> dict[str, tuple[int | None, int]]:
    """(last value given out, start) of the id sequences an import draws from."""
    names = [n for n, _ in _ID_SEQUENCES]
    rows = con.execute(
        "SELECT sequence_name, last_value, start_value FROM duckdb_sequences() "
        "WHERE database_name = current_database() AND sequence_name IN (SELECT unnest(?))", [names]).fetchall()
    return {name: (last, start) for name, last, start in rows}


def _give_back_ids(ws: Workspace, before: dict[str, tuple[int | None, int]]) -> None:
    """After a rolled-back import: set the id sequences back to where they were, so the next
    import's first sample is the one this import would have had (DuckDB's nextval is not undone
    by ROLLBACK). Left alone when some other writer committed ids past that point meanwhile."""
    try:
        now = _sequence_marks(ws.con)
        with ws.transaction() as con:
            for name, table in _ID_SEQUENCES:
                if name not in before or now.get(name, (None, 0))[0] == before[name][0]:
                    continue
                last, start = before[name]
                top = con.execute(f"SELECT max(id) FROM {table}").fetchall()[0][0]
                if top is not None and top > (last if last is not None else start - 1):
                    continue
                if last is None:  # never used: a fresh sequence (setval cannot go below the start)
                    con.execute(f"CREATE OR REPLACE SEQUENCE {name} START {int(start)}")
                else:
                    con.execute("SELECT setval(?, ?)", [name, int(last)])
    except duckdb.Error as exc:  # the import's own error is what the caller must see
        log.warning("could not give back the ids of a failed import: %s", exc)


def _duplicate_ids(con: Any, result: FileResult, import_id: int) -> None:
    """Name the source ids that more than one row of this file carries (all rows are imported)."""
    rows = con.execute(
        """SELECT source_id, n, count(*) OVER () FROM (
               SELECT source_id, count(*) AS n, min(id) AS first FROM samples
               WHERE import_id = ? AND source_id IS NOT NULL GROUP BY source_id HAVING count(*) > 1)
           ORDER BY first LIMIT ?""", [import_id, SHOWN_DUPLICATE_IDS]).fetchall()
    if not rows:
        return
    total = int(rows[0][2])
    result.duplicate_source_ids = {str(sid): int(n) for sid, n, _ in rows}
    result.duplicate_source_id_count = total
    shown = ", ".join(f"{sid} ({n} rows)" for sid, n, _ in rows)
    more = f" and {total - len(rows):,} more" if total > len(rows) else ""
    result.warnings.append(
        f"{total:,} source id{'s' if total != 1 else ''} appear{'' if total != 1 else 's'} on more than one row: "
        f"{shown}{more}; every row was imported as its own sample (studio dedup finds repeated content)")


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else text + "."


def _file_failure(path: Path, exc: Exception) -> str:
    """The one line saying why a file was not imported, without the path repeated in front."""
    text = str(exc.problem) if isinstance(exc, FileProblem) else str(exc)
    return text.removeprefix(f"{path}: ")


def import_paths(ws: Workspace, paths: list[str | os.PathLike[str]] | str | os.PathLike[str], *, format: str | None = None,
                 mapping: dict[str, str] | None = None, encoding: str | None = None, skip_invalid: bool = False,
                 job: Job | None = None) -> ImportReport:
    """Import files (JSON, JSONL, CSV, Parquet, save_to_disk folders; alpaca, sharegpt, messages or
    text rows) into the workspace. Raises StudioError listing `file:line: field: problem` when a
    file has invalid rows, or one line when a file cannot be imported at all; the workspace is then
    unchanged. With `skip_invalid`, the valid rows are imported and the others written to
    `rejects/<stem>-<import id>.jsonl`; a file that cannot be imported, or has no valid row, is
    left out with `FileResult.error` set (see `ImportReport.failed`) and the others are imported."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    row_format, container_override = _split_format(format)
    reading.check_encoding(encoding)
    mapping = dict(mapping or {})
    job = job or null_job("import")
    report = ImportReport()
    files = reading.expand(list(paths), warnings=report.warnings)
    job.set_total(len(files))
    failures: list[str] = []
    written: list[Path] = []
    owns_transaction = not getattr(ws, "_tx_depth", 0)
    id_marks = _sequence_marks(ws.con) if owns_transaction else {}
    try:
        with ws.transaction() as con:
            seen: dict[str, int] = {}
            for df in files:
                job.set_message(df.name)
                result = FileResult(path=df.path)
                report.files.append(result)
                early = _early_check(ws, df, container_override, row_format, mapping, encoding)
                try:
                    scan = _scan_folder(df.path, df.name) if df.path.is_dir() else _scan(df.path)
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
                    loaded = _load(ws, df, scan, container, row_format, mapping, encoding, job, early)
                except (FileProblem, StudioError) as exc:
                    if isinstance(exc, Cancelled):
                        raise
                    if isinstance(exc, FileProblem) and exc.not_data and df.name != df.path.name:
                        result.skipped = _file_failure(df.path, exc)  # met in a folder: not data, pass over
                        job.advance(1)
                        continue
                    if isinstance(exc, FileProblem):
                        result.problems.append(exc.problem)
                    if not skip_invalid:
                        others = "; pass --skip-invalid to import the other files without it" if len(files) > 1 else ""
                        what = str(exc.problem) if isinstance(exc, FileProblem) else str(exc)
                        raise StudioError(f"{_sentence(what)} Nothing was imported{others}.") from None
                    result.error = _file_failure(df.path, exc)
                    job.advance(1)
                    continue
                finally:
                    if early is not None:  # already imported, not data, an error: not needed
                        early.cancel()
                result.format = loaded.format
                result.fast_path = loaded.fast
                problems = [p for _, ps in loaded.rejected for p in ps]
                result.problems = problems
                if loaded.rejected and not skip_invalid:
                    failures.append(
                        f"{df.name}: {len(loaded.rejected):,} invalid row(s):\n{format_problems(problems)}")
                    job.advance(1)
                    continue
                if loaded.rejected and loaded.rows == 0:
                    result.error = (f"none of its {len(loaded.rejected):,} rows is valid (first: {problems[0]}); "
                                    f"fix the file and import it again")
                    job.advance(1)
                    continue
                import_id = int(con.execute("SELECT coalesce(max(id), 0) + 1 FROM imports").fetchall()[0][0])
                import_id = max(import_id, max(seen.values(), default=0) + 1)
                if loaded.table is None:
                    first, last = fast_alpaca.insert_alpaca(con, str(df.path), df.name, loaded.json_format,
                                                            mapping, loaded.fast_rows, import_id,
                                                            compression=scan.compression, tags=split_tags(df))
                else:
                    first, last = insert_arrow(con, loaded.table, import_id=import_id)
                if loaded.rejected:
                    result.rejects_file = _write_rejects(ws, df, import_id, loaded.rejected)
                    written.append(result.rejects_file)
                result.rows_imported, result.rows_rejected = loaded.rows, len(loaded.rejected)
                _duplicate_ids(con, result, import_id)
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
            if failures:  # only without skip_invalid
                raise StudioError("\n".join(failures) + (
                    "\nNothing was imported. Fix these rows, or pass --skip-invalid to import the valid rows "
                    "and write the invalid ones to a rejects file."))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        if owns_transaction:
            _give_back_ids(ws, id_marks)
        raise
    return report
