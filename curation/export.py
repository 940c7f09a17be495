"""Freeze a train/validation split: `WORKSPACE/splits/NAME/` as docs/contracts.md describes it.

A split is the contract with `training`, so it must be reproducible: the same workspace and the
same arguments give byte-identical files. Rows are sorted by sample id; whether a sample goes to
validation is decided by a seeded sha256 of its id (the `round(n * val)` samples with the smallest
hashes), so it depends on nothing but the seed and the set of ids; the manifest holds no
timestamps and its keys are sorted.

Chat samples and raw-text samples (continued pretraining) go to separate files: `train.jsonl` /
`val.jsonl` hold chat rows only, in the split's row format, and `train.text.jsonl` /
`val.text.jsonl` the `{"text"}` rows (written when the split holds any). OpenAI's upload,
LLaMA-Factory's sharegpt/alpaca loaders and axolotl's chat_template reject a `{"text"}` row in a
chat file; training reads both. The target picks the container: `jsonl` (default), `parquet`
(written by DuckDB's COPY from the JSONL, one writer thread so the bytes are fixed) or `hf`
(`datasets` `save_to_disk` folders; `datasets` is imported for that target only). Beside the data:
`manifest.json` (schema_version 3, the `Manifest` model of curation/manifest.py), `lineage.parquet`
(each row's sample and source), LLaMA-Factory's `dataset_info.json` and a `README.md` saying how
to train the split with studio, LLaMA-Factory, axolotl and OpenAI.

The rows are written in one pass without a Python loop per row: DuckDB builds each row's JSON line
(`_line_sql`, equal byte for byte to json.dumps of `format_row`), one query per range of ids with
no ORDER BY (sorting the lines cost more than building them; the rows are checked, and put, in id
order); numpy decides each row's file; the runs of rows of each file go, as slices of the Arrow
buffer, to a thread that writes them and one that hashes them (curation/hashed_writer.py) while
DuckDB builds the next range. Only rows SQL does not write (tool use, multi-turn alpaca or sharegpt
rows, openai rows with a blank turn) go through `format_row`, inside the same pass.

With `--format openai` every chat row is checked against OpenAI's documented fine-tuning format
(`openai_problems`); a row that breaks it (or a tool-use sample alpaca or sharegpt rows cannot
hold) stops the export with one line per problem (file:line and sample id), unless `skip_invalid`
leaves those rows out (counted in the summary, listed in the manifest's `skipped`). Tool use
passes through in OpenAI's shape in messages/openai rows (LLaMA-Factory's function_call and
observation turns in sharegpt rows).

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
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .arrow_buffers import arrow_of as _arrow
from .arrow_buffers import int64s as _ints
from .arrow_buffers import mask_of as _mask
from .arrow_buffers import strings_of as _strings
from .errors import StudioError
from .hashed_writer import HashedWriter
from .importers.fast_alpaca import SQL_WHITESPACE
from .manifest import (
    LINEAGE_COLUMNS,
    LINEAGE_FILE,
    PARTS,
    FileEntry,
    Lineage,
    Manifest,
    Settings,
    Skipped,
    read_manifest,
    split_rows,
)
from .sql_json import json_string_sql, messages_sql

FORMATS = ("messages", "alpaca", "sharegpt", "openai")
TARGETS = ("jsonl", "parquet", "hf")
INCLUDES = {"approved": ("approved",), "approved+pending": ("approved", "pending")}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_SHOWN_PROBLEMS = 20  # problem lines in a refusal; the rest are counted


def _created_by() -> str:
    try:
        from importlib.metadata import version

        return f"studio {version('finetune-studio')}"
    except Exception:  # not installed as a distribution (a source checkout)
        return "studio"


# -- one line per sample, in each format ----------------------------------------------------------
class Unfit(StudioError):
    """A sample the chosen row format cannot hold (tool use in alpaca, a weight-0 turn in sharegpt)."""


def _has_tool_use(messages: list[dict[str, Any]], tools: Any) -> bool:
    return bool(tools) or any(set(m) - {"role", "content"} for m in messages)


def _arguments(text: Any) -> Any:
    """A tool call's arguments (JSON text) as the object LLaMA-Factory's function_call value holds."""
    if isinstance(text, str):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def format_row(fmt: str, kind: str, system: str | None, messages: list[dict[str, Any]], text: str | None,
               tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One JSONL record in format `fmt` (see docs/contracts.md). Raw text is {"text"} in every format
    (and goes to the split's `.text` files). Tool use (curation.samples: assistant `tool_calls`,
    `tool` turns, `weight` 0, the sample's `tools`) passes through in OpenAI's shape in messages and
    openai rows; sharegpt rows get LLaMA-Factory's function_call / observation turns and `tools` as
    JSON text; raises Unfit for what a format cannot hold."""
    if kind == "text":
        return {"text": text or ""}
    if fmt in ("messages", "openai"):
        turns: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        for m in messages:
            turn = dict(m)  # role, content, and the tool fields when the turn has them
            if fmt == "openai" and turn.get("tool_calls") and not turn.get("content"):
                del turn["content"]  # OpenAI: an assistant turn that only calls tools has no content
            turns.append(turn)
        rec: dict[str, Any] = {"messages": turns}
        if tools:
            rec["tools"] = list(tools)
        return rec
    if fmt == "sharegpt":
        names = {"user": "human", "assistant": "gpt", "tool": "observation"}
        conv = [{"from": "system", "value": system}] if system else []
        for m in messages:
            if m.get("weight") == 0:
                raise Unfit("an assistant turn with weight 0 (kept, not trained): sharegpt rows cannot mark it")
            calls = m.get("tool_calls")
            if calls:
                if (m.get("content") or "").strip():
                    raise Unfit("an assistant turn with both text and tool calls: a sharegpt function_call turn holds only the calls")
                value = [{"name": c["function"]["name"], "arguments": _arguments(c["function"].get("arguments"))} for c in calls]
                conv.append({"from": "function_call", "value": json.dumps(value[0] if len(value) == 1 else value, ensure_ascii=False)})
            else:
                conv.append({"from": names[m["role"]], "value": m["content"]})
        rec = {"conversations": conv}
        if tools:
            rec["tools"] = json.dumps(list(tools), ensure_ascii=False)
        return rec
    if fmt == "alpaca":
        if _has_tool_use(messages, tools):
            raise Unfit("tool calls, tool turns or turn weights: alpaca rows cannot hold them")
        # The last user turn is the instruction, the last assistant turn the output; the turns
        # before are `history` pairs. (An imported alpaca `input` was joined into the user turn.)
        *earlier, last_user, last_answer = messages
        rec = {"instruction": last_user["content"], "input": "", "output": last_answer["content"]}
        if system:
            rec["system"] = system
        if earlier:
            rec["history"] = [[earlier[i]["content"], earlier[i + 1]["content"]] for i in range(0, len(earlier), 2)]
        return rec
    raise StudioError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}.")


