"""Split directory or data file -> token ids and labels the trainer can use.

Reads a split directory (docs/contracts.md: manifest.json + train.jsonl + val.jsonl) or any
alpaca / messages / sharegpt / {"text"} JSONL or JSON file, and normalises every row to either
`{"messages": [...]}` or `{"text": "..."}`. Malformed rows raise DataError with file:line.

Tokenisation is ours rather than TRL's so that one code path gives the trainer its labels and the
planner its length histogram and EOS check:
- the chat template comes from the tokenizer; a tokenizer without one gets a ChatML template whose
  end-of-turn token is `<|im_end|>` when the vocabulary has it, else the tokenizer's EOS;
- with `assistant_only_loss` only the assistant turns' tokens keep their ids as labels, everything
  else is -100. Assistant spans are found by rendering the conversation prefix by prefix (prompt
  with the generation prompt, then with the answer) and mapping character offsets to tokens, so it
  works with any prefix-consistent template and no `{% generation %}` markers are needed;
- raw text (continued pretraining, or a {"text"} row in an SFT split) trains every token, EOS appended.
- tool use: rows in OpenAI's shape (assistant `tool_calls`, `tool` turns, the row's `tools`) or
  glaive / LLaMA-Factory's ShareGPT (`function_call` / `observation` turns, `tools` as a JSON string)
  are rendered through the template's own tools support (`apply_chat_template(..., tools=...)`);
  a template that drops the tools or the calls is refused in one line rather than trained on
  conversations with holes in them. The ChatML fallback renders them Hermes-style.
- an assistant turn with `weight` 0 (OpenAI) or `loss_weight` 0 (LLaMA-Factory v1) is rendered
  but never trained, whatever `assistant_only_loss` says.
TRL receives the resulting `input_ids`/`labels` columns as an already processed dataset and packs
them (best-fit, padding-free: position ids restart per sample, so samples never attend to each other).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from .errors import DataError

if TYPE_CHECKING:
    from .config import TrainConfig

ROLES = {"system", "user", "assistant", "tool"}
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "function_call": "tool_call", "observation": "tool", "tool": "tool"}


@dataclass
class SplitData:
    """The normalised samples of a split: each `{"messages": [...]}` or `{"text": "..."}`."""

    train: list[dict[str, Any]]
    val: list[dict[str, Any]]
    source: str
    format: str
    manifest: dict[str, Any] | None = None

    def all_texts(self) -> Iterable[str]:
        for s in self.train + self.val:
            if "text" in s:
                yield s["text"]
            else:
                for m in s["messages"]:
                    yield m["content"]
                    if m.get("tool_calls"):
                        yield json.dumps(m["tool_calls"], ensure_ascii=False)
                if s.get("tools"):
                    yield json.dumps(s["tools"], ensure_ascii=False)


# ---------------------------------------------------------------- reading

def _read_rows(path: Path) -> list[tuple[int, Any]]:
    """(line number, parsed row) for a JSONL file, or a JSON file holding a list of rows."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-save it as UTF-8") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        return [(i + 1, r) for i, r in enumerate(rows)]  # no line numbers inside one JSON value: use row numbers
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((lineno, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno}); fix or remove the line") from None
    return out


