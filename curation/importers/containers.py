"""The containers rows come in: JSON arrays, JSON Lines (also when named .json), CSV/TSV, Parquet
and `datasets.save_to_disk` folders. Each yields `RawRecord`s (the decoded row plus where it was);
the row formats (alpaca.py, sharegpt.py, ...) turn records into samples.

A problem that stops a file from being read at all (a JSON array cut off in the middle, an empty
file, a file that is not Parquet) raises `FileProblem`; a bad row is a `RawRecord` with a problem.

JSON nested deeper than MAX_JSON_DEPTH levels is refused (a row of a JSON Lines file, an element of
an array, a JSON cell of a CSV): no instruction row is that deep, and Python's json module would
otherwise run out of stack (RecursionError) a few hundred levels further down.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..samples import Problem
from . import fields, reading
from .report import RowProblem


@dataclass
class RawRecord:
    line: int                  # where the row starts in the file (1-based); the row number for Parquet/Arrow
    row: int                   # what the sample keeps as source_row
    value: Any                 # the decoded row (a dict when usable)
    raw: str                   # the row as text, for the rejects file
    element: int | None = None  # 1-based index in a JSON array
    problem: Problem | None = None


class FileProblem(Exception):
    """The file cannot be imported at all. `not_data` marks a file that is no dataset (LLaMA-Factory's
    dataset_info.json): a folder import passes over it with a note instead of failing."""

    def __init__(self, problem: RowProblem, *, not_data: bool = False):
        super().__init__(str(problem))
        self.problem = problem
        self.not_data = not_data


CONTAINERS = ("json", "jsonl", "csv", "parquet", "hf")
_WS = re.compile(r"[ \t\n\r]*")


def _skip_ws(text: str, pos: int = 0) -> int:
    """The first position at or after `pos` that is not JSON whitespace."""
    m = _WS.match(text, pos)
    return m.end() if m else pos  # (the pattern matches the empty string, so m is never None)

MAX_JSON_DEPTH = 100  # levels of [ and { in one row; real rows (messages, tool schemas) stay far below
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


def too_deep(text: str, start: int = 0, end: int | None = None) -> int | None:
    """The offset in text[start:end] where JSON nesting first goes past MAX_JSON_DEPTH, or None.
    Strings are skipped, so brackets inside them do not count. Cheap when there are few brackets:
    the counts run in C, the token walk only when they exceed the limit."""
    end = len(text) if end is None else end
    if text.count("[", start, end) + text.count("{", start, end) <= MAX_JSON_DEPTH:
        return None
    depth = 0
    for m in _JSON_TOKEN.finditer(text, start, end):
        c = m.group()
        if c == "[" or c == "{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return m.start()
        elif c == "]" or c == "}":
            depth -= 1
    return None


def depth_message(text: str, at: int) -> str:
    """`JSON nested deeper than 100 levels (... column C)`, C counted on the line `at` is on."""
    column = at - text.rfind("\n", 0, at)
    return (f"JSON nested deeper than {MAX_JSON_DEPTH} levels (level {MAX_JSON_DEPTH + 1} opens at column {column}); "
            f"no instruction row is this deep: check that this is the file you meant to import")


def _json_msg(exc: json.JSONDecodeError) -> str:
    """`Expecting value at column 5`; json's "Unterminated string starting at" gets no second "at"."""
    return f"{exc.msg}{'' if exc.msg.endswith(' at') else ' at'} column {exc.colno}"