# -- OpenAI's fine-tuning format ---------------------------------------------------------------------
OPENAI_ROLES = ("system", "user", "assistant", "tool")
_OPENAI_TOP = ("messages", "tools", "parallel_tool_calls")
_OPENAI_MESSAGE_KEYS = {"role", "content", "name", "weight", "tool_calls", "tool_call_id"}


def openai_problems(row: Any) -> list[str]:
    """What keeps `row` from being a line of an OpenAI chat fine-tuning file, one string a problem
    (empty when it is fine): a `messages` list of system/user/assistant/tool turns with string
    content, at least one assistant turn, `weight` 0 or 1 on assistant turns only, tool turns with
    a `tool_call_id`, and no top-level keys but messages, tools and parallel_tool_calls."""
    if not isinstance(row, dict):
        return [f"expected a JSON object, got {type(row).__name__}"]
    out = []
    extra = sorted(set(row) - set(_OPENAI_TOP))
    if extra:
        out.append(f"top-level key(s) {', '.join(extra)}: OpenAI accepts only {', '.join(_OPENAI_TOP)}")
    if "tools" in row and not isinstance(row["tools"], list):
        out.append("tools: expected a list of tool definitions")
    if "parallel_tool_calls" in row and not isinstance(row["parallel_tool_calls"], bool):
        out.append("parallel_tool_calls: expected true or false")
    msgs = row.get("messages")
    if not isinstance(msgs, list) or not msgs:
        out.append("messages: missing or empty; OpenAI needs a list of {role, content} turns")
        return out
    assistants = 0
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            out.append(f"{where}: expected an object with role and content")
            continue
        role = m.get("role")
        if role not in OPENAI_ROLES:
            out.append(f"{where}.role: {role!r} is not one of {', '.join(OPENAI_ROLES)}")
            continue
        extra = sorted(set(m) - _OPENAI_MESSAGE_KEYS)
        if extra:
            out.append(f"{where}: key(s) {', '.join(extra)} are not part of an OpenAI message")
        content, calls = m.get("content"), m.get("tool_calls")
        if "weight" in m:
            if role != "assistant":
                out.append(f"{where}.weight: on a {role} turn; OpenAI allows weight (0 or 1) on assistant turns only")
            elif type(m["weight"]) is not int or m["weight"] not in (0, 1):
                out.append(f"{where}.weight: {m['weight']!r}; use 0 (not trained) or 1 (trained)")
        if "tool_calls" in m and (role != "assistant" or not isinstance(calls, list) or not calls):
            out.append(f"{where}.tool_calls: only an assistant turn has tool_calls, a non-empty list")
        if role == "tool" and not isinstance(m.get("tool_call_id"), str):
            out.append(f"{where}: a tool turn needs the tool_call_id (a string) of the call it answers")
        if "tool_call_id" in m and role != "tool":
            out.append(f"{where}.tool_call_id: only a tool turn has one")
        if role == "assistant":
            assistants += 1
            if calls and not content:
                continue  # a turn that only calls tools needs no text
        if not isinstance(content, str):
            out.append(f"{where}.content: expected a string, got {'nothing' if content is None else type(content).__name__}")
        elif not content.strip():
            out.append(f"{where}.content: empty {role} turn")
    if not assistants:
        out.append("no assistant message: OpenAI needs at least one per example")
    return out


def check_openai_file(path: str | os.PathLike[str], sample_ids: list[int] | None = None) -> list[str]:
    """Check a JSONL file against OpenAI's chat fine-tuning format: one line per problem,
    `FILE:LINE (sample ID): problem` (the sample id from `sample_ids`, or from the manifest.json
    beside a split's chat file). Empty when the file can be uploaded as it is."""
    p = Path(path)
    if sample_ids is None:
        sample_ids = _manifest_ids(p)
    out = []
    with open(p, encoding="utf-8") as f:
        row_no = 0
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                out.append(f"{p.name}:{lineno}: empty line; OpenAI reads one JSON object a line")
                continue
            sid = sample_ids[row_no] if sample_ids and row_no < len(sample_ids) else None
            row_no += 1
            at = f"{p.name}:{lineno}" + (f" (sample {sid})" if sid is not None else "")
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                out.append(f"{at}: not valid JSON ({exc.msg})")
                continue
            out += [f"{at}: {problem}" for problem in openai_problems(row)]
    return out


def _manifest_ids(p: Path) -> list[int] | None:
    """The sample ids of a split's chat file `p`, line by line, from its manifest (None if none)."""
    try:
        m = read_manifest(p.parent)
        rows = split_rows(p.parent, m)
    except StudioError:
        return None
    for key, entry in (m.get("files") or {}).items():
        if isinstance(entry, dict) and entry.get("path") == p.name and entry.get("kind", "chat") == "chat":
            part = entry.get("part", key)
            return [int(r["sample_id"]) for r in (rows.get(part) or []) if r.get("sample_id") is not None][:entry.get("rows", 0)]
    return None


# -- which samples, which part ---------------------------------------------------------------------
def _check_args(val: float, fmt: str, include: str, target: str = "jsonl") -> None:
    if fmt not in FORMATS:
        raise StudioError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}.")
    if target not in TARGETS:
        raise StudioError(f"unknown export target {target!r}: use one of {', '.join(TARGETS)}.")
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
    ).fetchone() or (0, 0, 0, 0, 0)
    n = approved + (pending if include == "approved+pending" else 0)
    k = val_size(n, val)
    return {"rows": n, "train": n - k, "val": k, "seed": seed, "include": include,
            "excluded": {"rejected": rejected, "duplicates": dups,
                         "pending": 0 if include == "approved+pending" else pending}}