def normalise_row(row: Any, where: str) -> dict[str, Any]:
    """One row of any supported format -> {"messages": [...]} or {"text": ...}; DataError names `where`.
    curation/importers parse the same formats on import (training may not import curation); the
    test tests/test_row_formats_agree.py keeps a row meaning the same turns on both sides."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key, pair in (("messages", ("role", "content")), ("conversations", ("from", "value"))):
        if key not in row:
            continue
        turns = row[key]
        if not isinstance(turns, list) or not turns:
            raise DataError(f"{where}: {key}: expected a non-empty list of {{{pair[0]}, {pair[1]}}}")
        out = [_turn(m, f"{where}: {key}[{i}]") for i, m in enumerate(turns)]
        return _check_chat(out, where, _tools(row.get("tools"), where))
    if "instruction" in row or "output" in row:
        for key in ("instruction", "output"):
            if not isinstance(row.get(key), str):
                raise DataError(f"{where}: {key}: alpaca rows need string instruction and output, got {row.get(key)!r}")
        msgs = []
        if isinstance(row.get("system"), str) and row["system"]:
            msgs.append({"role": "system", "content": row["system"]})
        for j, pair in enumerate(row.get("history") or []):
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise DataError(f"{where}: history[{j}]: expected [user, assistant] strings")
            msgs += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
        prompt = row["instruction"]
        if isinstance(row.get("input"), str) and row["input"].strip():
            prompt = f"{prompt}\n\n{row['input']}"
        msgs += [{"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"]}]
        return _check_chat(msgs, where, _tools(row.get("tools"), where))
    if "text" in row:
        if not isinstance(row["text"], str) or not row["text"]:
            raise DataError(f"{where}: text: expected a non-empty string")
        return {"text": row["text"]}
    raise DataError(f"{where}: unknown row format (keys {sorted(row)[:6]}); expected messages, conversations, "
                    "instruction/output (alpaca) or text")


def _turn(m: Any, where: str) -> dict[str, Any]:
    """One turn, {"role", "content"} or {"from", "value"}, as a template takes it: tool calls as
    {"type": "function", "function": {"name", "arguments": a dict}} (what chat templates expect),
    `weight` kept only when 0."""
    role_key = "role" if isinstance(m, dict) and "role" in m else "from"
    content_key = "content" if isinstance(m, dict) and "content" in m else "value"
    raw = m.get(role_key) if isinstance(m, dict) else None
    role = raw if raw in ROLES else SHAREGPT_ROLES.get(raw) if isinstance(raw, str) else None
    content = m.get(content_key) if isinstance(m, dict) else None
    if isinstance(content, list):
        content = _text_parts(content, where)
    calls = m.get("tool_calls") if role == "assistant" else None
    if role is None or not (isinstance(content, str) or (content is None and calls)):
        raise DataError(f"{where}: expected {{\"role\": system|user|assistant|tool, \"content\": string}}, "
                        f"got {json.dumps(m, ensure_ascii=False)[:80]}")
    content = content or ""
    if role == "tool_call":  # ShareGPT function_call: JSON {"name", "arguments"} or a list of them
        try:
            calls = json.loads(content)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: a function_call turn holds JSON {{\"name\", \"arguments\"}} ({exc.msg})") from None
        role, content = "assistant", ""
        calls = calls if isinstance(calls, list) else [calls]
    out: dict[str, Any] = {"role": role, "content": content}
    if calls:
        out["tool_calls"] = [_call(c, where) for c in calls]
    if role == "tool":
        out.update({k: m[k] for k in ("tool_call_id", "name") if isinstance(m.get(k), str)})
    weight = m.get("weight", m.get("loss_weight"))
    if role == "assistant" and weight is not None and weight == 0:
        out["weight"] = 0
    return out


def _text_parts(parts: list[Any], where: str) -> str:
    texts = []
    for p in parts:
        kind = p.get("type") if isinstance(p, dict) else None
        if kind != "text" or not isinstance(p.get("text", p.get("value")), str):
            what = "image content" if kind in ("image", "image_url", "input_image") else f"a content part of type {kind!r}"
            raise DataError(f"{where}: {what} is not supported; only text parts can be trained")
        texts.append(p.get("text", p.get("value")))
    return "".join(texts)


def _call(c: Any, where: str) -> dict[str, Any]:
    f = c.get("function") if isinstance(c, dict) and isinstance(c.get("function"), dict) else c
    if not isinstance(f, dict) or not isinstance(f.get("name"), str):
        raise DataError(f"{where}: a tool call needs a function name, got {json.dumps(c, ensure_ascii=False)[:80]}")
    args = f.get("arguments", {})
    if isinstance(args, str):
        try:
            parsed = json.loads(args)
            args = parsed if isinstance(parsed, dict) else args
        except json.JSONDecodeError:
            pass  # arguments that are not JSON are rendered as the text they are
    out: dict[str, Any] = {"type": "function", "function": {"name": f["name"], "arguments": args}}
    if isinstance(c, dict) and isinstance(c.get("id"), str):
        out["id"] = c["id"]
    return out


def _tools(value: Any, where: str) -> list[dict[str, Any]]:
    """The row's tool schemas (a list, or a JSON string of one) in OpenAI's shape."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: tools: a JSON string that is not valid JSON ({exc.msg})") from None
    if not isinstance(value, list):
        raise DataError(f"{where}: tools: expected a list of function schemas")
    out = []
    for t in value:
        f = t.get("function") if isinstance(t, dict) and isinstance(t.get("function"), dict) else t
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            raise DataError(f"{where}: tools: each tool needs a function name, got {json.dumps(t, ensure_ascii=False)[:80]}")
        out.append({"type": "function", "function": f})
    return out