def _line_at(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def container_for(path: Path, text_head: bytes) -> str | None:
    """The container by extension (a compression suffix left out: x.jsonl.gz is JSON Lines), then
    by content for unknown extensions; `text_head` is the start of the decompressed bytes."""
    if path.is_dir():
        return "hf"
    suffix = reading.plain_name(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if text_head.startswith(b"PAR1"):
        return "parquet"
    head = text_head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:1] in (b"{", b"["):
        return "json"
    return None


def _row_problem(line: str) -> Problem | None:
    nul = line.find("\x00")
    if nul >= 0:
        return Problem("json", f"raw NUL byte at column {nul + 1}: the file looks binary or UTF-16 without a byte-order mark (try --encoding utf-16)")
    return None


def _object_problem(value: Any) -> Problem | None:
    if not isinstance(value, dict):
        return Problem("row", f"expected a JSON object, got {fields.type_name(value)}")
    return None


def iter_json(text: str, display: str) -> Iterator[RawRecord]:
    """A JSON array (rows numbered by element), a single object, or JSON Lines."""
    start = _skip_ws(text)
    if start == len(text):
        raise FileProblem(RowProblem(display, 1, "file", "is empty: no rows to import"))
    if text[start] == "[":
        yield from _iter_array(text, start, display)
        return
    if text[start] == "{":
        try:
            value = json.loads(text, strict=False)
        except json.JSONDecodeError:
            pass  # JSON Lines (or broken): read line by line below for a precise line number
        except RecursionError:
            # Too deep. Within the first line: a JSON Lines row (iter_jsonl sets it aside). Past it:
            # one object over several lines, so there is no row to set aside, only the file.
            deep = too_deep(text, start)
            first_end = text.find("\n", start)
            if deep is not None and first_end >= 0 and deep > first_end:
                raise FileProblem(RowProblem(display, _line_at(text, deep), "json", depth_message(text, deep))) from None
        else:
            line = text.count("\n", 0, start) + 1
            deep = too_deep(text, start)
            problem = _row_problem(text) or (Problem("json", depth_message(text, deep)) if deep is not None else None)
            yield RawRecord(line, line, None if problem else value, text.strip(), problem=problem)
            return
    yield from iter_jsonl(text, display)


def iter_jsonl(text: str, display: str) -> Iterator[RawRecord]:
    any_row = False
    decoder = json.JSONDecoder(strict=False)  # raw tabs/control characters inside strings are kept
    for lineno, line in enumerate(text.split("\n"), 1):  # not splitlines(): U+2028 may sit in a string
        if line.endswith("\r"):
            line = line[:-1]
        if not line.strip():
            continue
        any_row = True
        problem = _row_problem(line)
        value = None
        if problem is None and (deep := too_deep(line)) is not None:
            problem = Problem("json", depth_message(line, deep))
        if problem is None:
            try:
                value, end = decoder.raw_decode(line, _skip_ws(line))
                if line[end:].strip():
                    problem = Problem("json", f"extra data after the JSON value at column {end + 1} (one JSON object per line)")
            except json.JSONDecodeError as exc:
                problem = Problem("json", f"not valid JSON: {_json_msg(exc)}")
            except RecursionError:  # too_deep counts what json counts; this is the backstop
                value, problem = None, Problem("json", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        if problem is None:
            problem = _object_problem(value)
        yield RawRecord(lineno, lineno, value if problem is None else None, line, problem=problem)
    if not any_row:
        raise FileProblem(RowProblem(display, 1, "file", "is empty (only blank lines): no rows to import"))


def _iter_array(text: str, pos: int, display: str) -> Iterator[RawRecord]:
    decoder = json.JSONDecoder(strict=False)
    line = text.count("\n", 0, pos) + 1
    last = pos
    pos = _skip_ws(text, pos + 1)
    element = 0
    if text.startswith("]", pos):
        raise FileProblem(RowProblem(display, line, "file", "is an empty JSON array: no rows to import"))
    while True:
        line += text.count("\n", last, pos)
        last = pos
        if pos >= len(text):
            raise FileProblem(RowProblem(display, line, "json", f"file ends inside the array after element {element} (truncated?)"))
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise FileProblem(RowProblem(display, exc.lineno, "json", f"not valid JSON: {_json_msg(exc)} (in element {element + 1})")) from None
        except RecursionError:
            # The element's end is past where json gave up: the rest of the array cannot be read.
            deep = too_deep(text, pos)
            at = pos if deep is None else deep
            raise FileProblem(RowProblem(display, _line_at(text, at), "json",
                                         depth_message(text, at) if deep is not None else f"JSON nested deeper than {MAX_JSON_DEPTH} levels",
                                         element + 1)) from None
        element += 1
        raw = text[pos:end]
        problem = _row_problem(raw)
        if problem is None and (deep := too_deep(raw)) is not None:
            problem = Problem("json", depth_message(text, pos + deep))
            value = None
        problem = problem or _object_problem(value)
        yield RawRecord(line, element, value if problem is None else None, raw, element=element, problem=problem)
        pos = _skip_ws(text, end)
        if text.startswith(",", pos):
            pos = _skip_ws(text, pos + 1)
            continue
        if text.startswith("]", pos):
            rest = _skip_ws(text, pos + 1)
            if rest != len(text):
                at = text.count("\n", 0, rest) + 1
                raise FileProblem(RowProblem(display, at, "json", "extra data after the closing ] of the array"))
            return
        at = text.count("\n", 0, pos) + 1
        what = "the file ends" if pos >= len(text) else f"found {text[pos]!r}"
        raise FileProblem(RowProblem(display, at, "json", f"expected ',' or ']' after element {element}, {what} (truncated?)"))


JSON_CELLS = ("messages", "conversations", "history", "tags")


def iter_csv(text: str, display: str, delimiter: str) -> Iterator[RawRecord]:
    if not text.strip():
        raise FileProblem(RowProblem(display, 1, "file", "is empty: no rows to import"))
    # The csv module refuses cells over 128 KiB by default; a long answer is data, not an error.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise FileProblem(RowProblem(display, reader.line_num, "csv", str(exc))) from None
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        raise FileProblem(RowProblem(display, 1, "header", f"repeats a column name: {header}"))
    prev = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise FileProblem(RowProblem(display, reader.line_num, "csv", f"{exc}")) from None
        line, prev = prev + 1, reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue
        raw = delimiter.join(cells)
        if len(cells) != len(header):
            yield RawRecord(line, line, None, raw, problem=Problem("row", f"has {len(cells)} fields, the header has {len(header)}"))
            continue
        rec: dict[str, Any] = {}
        problem = _row_problem(raw)
        for name, cell in zip(header, cells):
            if name in JSON_CELLS and cell.strip().startswith("["):
                if (deep := too_deep(cell)) is not None:
                    problem = problem or Problem(name, depth_message(cell, deep))
                    continue
                try:
                    rec[name] = json.loads(cell, strict=False)
                except json.JSONDecodeError as exc:
                    problem = problem or Problem(name, f"holds a list that is not valid JSON: {exc.msg}")
                except RecursionError:
                    problem = problem or Problem(name, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            else:
                rec[name] = cell
        yield RawRecord(line, line, None if problem else rec, raw, problem=problem)
    if prev <= 1:
        raise FileProblem(RowProblem(display, 1, "file", "has a header but no rows"))


def _table_rows(batches: Iterator[Any], display: str) -> Iterator[RawRecord]:
    row = 0
    for batch in batches:
        for rec in batch.to_pylist():
            row += 1
            yield RawRecord(row, row, rec, json.dumps(rec, ensure_ascii=False, default=str))
    if row == 0:
        raise FileProblem(RowProblem(display, 1, "file", "has no rows"))


def iter_parquet(path: Path, display: str, compression: str | None = None) -> Iterator[RawRecord]:
    """A Parquet file; a compressed one (x.parquet.gz) is decompressed into memory first."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(pa.BufferReader(reading.read_bytes(path, compression)) if compression else path)
    except (pa.ArrowException, OSError) as exc:
        raise FileProblem(RowProblem(display, 1, "file", f"not a readable Parquet file: {exc}")) from None
    yield from _table_rows(pf.iter_batches(batch_size=4096), display)


def hf_data_files(folder: Path) -> list[Path]:
    """The .arrow files of a `datasets.save_to_disk` folder, in order (all splits of a DatasetDict)."""
    dict_file = folder / "dataset_dict.json"
    if dict_file.is_file():
        splits = json.loads(dict_file.read_text(encoding="utf-8")).get("splits", [])
        return [f for split in splits for f in hf_data_files(folder / split)]
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    return [folder / d["filename"] for d in state.get("_data_files", [])]


def iter_hf(folder: Path, display: str) -> Iterator[RawRecord]:
    """Read the Arrow stream files `save_to_disk` writes with pyarrow directly: no `datasets`
    import (1-2 s), same rows as `datasets.load_from_disk`."""
    import pyarrow as pa

    def batches() -> Iterator[Any]:
        for f in hf_data_files(folder):
            try:
                with pa.memory_map(str(f)) as source:
                    try:
                        reader = pa.ipc.open_stream(source)
                    except pa.ArrowInvalid:
                        reader = pa.ipc.open_file(source)
                    yield from (reader.get_batch(i) for i in range(reader.num_record_batches)) if isinstance(reader, pa.ipc.RecordBatchFileReader) else reader
            except (pa.ArrowException, OSError, KeyError) as exc:
                raise FileProblem(RowProblem(display, 1, "file", f"cannot read {f.name}: {exc}")) from None

    try:
        yield from _table_rows(batches(), display)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise FileProblem(RowProblem(display, 1, "file", f"not a datasets save_to_disk folder: {exc}")) from None