# -- containers: jsonl, parquet, hf ----------------------------------------------------------------
# The columns of each row shape, for DuckDB's read_json: explicit, so an empty file or a file where
# no row has `system` still gets every column (and Parquet/Arrow readers a fixed schema).
_COLUMNS = {
    "messages": {"messages": "STRUCT(role VARCHAR, content VARCHAR)[]"},
    "openai": {"messages": "STRUCT(role VARCHAR, content VARCHAR)[]"},
    "sharegpt": {"conversations": 'STRUCT("from" VARCHAR, value VARCHAR)[]'},
    "alpaca": {"instruction": "VARCHAR", "input": "VARCHAR", "output": "VARCHAR", "system": "VARCHAR",
               "history": "VARCHAR[][]"},
    "text": {"text": "VARCHAR"},
}
# messages/openai rows with tool use: each turn's tool fields (null where a turn has none) and the
# row's tools as JSON text
_TOOL_TURN = ("STRUCT(role VARCHAR, content VARCHAR, tool_calls STRUCT(id VARCHAR, \"type\" VARCHAR, "
              "\"function\" STRUCT(name VARCHAR, arguments VARCHAR))[], tool_call_id VARCHAR, name VARCHAR, weight INTEGER)[]")
_TOOL_COLUMNS = {"messages": {"messages": _TOOL_TURN, "tools": "VARCHAR"},
                 "openai": {"messages": _TOOL_TURN, "tools": "VARCHAR"},
                 "sharegpt": {"conversations": 'STRUCT("from" VARCHAR, value VARCHAR)[]', "tools": "VARCHAR"}}
_MAX_JSON_OBJECT = 1 << 30  # read_json's per-row limit (default 16 MB): a long raw text must fit


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _to_parquet(src: Path, dest: Path, shape: str, tool_use: bool = False) -> None:
    """Convert the JSONL `src` (rows of `shape`) to the Parquet file `dest` with DuckDB's COPY, in a
    private in-memory database (never the workspace's) with one thread: same rows, same bytes."""
    columns = _TOOL_COLUMNS[shape] if tool_use and shape in _TOOL_COLUMNS else _COLUMNS[shape]
    cols = "{" + ", ".join(f"{_sql_str(k)}: {_sql_str(v)}" for k, v in columns.items()) + "}"
    con = duckdb.connect()
    try:
        con.execute("SET threads = 1")
        con.execute("SET preserve_insertion_order = true")
        con.execute(
            f"COPY (SELECT * FROM read_json({_sql_str(str(src))}, format = 'newline_delimited', columns = {cols}, "
            f"maximum_object_size = {_MAX_JSON_OBJECT})) TO {_sql_str(str(dest))} (FORMAT parquet, COMPRESSION zstd)")
    finally:
        con.close()


def _datasets():
    """The `datasets` package, for the hf target only (importing it takes seconds and it is optional
    for curation)."""
    try:
        import datasets
    except ImportError:
        raise StudioError("--target hf needs the datasets package: pip install datasets "
                          "(or export with --target jsonl or parquet).") from None
    return datasets


def _save_hf(parquets: dict[str, Path], dest: Path) -> None:
    """Write the parts as a `datasets.DatasetDict` (`save_to_disk` layout, one shard a part) at `dest`.
    Each Dataset's fingerprint is its Parquet file's sha256, so state.json is reproducible too."""
    datasets = _datasets()
    import pyarrow.parquet as pq

    parts = {}
    for part, path in parquets.items():
        parts[part] = datasets.Dataset(pq.read_table(path), fingerprint=_sha256_file(path)[:16])
    quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # tqdm on stderr would draw over the studio's screen
    try:
        datasets.DatasetDict(parts).save_to_disk(str(dest), num_shards={p: 1 for p in parts})
    finally:
        if not quiet:
            datasets.enable_progress_bars()


def _hf_data_files(folder: Path) -> list[str]:
    """The Arrow files of a `save_to_disk` Dataset folder, in order (from its state.json)."""
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    return [f["filename"] for f in state["_data_files"]]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- writing ----------------------------------------------------------------------------------------
_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)")


def split_leftovers(splits_dir: Path) -> list[dict[str, Any]]:
    """Hidden folders an export leaves when its process dies: `.NAME.tmp-PID` (a split being
    written) and `.NAME.old-PID` (the split it was replacing, between the two renames). Each:
    path, name, kind ('tmp' or 'old'), pid, alive (that process still runs), bytes."""
    from .workspace import pid_alive

    found: list[dict[str, Any]] = []
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