def _check_chat(msgs: list[dict[str, Any]], where: str, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    if not any(m["role"] == "assistant" for m in msgs):
        raise DataError(f"{where}: no assistant turn: nothing to learn from this sample")
    return {"messages": msgs, "tools": tools} if tools else {"messages": msgs}


def _detect_format(row: dict[str, Any]) -> str:
    for key, name in (("messages", "messages"), ("conversations", "sharegpt"), ("instruction", "alpaca"), ("text", "text")):
        if key in row:
            return name
    return "unknown"


def read_file(path: Path) -> list[dict[str, Any]]:
    return [normalise_row(row, f"{path}:{lineno}") for lineno, row in _read_rows(path)]


SPLIT_SCHEMA_VERSIONS = (1, 2, 3)  # manifest.json schema_version this reader knows (1: the key is absent)
LINEAGE_KEYS = ("sample_id", "source_id", "source_file", "source_row")  # one row's lineage (docs/contracts.md)


def split_lineage(p: Path, manifest: dict[str, Any] | None) -> dict[str, list[dict[str, Any]]]:
    """Each part's row lineage in file order ({part: [{sample_id, source_id, source_file,
    source_row}]}): inline `rows` (schema 1, 2) or the Parquet sidecar `lineage` names (schema 3);
    {} when the manifest has neither."""
    manifest = manifest or {}
    if isinstance(manifest.get("rows"), dict):
        return manifest["rows"]
    entry = manifest.get("lineage")
    if not isinstance(entry, dict):
        return {}
    path = p / str(entry.get("path") or "lineage.parquet")
    try:
        import pyarrow.parquet as pq

        rows = pq.read_table(path, columns=["part", *LINEAGE_KEYS]).to_pylist()
    except Exception as exc:  # missing, damaged
        raise DataError(f"{path}: cannot read the split's row lineage ({type(exc).__name__}: {str(exc)[:200]}); "
                        "copy the whole split folder or export it again") from None
    out: dict[str, list[dict[str, Any]]] = {"train": [], "val": []}
    for row in rows:
        out.setdefault(row.pop("part"), []).append(row)
    return out
_PART_ORDER = {"train": 0, "val": 1}


def _drop_nulls(value: Any) -> Any:
    """A Parquet/Arrow row as its JSON line had it: a column the line lacked reads back null."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _is_table(path: Path) -> bool:
    """A Parquet file or a `datasets` save_to_disk Dataset folder (rather than JSONL/JSON)."""
    return path.suffix.lower() == ".parquet" or (path.is_dir() and (path / "state.json").is_file())


def _read_table_rows(path: Path) -> list[tuple[int, Any]]:
    """(row number, row) of a Parquet file or a save_to_disk Dataset folder."""
    try:
        if path.is_dir():
            from datasets import load_from_disk

            rows = load_from_disk(str(path)).to_list()
        else:
            import pyarrow.parquet as pq

            rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # damaged, truncated, or not what its name says
        raise DataError(f"{path}: cannot read it ({type(exc).__name__}: {str(exc)[:200]}); export the split again") from None
    return [(i + 1, _drop_nulls(r)) for i, r in enumerate(rows)]


def _read_data_file(path: Path) -> list[dict[str, Any]]:
    """Normalised rows of a JSONL/JSON file, a Parquet file or a save_to_disk folder."""
    if _is_table(path):
        return [normalise_row(row, f"{path}:row {n}") for n, row in _read_table_rows(path)]
    return read_file(path)


def _file_format(path: Path) -> str:
    if _is_table(path):
        rows = _read_table_rows(path)
        return _detect_format(rows[0][1]) if rows and isinstance(rows[0][1], dict) else "unknown"
    return _first_format(path)


def _split_files(p: Path, manifest: dict[str, Any] | None) -> list[tuple[str, str, str, Path, int | None]]:
    """(files key, part, kind, path, rows the manifest promises) of a split directory: train before
    val, each part's chat file before its raw-text file (the order of the manifest's `rows`). From
    the manifest's `files` (schema 2 names part and kind; schema 1 had train and val, chat); without
    one, whichever of train.jsonl, train.parquet, train/ (save_to_disk) and their .text variants exist."""
    out = []
    files = (manifest or {}).get("files") or {}
    for key, entry in files.items():
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            part = entry.get("part") or key
            if part in _PART_ORDER:
                out.append((key, part, entry.get("kind") or "chat", p / entry["path"], entry.get("rows")))
    if not files:
        for part in _PART_ORDER:
            for kind, key, candidates in (("chat", part, (f"{part}.jsonl", f"{part}.parquet", part)),
                                          ("text", f"{part}.text", (f"{part}.text.jsonl", f"{part}.text.parquet", f"text/{part}"))):
                found = next((p / c for c in candidates if (p / c).is_file() or (p / c / "state.json").is_file()), None)
                if found is not None or kind == "chat":
                    out.append((key, part, kind, found or p / f"{part}.jsonl", None))
    out.sort(key=lambda e: (_PART_ORDER[e[1]], e[2] != "chat"))
    return out


def load_split(path: str | Path, *, val_fraction: float = 0.0, seed: int = 42) -> SplitData:
    """Read a split directory or a single data file into normalised samples.

    A split directory (docs/contracts.md) is read through its manifest's `files`: chat and raw-text
    files, JSONL, Parquet or save_to_disk folders; each part's samples are its chat rows, then its
    raw-text rows (the manifest's `rows` order). Manifest schema versions 1, 2 and 3 are read; for
    schema 3 the returned manifest gets `rows` from the lineage sidecar (lineage.parquet)."""
    p = Path(path)
    if p.is_dir():
        mpath = p / "manifest.json"
        manifest = None
        if mpath.is_file():
            try:
                manifest = json.loads(mpath.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise DataError(f"{mpath}:{exc.lineno}: not valid JSON ({exc.msg}); re-export the split") from None
        version = (manifest or {}).get("schema_version", 1)
        if manifest is not None and version not in SPLIT_SCHEMA_VERSIONS:
            known = ", ".join(map(str, SPLIT_SCHEMA_VERSIONS[:-1])) + f" and {SPLIT_SCHEMA_VERSIONS[-1]}"
            raise DataError(f"{mpath}: schema_version {version!r}: this trainer reads split manifests of schema "
                            f"{known}; update studio here, or export the split "
                            "with the studio this trainer came with")
        entries = _split_files(p, manifest)
        first = next((e for e in entries if e[1] == "train"), None)
        if first is None or not first[3].exists():
            name = first[3].name if first else "train.jsonl"
            raise DataError(f"{p}: no {name}: not a split directory (expected manifest.json, train.jsonl, val.jsonl)")
        parts: dict[str, list[dict[str, Any]]] = {"train": [], "val": []}
        for key, part, _kind, fpath, want in entries:
            if not fpath.exists():
                if want:
                    raise DataError(f"{p}: {fpath.relative_to(p)} is missing but {mpath.name} lists {want} rows in it; "
                                    "copy the whole split folder (subfolders included) or export it again")
                continue
            rows = _read_data_file(fpath)
            if want is not None and want != len(rows):
                raise DataError(f"{mpath}: files.{key}.rows says {want} but {fpath.name} has {len(rows)} rows; "
                                "the split was changed after export: export it again")
            parts[part] += rows
        fmt = (manifest or {}).get("format") or _file_format(first[3])
        if manifest is not None and "rows" not in manifest and "lineage" in manifest:
            manifest = {**manifest, "rows": split_lineage(p, manifest)}  # readers find each row's lineage in `rows`
        return SplitData(parts["train"], parts["val"], str(p), fmt, manifest)
    if not p.is_file():
        raise DataError(f"{p}: no such split directory or data file")
    rows = _read_data_file(p)
    if val_fraction > 0 and len(rows) > 1:
        idx = list(range(len(rows)))
        random.Random(seed).shuffle(idx)
        n_val = max(1, int(round(len(rows) * val_fraction)))
        val_idx = set(idx[:n_val])
        train = [r for i, r in enumerate(rows) if i not in val_idx]
        val = [r for i, r in enumerate(rows) if i in val_idx]
    else:
        train, val = rows, []
    return SplitData(train, val, str(p), _file_format(p))


def _first_format(path: Path) -> str:
    rows = _read_rows(path)
    return _detect_format(rows[0][1]) if rows and isinstance(rows[0][1], dict) else "unknown"


# ---------------------------------------------------------------- templates

def chatml_template(end_token: str) -> str:
    """ChatML, the fallback for tokenizers without a chat template; `end_token` closes every turn.
    Tool use Hermes-style (as Qwen2.5 renders it): the tools in a system block, each call as
    <tool_call>{"name", "arguments"}</tool_call>, results as `tool` turns. A conversation without
    tools renders exactly as plain ChatML."""
    end = end_token.replace("'", "\\'")
    return (
        "{% if tools %}{{ '<|im_start|>system\\n' }}{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\\n\\n' }}{% endif %}"
        "{{ '# Tools\\n\\nYou may call one or more functions. Function signatures:\\n<tools>' }}"
        "{% for tool in tools %}{{ '\\n' + (tool | tojson) }}{% endfor %}"
        "{{ '\\n</tools>\\nFor each call, reply with <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call>." + end + "' + '\\n' }}{% endif %}"
        "{% for message in messages %}{% if not (tools and loop.first and message['role'] == 'system') %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + (message['content'] or '') }}"
        "{% for call in message['tool_calls'] or [] %}{% set f = call['function'] if call['function'] is defined else call %}"
        "{{ ('\\n' if (message['content'] or not loop.first) else '') + '<tool_call>\\n' + ({'name': f['name'], 'arguments': f['arguments']} | tojson) + '\\n</tool_call>' }}"
        "{% endfor %}{{ '" + end + "' + '\\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )


def ensure_chat_template(tokenizer: Any) -> bool:
    """Give the tokenizer a ChatML template if it has none; True when the fallback was installed."""
    if getattr(tokenizer, "chat_template", None):
        return False
    end = "<|im_end|>" if "<|im_end|>" in tokenizer.get_vocab() else (tokenizer.eos_token or "</s>")
    tokenizer.chat_template = chatml_template(end)
    return True


def _render(tokenizer: Any, messages: list[dict[str, Any]], add_generation_prompt: bool,
            tools: list[dict[str, Any]] | None = None) -> str:
    clean = [{k: v for k, v in m.items() if k != "weight"} if "weight" in m else m for m in messages]
    if tools:
        return tokenizer.apply_chat_template(clean, tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt)
    return tokenizer.apply_chat_template(clean, tokenize=False, add_generation_prompt=add_generation_prompt)


# A conversation with a tool, a call and a result: a template that supports tools shows all three.
_PROBE_TOOLS = [{"type": "function", "function": {"name": "probe_tool_q7", "description": "a probe",
                                                  "parameters": {"type": "object", "properties": {}}}}]
_PROBE = [{"role": "user", "content": "probe question"},
          {"role": "assistant", "content": "", "tool_calls": [
              {"type": "function", "function": {"name": "probe_call", "arguments": {"probe_arg_q7": 1}}}]},
          {"role": "tool", "content": "probe_result_q7", "name": "probe_call"},
          {"role": "assistant", "content": "probe answer"}]
_NEEDLES = {"tools": ("probe_tool_q7", "the tools"), "calls": ("probe_arg_q7", "the assistant's tool calls"),
            "results": ("probe_result_q7", "the tool results")}


def tool_support_problem(tokenizer: Any, needs: Iterable[str] = ("tools", "calls", "results")) -> str | None:
    """Why the tokenizer's chat template cannot train tool use (`needs`: tools, calls, results), in
    one line; None when it renders all of them."""
    template = getattr(tokenizer, "chat_template", None)
    cache = tokenizer.__dict__.setdefault("_studio_tool_probe", {})
    if template not in cache:
        try:
            cache[template] = tokenizer.apply_chat_template(_PROBE, tools=_PROBE_TOOLS, tokenize=False)
        except Exception as exc:  # jinja errors: a template that cannot take these turns at all
            cache[template] = exc
    rendered = cache[template]
    if isinstance(rendered, Exception):
        why = f"fails on tool turns ({type(rendered).__name__}: {str(rendered).splitlines()[0] if str(rendered) else ''})"
    else:
        dropped = [what for key, (needle, what) in _NEEDLES.items() if key in needs and needle not in rendered]
        if not dropped:
            return None
        why = f"drops {' and '.join(dropped)}"
    return (f"this tokenizer's chat template cannot render tool use (it {why}), so tool-use samples would be trained "
            f"with holes in them; use a base whose template supports tools (e.g. Qwen2.5-Instruct) or leave the "
            f"tool-use samples out of the split")


def _tool_needs(sample: dict[str, Any]) -> set[str]:
    needs = {"tools"} if sample.get("tools") else set()
    for m in sample.get("messages", ()):
        if m.get("tool_calls"):
            needs.add("calls")
        if m["role"] == "tool":
            needs.add("results")
    return needs


def _turn_spans(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
                ) -> tuple[str, list[tuple[int, int]], list[tuple[int, int]]]:
    """The rendered conversation, the spans of the assistant turns to train, and those of the
    assistant turns with weight 0 (rendered, never trained)."""
    full = _render(tokenizer, messages, False, tools)
    trained: list[tuple[int, int]] = []
    untrained: list[tuple[int, int]] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], True, tools) if i else ""
        upto = _render(tokenizer, messages[: i + 1], False, tools)
        if not full.startswith(upto) or not upto.startswith(before):
            raise DataError("the chat template renders a conversation differently from its prefixes (it may drop "
                            "earlier turns' content), so assistant tokens cannot be located; set "
                            "data.assistant_only_loss=false or use a prefix-consistent template")
        (untrained if m.get("weight") == 0 else trained).append((len(before), len(upto)))
    return full, trained, untrained


def assistant_char_spans(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
                         ) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the [start, end) character span of each assistant turn to
    train (a turn with weight 0 is left out).

    Each turn's span runs from the end of the prompt rendered with the generation prompt to the end
    of the prefix rendered with that answer, so it includes the template's end-of-turn token.
    """
    full, trained, _ = _turn_spans(tokenizer, messages, tools)
    return full, trained


@dataclass
class Tokenised:
    input_ids: list[int]
    labels: list[int]
    full_length: int  # before truncation
    # per assistant turn (or per text sample): the ids of its trained span, to check it ends with EOS
    turn_ends: list[list[int]] = field(default_factory=list)


def tokenise_sample(tokenizer: Any, sample: dict[str, Any], *, assistant_only: bool = True,
                    max_length: int | None = None) -> Tokenised:
    """input_ids and labels (-100 where no loss) for one normalised sample, cut to max_length."""
    if "text" in sample:
        ids = tokenizer(sample["text"], add_special_tokens=True)["input_ids"]
        eos = tokenizer.eos_token_id
        if eos is not None and (not ids or ids[-1] != eos):
            ids = ids + [eos]
        labels = list(ids)
        turn_ends = [ids[-3:]]
    else:
        needs = _tool_needs(sample)
        if needs and (problem := tool_support_problem(tokenizer, needs)):
            raise DataError(problem)
        text, spans, unweighted = _turn_spans(tokenizer, sample["messages"], sample.get("tools"))
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        offsets = enc["offset_mapping"]
        in_span = [any(s <= a < e for s, e in spans) for a, _ in offsets]
        skip = [any(s <= a < e for s, e in unweighted) for a, _ in offsets]
        labels = [t if (keep or not assistant_only) and not off else -100 for t, keep, off in zip(ids, in_span, skip)]
        turn_ends = []
        for s, e in spans:
            turn = [t for t, (a, _) in zip(ids, offsets) if s <= a < e]
            turn_ends.append(turn)
    full = len(ids)
    if max_length is not None and len(ids) > max_length:
        ids, labels = ids[:max_length], labels[:max_length]
    return Tokenised(ids, labels, full, turn_ends)


def eos_ids(tokenizer: Any, extra: Iterable[int] = ()) -> set[int]:
    """Token ids that end generation: the tokenizer's EOS plus the model's generation_config ones."""
    ids = {i for i in extra if i is not None}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def turn_stops(turn: list[int], stop_ids: set[int]) -> bool:
    """True when a trained assistant span contains a stop token (the template may add a newline after it)."""
    return any(t in stop_ids for t in turn[-3:])


def tokenise_all(tokenizer: Any, samples: list[dict[str, Any]], *, kind: str, assistant_only: bool,
                 max_length: int) -> list[Tokenised]:
    out = []
    for s in samples:
        if kind == "text" and "messages" in s:
            s = {"text": "\n".join(m["content"] or "" for m in s["messages"])}
        out.append(tokenise_sample(tokenizer, s, assistant_only=assistant_only, max_length=max_length))
    return out


def to_dataset(tokenised: list[Tokenised]):
    """A `datasets.Dataset` with input_ids and labels; samples with nothing to learn are dropped."""
    from datasets import Dataset

    keep = [t for t in tokenised if any(x != -100 for x in t.labels[1:])]
    return Dataset.from_dict({"input_ids": [t.input_ids for t in keep], "labels": [t.labels for t in keep]})


def build_datasets(tokenizer: Any, cfg: TrainConfig, split: SplitData | None = None):
    """(train_dataset, eval_dataset or None) for a TrainConfig."""
    split = split or load_split(cfg.data.split, val_fraction=cfg.data.val_fraction_if_missing, seed=cfg.train.seed)
    if not split.train:
        raise DataError(f"{split.source}: the training split has no rows")
    ensure_chat_template(tokenizer)
    def tokenise(samples: list[dict[str, Any]]) -> list[Tokenised]:
        return tokenise_all(tokenizer, samples, kind=cfg.data.kind, assistant_only=cfg.data.assistant_only_loss,
                            max_length=cfg.data.max_length)

    train = to_dataset(tokenise(split.train))
    if len(train) == 0:
        raise DataError(f"{split.source}: no training sample keeps a trained token after cutting to "
                        f"max_length {cfg.data.max_length}; raise data.max_length")
    val = to_dataset(tokenise(split.val)) if split.val else None
    return train, (val if val is not None and len(val) else None)