class _Written:
    """The JSONL files of one export: `train`, `val` (chat rows) and, when the split holds raw
    text, `train.text` and `val.text`: rows, sha256, the keys the rows have, whether any chat row
    uses tools."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.sha256: dict[str, str] = {}
        self.keys: dict[str, set[str]] = {}
        self.tool_use = False


_PLAIN_TURN = '[{"role": "user", "content": '  # how every stored messages text starts (json.dumps)
# a turn key beside role and content, as json.dumps writes it (structural only: a quote in content is
# escaped); one regexp is one pass over the text where a contains() a key was four
_EXTRA_KEYS = '"(?:tool_calls|tool_call_id|name|weight)":'


def _line_sql(fmt: str, newline: bool = False) -> str:
    """SQL for the JSON line of a row that `_plain_sql` says SQL can write, equal to
    json.dumps(format_row(...), ensure_ascii=False) (and a newline after it with `newline`).
    Messages and text lines are one concat() (one copy of the text where each || made one); its
    parts are never null for such a row. Alpaca and sharegpt lines keep ||, null when a turn's
    content is (format_row writes those)."""
    sys_ = "(system IS NOT NULL AND system <> '')"
    js = json_string_sql
    nl = " || chr(10)" if newline else ""
    first, second = js("json_extract_string(m, '$[0].content')"), js("json_extract_string(m, '$[1].content')")
    if fmt in ("messages", "openai"):
        body = (f"CASE WHEN {sys_} THEN '[{{\"role\": \"system\", \"content\": ' || {js('system')} || '}}, ' || m[2:] "
                "ELSE m END")
        chat = f"concat('{{\"messages\": ', {body}, '}}'{nl})"
    elif fmt == "alpaca":
        chat = (f"'{{\"instruction\": ' || {first} || ', \"input\": \"\", \"output\": ' || {second} "
                f"|| CASE WHEN {sys_} THEN ', \"system\": ' || {js('system')} ELSE '' END || ('}}'{nl})")
    else:  # sharegpt
        chat = (f"'{{\"conversations\": [' || CASE WHEN {sys_} THEN '{{\"from\": \"system\", \"value\": ' || {js('system')} "
                f"|| '}}, ' ELSE '' END || '{{\"from\": \"human\", \"value\": ' || {first} "
                f"|| '}}, {{\"from\": \"gpt\", \"value\": ' || {second} || ('}}]}}'{nl})")
    text = "concat('{\"text\": ', " + js("coalesce(text, '')") + f", '}}'{nl})"
    return f"CASE WHEN kind = 'text' THEN {text} ELSE {chat} END"


def _plain_sql(fmt: str) -> str:
    """SQL: the row is one SQL writes (raw text, or a chat without tool use whose messages text is
    as json.dumps stores it; one user/assistant pair for alpaca and sharegpt rows, no blank turn
    for openai rows). The others go through format_row in Python, as before."""
    plain_chat = (f"kind = 'chat' AND tools IS NULL AND starts_with(m, '{_PLAIN_TURN}') "
                  f"AND NOT regexp_matches(m, '{_EXTRA_KEYS}')")
    if fmt in ("alpaca", "sharegpt"):
        plain_chat += " AND json_array_length(m) = 2"
    if fmt == "openai":
        plain_chat += (" AND NOT list_bool_or(list_transform(json_extract_string(m, '$[*].content'), "
                       f"lambda c: c IS NULL OR regexp_full_match(c, '[{SQL_WHITESPACE}]*')))")
    return f"(kind = 'text' OR ({plain_chat}))"


_FILES = ("train", "train.text", "val", "val.text")  # by file number: 2 * validation + raw text (file order)
_BATCH = 100_000  # rows an Arrow batch asks for
_RANGE = 100_000  # rows (ids) one query writes


def _picked(where: str, has_tools: bool) -> str:
    tools = "CAST(tools AS VARCHAR)" if has_tools else "NULL::VARCHAR"
    return (f"(SELECT id, kind, system, {messages_sql()} AS m, text, source_id, source_file, source_row, "
            f"{tools} AS tools FROM samples WHERE {where})")


def _stream_sql(fmt: str, picked: str) -> str:
    """SQL: the picked rows with ids in [?, ?] (parameters: picked's, low id, high id), with their
    JSON line when SQL writes it (`_plain_sql`; null for the rows format_row writes), whether they
    are raw text, and their lineage. No ORDER BY: sorting the ~900 bytes of each line cost more than
    building it; the rows come in table order, which `_Stream` checks (and sorts if it must)."""
    has_system = "system IS NOT NULL AND system <> ''" if fmt == "alpaca" else "FALSE"
    return f"""
        SELECT id AS sample_id, kind = 'text' AS is_text, CASE WHEN plain THEN {_line_sql(fmt, newline=True)} END AS line,
               source_id, source_file, CAST(source_row AS BIGINT) AS source_row,
               plain AND kind = 'chat' AND {has_system} AS has_system
        FROM (SELECT *, {_plain_sql(fmt)} AS plain FROM {picked} WHERE id BETWEEN ? AND ?)"""


# Arrow <-> numpy by hand: pyarrow's to_numpy and pa.array import pandas (a quarter of a second)
def _bits(arr: pa.Array, buffer: int) -> np.ndarray:
    n, skip = len(arr), arr.offset
    return np.unpackbits(np.frombuffer(arr.buffers()[buffer], dtype=np.uint8), bitorder="little")[skip:skip + n].view(bool)


def _bools(arr: pa.Array) -> np.ndarray:
    """A boolean Arrow array as numpy, null as false."""
    if not len(arr):
        return np.zeros(0, dtype=bool)
    values = _bits(arr, 1)
    return values & _bits(arr, 0) if arr.null_count else values


def _valid(arr: pa.Array) -> np.ndarray:
    """Which values of an Arrow array are not null, as numpy."""
    return _bits(arr, 0) if arr.null_count else np.ones(len(arr), dtype=bool)


def _line_buffer(arr: pa.Array, starts: np.ndarray, ends: np.ndarray) -> list[memoryview]:
    """The bytes of rows starts[i]:ends[i] of a string array, each run's values back to back (no
    Python string per row, no copy)."""
    if not len(arr):
        return []
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=width, count=len(arr) + 1, offset=arr.offset * np.dtype(width).itemsize)
    data = memoryview(arr.buffers()[2] or b"")
    return [data[lo:hi] for lo, hi in zip(offsets[starts].tolist(), offsets[ends].tolist())]


class _Stream:
    """The split's rows, range by range in id order: each row's file is decided here (validation
    ids, raw text), each file's runs of rows go to it as slices of the Arrow buffer through a
    HashedWriter; the rows SQL does not write get their line from format_row (the refused ones,
    with the line they would have had, go to `bad` and are left out); the written rows' lineage is
    collected."""

    def __init__(self, fmt: str, stage: Path, out: _Written, skip_invalid: bool, val_ids: np.ndarray) -> None:
        self.fmt, self.stage, self.out, self.skip_invalid = fmt, stage, out, skip_invalid
        self.val_ids = val_ids  # sorted
        self.writer = HashedWriter()
        self.seen = [0] * len(_FILES)  # rows of each file so far, refused ones included (their line)
        self.rows = [0] * len(_FILES)  # rows written
        self.bad: list[tuple[int, str, list[str], int]] = []  # (sample id, file, problems, line)
        self.lineage: list[pa.RecordBatch] = []  # the written rows' lineage, in id order
        self.files: list[np.ndarray] = []  # and their file numbers

    def batch(self, batch: pa.RecordBatch, rows: dict[int, tuple[Any, ...]]) -> None:
        """Write one batch of rows in id order (`rows`: what format_row needs of those SQL did not write)."""
        ids = _ints(batch.column("sample_id"))
        at = np.searchsorted(self.val_ids, ids)
        is_val = at < len(self.val_ids)
        is_val[is_val] = self.val_ids[at[is_val]] == ids[is_val]
        file = (is_val * 2 + _bools(batch.column("is_text"))).astype(np.uint8)
        lines, plain = batch.column("line"), None
        if lines.null_count:
            plain = _valid(lines)
            lines, keep = self._python_lines(batch, rows, lines, plain, file)
            if keep is not None:
                self._count(file)
                if not self.skip_invalid:
                    self.lineage, self.files = [], []  # the split will not be written: only the problems matter now
                if not self.skip_invalid or not keep.any():
                    return
                mask = _mask(keep)
                batch, lines, plain, file = batch.filter(mask), lines.filter(mask), plain[keep], file[keep]
                self._write(batch, lines, plain, file)
                return
        self._count(file)
        self._write(batch, lines, plain, file)

    def _count(self, file: np.ndarray) -> None:
        for i, n in enumerate(np.bincount(file, minlength=len(_FILES)).tolist()):
            self.seen[i] += n

    def _write(self, batch: pa.RecordBatch, lines: pa.Array, plain: np.ndarray | None, file: np.ndarray) -> None:
        if self.bad and not self.skip_invalid:
            return  # refused: nothing more is written
        n = len(file)
        starts = np.flatnonzero(np.concatenate(([True], file[1:] != file[:-1])))  # runs of rows of one file
        ends = np.append(starts[1:], n)
        run_file = file[starts]
        has_system = _bools(batch.column("has_system")) if self.fmt == "alpaca" else None
        for i, key in enumerate(_FILES):
            mine = run_file == i
            if not mine.any():
                continue
            if key not in self.writer:
                self.writer.open(key, self.stage / f"{key}.jsonl")
            self.writer.write(key, _line_buffer(lines, starts[mine], ends[mine]))
            in_file = file == i
            self.rows[i] += int(in_file.sum())
            keys = self.out.keys.setdefault(key, set())
            if key.endswith(".text"):
                keys.add("text")
            elif has_system is not None:
                if plain is None or plain[in_file].any():
                    keys.update(("instruction", "input", "output"))
                if has_system[in_file].any():
                    keys.add("system")
        # copies: a column of a batch DuckDB hands over keeps the whole batch, its lines too, alive
        # (~900 bytes a row until the end: 9 GB at 10M rows)
        cols = ["sample_id", "source_id", "source_file", "source_row"]
        self.lineage.append(pa.RecordBatch.from_arrays([pa.concat_arrays([batch.column(c)]) for c in cols], names=cols))
        self.files.append(file)

    def _python_lines(self, batch: pa.RecordBatch, rows: dict[int, tuple[Any, ...]], lines: pa.Array,
                      plain: np.ndarray, file: np.ndarray) -> tuple[pa.Array, np.ndarray | None]:
        """format_row (and OpenAI's check) for the batch's rows SQL did not write: the lines with
        theirs filled in, and which rows to keep (None when none was refused)."""
        fmt, out = self.fmt, self.out
        todo = np.flatnonzero(~plain)
        sample_ids = batch.column("sample_id").take(_arrow(todo)).to_pylist()
        filled: list[str | None] = [None] * batch.num_rows
        keep: np.ndarray | None = None
        position = np.zeros(0, dtype=np.int64)  # filled at the first refused row
        for i, sid in zip(todo.tolist(), sample_ids):
            kind, system, messages, text, tools = rows[sid]
            f = int(file[i])
            turns = json.loads(messages) if messages else []
            tools = json.loads(tools) if isinstance(tools, str) else tools
            try:
                rec = format_row(fmt, kind, system, turns, text, tools)
                problems = openai_problems(rec) if fmt == "openai" and kind != "text" else []
            except Unfit as exc:
                rec, problems = None, [f"{exc} (export --format messages or openai keeps it)"]
            if kind != "text" and _has_tool_use(turns, tools):
                out.tool_use = True
            if problems:
                if keep is None:
                    keep = np.ones(batch.num_rows, dtype=bool)
                    position = np.zeros(batch.num_rows, dtype=np.int64)  # each row's place in its file's rows here
                    for g in range(len(_FILES)):
                        position[file == g] = np.arange(1, int(np.count_nonzero(file == g)) + 1)
                keep[i] = False
                self.bad.append((int(sid), _FILES[f], problems, self.seen[f] + int(position[i])))  # the line it would have had
                continue
            out.keys.setdefault(_FILES[f], set()).update(rec or {})
            filled[i] = json.dumps(rec, ensure_ascii=False) + "\n"
        return pc.coalesce(lines, _strings(filled, lines.type)), keep

    def finish(self) -> None:
        """Close the files (creating those no row went to), and fill `out`."""
        has_text = self.seen[1] + self.seen[3] > 0
        keys = ["train", "val", *(["train.text", "val.text"] if has_text else [])]
        try:
            for key in keys:
                if key not in self.writer:
                    self.writer.open(key, self.stage / f"{key}.jsonl")
        except BaseException:
            self.writer.abort()
            raise
        sha = self.writer.close()
        out = self.out
        out.rows = {key: self.rows[_FILES.index(key)] for key in keys}
        out.sha256 = {key: sha[key] for key in keys}
        for key in keys:
            out.keys.setdefault(key, set())

    def lineage_table(self) -> pa.Table:
        """The lineage of the written rows (LINEAGE_COLUMNS), in file order."""
        schema = pa.schema([("sample_id", pa.int64()), ("source_id", pa.string()), ("source_file", pa.string()),
                            ("source_row", pa.int64())])
        table = pa.Table.from_batches([b.cast(schema) if b.schema != schema else b for b in self.lineage], schema=schema)
        number = np.concatenate([np.zeros(0, dtype=np.uint8), *self.files])
        order = np.argsort(number, kind="stable")  # file order; ids stay sorted in each file
        table = table.take(_arrow(order))
        number = _arrow(number[order])
        line = np.concatenate([np.arange(1, r + 1, dtype=np.int64) for r in self.rows])
        parts = _strings(tuple(key.split(".")[0] for key in _FILES))
        table = table.append_column("file", pc.take(_strings(_FILES), number))
        table = table.append_column("line", _arrow(line)).append_column("part", pc.take(parts, number))
        return table.select(list(LINEAGE_COLUMNS))


def _stream_files(con: duckdb.DuckDBPyConnection, fmt: str, where: str, params: list[Any], picked: str,
                  seed: int, k: int, stage: Path, out: _Written, skip_invalid: bool,
                  lineage_path: Path) -> tuple[list[tuple[int, str, list[str], int]], int, str]:
    """Write the split's JSONL files into `stage` (`_Stream`): one query per range of _RANGE ids,
    so DuckDB builds the next range's lines while the writer threads write this one's; then the
    lineage of the written rows to `lineage_path` while they finish (unless the export is refused). The refused rows (sample id, file, problems, line), the lineage's rows and sha256."""
    ids = np.sort(_ints(con.sql(f"SELECT id FROM samples WHERE {where}", params=params).to_arrow_table().column(0)))
    # validation: the k ids with the smallest sha256 of "SEED:ID" (`assign`, in SQL)
    val_ids = con.sql(f"SELECT id FROM samples WHERE {where} ORDER BY sha256(CAST(? AS VARCHAR) || ':' || "
                      "CAST(id AS VARCHAR)) LIMIT ?", params=[*params, str(seed), k]).to_arrow_table()
    sql = _stream_sql(fmt, picked)
    stream = _Stream(fmt, stage, out, skip_invalid, np.sort(_ints(val_ids.column(0))))
    try:
        for lo in range(0, len(ids), _RANGE):
            low, high = int(ids[lo]), int(ids[min(lo + _RANGE, len(ids)) - 1])
            table = con.sql(sql, params=[*params, low, high]).to_arrow_table(_BATCH)
            rows = _format_rows(con, picked, params, table) if table.column("line").null_count else {}
            for batch in _in_id_order(table):
                stream.batch(batch, rows)
        lineage_rows, lineage_sha = 0, ""
        if skip_invalid or not stream.bad:
            lineage_rows, lineage_sha = _write_lineage(stream.lineage_table(), lineage_path)
    except BaseException:
        stream.writer.abort()
        raise
    stream.finish()
    return stream.bad, lineage_rows, lineage_sha


def _in_id_order(table: pa.Table) -> list[pa.RecordBatch]:
    """The table's batches in id order. DuckDB's scan threads hand over each row group's rows in
    table order (ids ascending), but the row groups may come in any order: put the batches in order
    of their first id, and sort the rows themselves only if that is not enough."""
    batches = sorted((b for b in table.to_batches() if b.num_rows), key=lambda b: b.column(0)[0].as_py())
    ids = [_ints(b.column(0)) for b in batches]
    ordered = all((i[1:] > i[:-1]).all() for i in ids) and all(a[-1] < b[0] for a, b in zip(ids, ids[1:]))
    return batches if ordered else table.take(pc.sort_indices(table.column("sample_id"))).to_batches()


def _format_rows(con: duckdb.DuckDBPyConnection, picked: str, params: list[Any], table: pa.Table
                 ) -> dict[int, tuple[Any, ...]]:
    """What format_row needs of the rows of `table` that SQL did not write: id -> (kind, system,
    messages JSON text, text, tools JSON text)."""
    ids = pc.filter(table.column("sample_id"), table.column("line").is_null()).to_pylist()
    found = con.execute(f"SELECT id, kind, system, m, text, tools FROM {picked} WHERE id IN (SELECT unnest(?))",
                        [*params, ids]).fetchall()
    return {int(r[0]): r[1:] for r in found}


def _write_lineage(table: pa.Table, dest: Path) -> tuple[int, str]:
    pq.write_table(table, dest, compression="zstd")
    return table.num_rows, _sha256_file(dest)


def export_split(ws, name: str, *, val: float = 0.1, seed: int = 42, format: str = "messages",
                 include: str = "approved", force: bool = False, target: str = "jsonl",
                 skip_invalid: bool = False) -> Manifest:
    """Write `splits/NAME/` (chat rows in train/val, raw-text rows in train.text/val.text, as JSONL,
    Parquet or `save_to_disk` folders; manifest.json, dataset_info.json, README.md) and return its
    manifest. Raises StudioError when the split exists (unless `force`), when no sample qualifies,
    for a bad argument, and for rows the format cannot hold: with format openai those OpenAI would
    refuse, tool use in alpaca, ... (unless `skip_invalid`, which leaves them out)."""
    _check_name(name)
    _check_args(val, format, include, target)
    if target == "hf":
        _datasets()  # before anything is written: a one-line error when datasets is missing
    seed = int(seed)
    split_dir = ws.splits_dir / name
    if split_dir.exists() and not force:
        raise StudioError(f"split {name!r} already exists at {split_dir}. Pass --force to replace it, or choose another name.")
    con = ws.con
    where, params = _where(include)
    n = con.execute(f"SELECT count(*) FROM samples WHERE {where}", params).fetchall()[0][0]
    if not n:
        hint = ("approve samples first (studio approve ID..., or in the review screen) or pass --include approved+pending"
                if include == "approved" else "import samples and leave some not rejected")
        raise StudioError(f"no samples to export into {name!r}: none is {' or '.join(INCLUDES[include])} and not a duplicate; {hint}.")
    last_op = ws.last_operation_id()

    ws.splits_dir.mkdir(parents=True, exist_ok=True)
    remove_dead_temp_folders(ws.splits_dir)  # what killed exports left behind
    tmp = ws.splits_dir / f".{name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        stage = tmp if target == "jsonl" else tmp / ".jsonl"
        stage.mkdir(exist_ok=True)
        out = _Written()
        picked = _picked(where, "tools" in {d[0] for d in con.execute("SELECT * FROM samples LIMIT 0").description})
        bad, lineage_rows, lineage_sha = _stream_files(con, format, where, params, picked, seed, val_size(int(n), val),
                                                       stage, out, skip_invalid, tmp / LINEAGE_FILE)
        bad.sort(key=lambda b: b[0])  # by sample id, as the rows were picked
        if bad:
            problems = [f"{file.split('.')[0]}.jsonl:{line} (sample {sid}): {p}" for sid, file, ps, line in bad for p in ps]
            if not skip_invalid:
                shown = problems[:_SHOWN_PROBLEMS]
                more = f"\n  ... and {len(problems) - len(shown):,} more" if len(problems) > len(shown) else ""
                what = "OpenAI's fine-tuning format" if format == "openai" else f"the {format} row format"
                raise StudioError(
                    f"split {name!r} not written: {len(problems):,} problem(s) with {what}; fix or "
                    "reject those samples, or pass --skip-invalid to leave them out:\n  " + "\n  ".join(shown) + more)
            if len(bad) == n:
                raise StudioError(f"no rows left to export into {name!r}: --skip-invalid left out all {len(bad):,}; "
                                  "fix those samples or export another format.")
        skipped = [Skipped(sample_id=sid, part=file.split(".")[0], problems=ps) for sid, file, ps, _ in bad]
        files = _finish_files(out, stage, tmp, format, target)
        counts = {p: out.rows[p] + out.rows.get(f"{p}.text", 0) for p in PARTS}
        manifest = Manifest(
            name=name, format=format, target=target, created_by=_created_by(),
            settings=Settings(val=val, seed=seed, format=format, include=include, target=target,
                              skip_invalid=True if skip_invalid else None),
            last_operation_id=last_op, counts=counts,
            files={key: FileEntry(**{k: v for k, v in entry.items() if not k.startswith("_")}) for key, entry in files.items()},
            lineage=Lineage(path=LINEAGE_FILE, rows=lineage_rows, sha256=lineage_sha),
            skipped=skipped if skip_invalid else None)
        manifest.write(tmp)
        data = manifest.data
        lf = llamafactory_info(name, format, files, out.keys, out.tool_use)
        (tmp / "dataset_info.json").write_text(json.dumps(lf, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(split_readme(data, lf, out.tool_use), encoding="utf-8")
        if stage != tmp:
            shutil.rmtree(stage)
        old = None
        if split_dir.exists():
            old = ws.splits_dir / f".{name}.old-{os.getpid()}"
            os.replace(split_dir, old)
        os.replace(tmp, split_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest.at(split_dir)


def _finish_files(out: _Written, stage: Path, dest: Path, fmt: str, target: str) -> dict[str, dict[str, Any]]:
    """Put the staged JSONL files into the target's container in `dest`; the `files` entries of the
    manifest (keys starting with `_` are for dataset_info.json only: the file LLaMA-Factory reads)."""
    kinds = {key: ("text" if key.endswith(".text") else "chat") for key in out.rows}
    files: dict[str, dict[str, Any]] = {}
    if target == "jsonl":
        for key, kind in kinds.items():
            files[key] = {"path": f"{key}.jsonl", "rows": out.rows[key], "sha256": out.sha256[key],
                          "kind": kind, "part": key.split(".")[0], "_read": f"{key}.jsonl"}
        return files
    parquet_dir = dest if target == "parquet" else stage
    for key, kind in kinds.items():
        _to_parquet(stage / f"{key}.jsonl", parquet_dir / f"{key}.parquet", "text" if kind == "text" else fmt,
                    out.tool_use)
    if target == "parquet":
        for key, kind in kinds.items():
            files[key] = {"path": f"{key}.parquet", "rows": out.rows[key], "sha256": _sha256_file(dest / f"{key}.parquet"),
                          "kind": kind, "part": key.split(".")[0], "_read": f"{key}.parquet"}
        return files
    # hf: the chat parts as a DatasetDict at the split's root (dataset_dict.json, train/, val/), the
    # text parts as one in text/ (text/train/, text/val/)
    groups = {"chat": (stage / "hf-chat", ""), "text": (dest / "text", "text/")}
    for kind, (folder, prefix) in groups.items():
        keys = [k for k, v in kinds.items() if v == kind]
        if not keys:
            continue
        _save_hf({k.split(".")[0]: stage / f"{k}.parquet" for k in keys}, folder)
        for key in keys:
            part = key.split(".")[0]
            data_files = _hf_data_files(folder / part)
            digest = hashlib.sha256()
            for f in data_files:
                digest.update((folder / part / f).read_bytes())
            files[key] = {"path": f"{prefix}{part}", "rows": out.rows[key], "sha256": digest.hexdigest(),
                          "kind": kind, "part": part, "_read": f"{prefix}{part}/{data_files[0]}"}
    for item in sorted((stage / "hf-chat").iterdir()):
        os.replace(item, dest / item.name)
    return files


# -- what other trainers need beside the files ------------------------------------------------------
_LF_SHAREGPT_TAGS = {
    "messages": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                 "system_tag": "system"},
    "sharegpt": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "system_tag": "system"},
}
_LF_ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "system": "system",
                      "history": "history"}


def llamafactory_info(name: str, fmt: str, files: dict[str, dict[str, Any]], keys: dict[str, set[str]],
                      tool_use: bool = False) -> dict[str, Any]:
    """LLaMA-Factory's dataset_info.json for the split (`dataset_dir` = the split folder): `NAME` and
    `NAME_val` for the chat rows (sharegpt formatting for messages/openai/sharegpt rows, the system
    turn first; alpaca for alpaca rows), `NAME_text` and `NAME_text_val` for raw text (`--stage pt`).
    Empty files get no entry (LLaMA-Factory cannot load one); an alpaca column no JSONL row has is
    not named (LLaMA-Factory would look it up in every row). With tool use, sharegpt entries name
    the function_call / observation tags and the `tools` column (LLaMA-Factory reads tool calls
    from sharegpt rows only; messages rows keep them in `tool_calls`, which it does not read)."""
    out: dict[str, Any] = {}
    for key in ("train", "val", "train.text", "val.text"):
        entry = files.get(key)
        if not entry or not entry["rows"]:
            continue
        part, kind = entry["part"], entry["kind"]
        dataset = name + ("_text" if kind == "text" else "") + ("_val" if part == "val" else "")
        if kind == "text":
            out[dataset] = {"file_name": entry["_read"], "columns": {"prompt": "text"}}
        elif fmt == "alpaca":
            seen = keys[key] if entry["_read"].endswith(".jsonl") else set(_COLUMNS["alpaca"])
            out[dataset] = {"file_name": entry["_read"], "formatting": "alpaca",
                            "columns": {k: v for k, v in _LF_ALPACA_COLUMNS.items() if v in seen}}
        else:
            shape = "sharegpt" if fmt == "sharegpt" else "messages"
            columns = {"messages": next(iter(_COLUMNS[shape]))}
            tags = dict(_LF_SHAREGPT_TAGS[shape])
            if tool_use:
                seen = keys[key] if entry["_read"].endswith(".jsonl") else {"tools"}
                if "tools" in seen:
                    columns["tools"] = "tools"
                tags.update({"observation_tag": "observation", "function_tag": "function_call"} if shape == "sharegpt"
                            else {"observation_tag": "tool"})
            out[dataset] = {"file_name": entry["_read"], "formatting": "sharegpt", "columns": columns, "tags": tags}
    return out


def split_readme(data: dict[str, Any], lf: dict[str, Any], tool_use: bool = False) -> str:
    """The split's README.md: what it is, its files and counts, and how to train it with studio,
    LLaMA-Factory, axolotl and OpenAI. No timestamps (the split's bytes depend on its arguments only)."""
    name, fmt, target, s = data["name"], data["format"], data["target"], data["settings"]
    files = data["files"]
    rel = f"splits/{name}"
    total = sum(data["counts"].values())
    lines = [
        f"# Split `{name}`",
        "",
        f"Written by `studio export` ({data['created_by']}) at workspace operation {data['last_operation_id']}: "
        f"{total:,} samples, train {data['counts']['train']:,} and val {data['counts']['val']:,}. Format `{fmt}`, "
        f"target `{target}`, include `{s['include']}`, val {s['val']}, seed {s['seed']}. The same workspace and "
        "arguments give the same files; `manifest.json` holds each file's sha256 and `lineage.parquet` names each row's sample.",
        "",
        "| file | rows | what |",
        "| --- | ---: | --- |",
    ]
    shape = {"messages": "chat rows `{\"messages\": [{role, content}]}`",
             "openai": "chat rows in OpenAI's fine-tuning format `{\"messages\": [...]}`",
             "sharegpt": "chat rows `{\"conversations\": [{from, value}]}`",
             "alpaca": "chat rows `{instruction, input, output, system?, history?}`"}[fmt]
    for key in ("train", "val", "train.text", "val.text"):
        e = files.get(key)
        if e:
            what = shape if e["kind"] == "chat" else "raw text `{\"text\"}` (continued pretraining)"
            lines.append(f"| `{e['path']}` | {e['rows']:,} | {e['part']}: {what} |")
    lines += ["| `manifest.json` | | what the split is: settings, counts, files (docs/contracts.md) |",
              f"| `lineage.parquet` | {data['lineage']['rows']:,} | each row's part, file, line, sample id, source file and row |",
              "| `dataset_info.json` | | LLaMA-Factory's dataset index for this folder |", ""]
    if "train.text" in files:
        lines += ["Raw-text samples are kept out of the chat files: OpenAI's upload, LLaMA-Factory's chat loaders and "
                  "axolotl's chat_template reject a `{\"text\"}` row among chat rows. studio trains both.", ""]
    skipped = data.get("skipped") or []
    if skipped:
        lines += [f"{len(skipped):,} samples were left out (`--skip-invalid`): the `{fmt}` format could not hold them; "
                  "`manifest.json` `skipped` says why.", ""]
    lines += ["Paths below are relative to the workspace folder (the one holding `splits/`).", "",
              "## Train it", "", "### studio", "", "```sh", f"studio train {name} --plan", f"studio train {name}", "```", ""]
    lines += ["### LLaMA-Factory", ""]
    if lf:
        chat = [k for k in lf if not k.startswith(f"{name}_text")]
        lines += ["`dataset_info.json` here describes the files; point `dataset_dir` at this folder:", "", "```yaml",
                  f"dataset_dir: {rel}"]
        if chat:
            lines += [f"dataset: {name}"] + ([f"eval_dataset: {name}_val"] if f"{name}_val" in lf else [])
            lines += ["template: ...  # your model's template", "```", ""]
        else:
            lines += ["```", ""]
        if tool_use and fmt != "sharegpt":
            lines += ["This split has tool calls: LLaMA-Factory reads them from sharegpt rows (function_call and "
                      "observation turns), so export with `--format sharegpt` for it.", ""]
        if f"{name}_text" in lf:
            lines += [f"Raw text: `stage: pt` with `dataset: {name}_text`"
                      + (f" (and `eval_dataset: {name}_text_val`)." if f"{name}_text_val" in lf else "."), ""]
    lines += ["### axolotl", "", "```yaml", "datasets:"]
    lines += _axolotl(rel, fmt, target, files, "train")
    if files.get("val", {}).get("rows") or files.get("val.text", {}).get("rows"):
        lines += ["test_datasets:"] + _axolotl(rel, fmt, target, files, "val") + ["val_set_size: 0"]
    lines += ["```", ""]
    if fmt == "alpaca":
        lines += ["axolotl's `alpaca` type reads instruction, input and output only: export with `--format messages` "
                  "for multi-turn samples and system prompts.", ""]
    lines += ["### OpenAI", ""]
    if fmt in ("openai", "messages") and target == "jsonl":
        check = ("Every row was checked against OpenAI's fine-tuning format." if fmt == "openai" else
                 "Export with `--format openai` to have every row checked against OpenAI's fine-tuning format.")
        lines += [check, "", "```python", "from openai import OpenAI", "", "client = OpenAI()",
                  f"train = client.files.create(file=open(\"{rel}/train.jsonl\", \"rb\"), purpose=\"fine-tune\")"]
        args = "training_file=train.id"
        if files["val"]["rows"]:
            lines.append(f"val = client.files.create(file=open(\"{rel}/val.jsonl\", \"rb\"), purpose=\"fine-tune\")")
            args += ", validation_file=val.id"
        lines += [f"client.fine_tuning.jobs.create(model=\"gpt-4.1-mini-2025-04-14\", {args})", "```", ""]
    else:
        lines += [f"OpenAI takes JSONL chat rows: export with `studio export {name}-openai --format openai` "
                  "(target jsonl) and upload its train.jsonl.", ""]
    return "\n".join(lines)


def _axolotl(rel: str, fmt: str, target: str, files: dict[str, dict[str, Any]], part: str) -> list[str]:
    """axolotl `datasets:` entries for `part`: the chat file and the raw-text file."""
    out: list[str] = []
    for key, kind in ((part, "chat"), (f"{part}.text", "text")):
        e = files.get(key)
        if not e or not e["rows"]:
            continue
        if target == "hf":
            source = [f"  - path: {rel}" + ("/text" if kind == "text" else ""), f"    split: {part}"]
        else:
            source = [f"  - path: {rel}/{e['path']}", f"    ds_type: {'parquet' if target == 'parquet' else 'json'}"]
        if kind == "text":
            out += source + ["    type: completion", "    field: text"]
        elif fmt == "alpaca":
            out += source + ["    type: alpaca"]
        elif fmt == "sharegpt":
            out += source + ["    type: chat_template", "    field_messages: conversations",
                             "    message_property_mappings:", "      role: from", "      content: value",
                             "    roles:", "      user: [human]", "      assistant: [gpt]", "      system: [system]"]
        else:
            out += source + ["    type: chat_template", "    field_messages: messages",
                             "    message_property_mappings:", "      role: role", "      content: content"]
    return out


def list_splits(ws) -> list[dict[str, Any]]:
    """Existing splits, by name: name, format, target, counts, last_operation_id."""
    out: list[dict[str, Any]] = []
    if not ws.splits_dir.exists():
        return out
    for d in sorted(ws.splits_dir.iterdir()):
        if d.is_dir() and not d.name.startswith(".") and (d / "manifest.json").exists():
            try:
                m = read_manifest(d)
            except StudioError:
                continue
            out.append({"name": d.name, "format": m.get("format"), "target": m.get("target", "jsonl"),
                        "counts": m.get("counts"), "last_operation_id": m.get("last_operation_id"), "path": str(d)})
    return out
