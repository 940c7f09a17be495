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
TRL receives the resulting `input_ids`/`labels` columns as an already processed dataset and packs
them (best-fit, padding-free: position ids restart per sample, so samples never attend to each other).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .errors import DataError

ROLES = {"system", "user", "assistant"}
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


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
    """One row of any supported format -> {"messages": [...]} or {"text": ...}; DataError names `where`."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if "messages" in row:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise DataError(f"{where}: messages: expected a non-empty list of {{role, content}}")
        out = []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise DataError(f"{where}: messages[{i}]: expected {{\"role\": system|user|assistant, \"content\": string}}, got {json.dumps(m, ensure_ascii=False)[:80]}")
            out.append({"role": m["role"], "content": m["content"]})
        return _check_chat(out, where)
    if "conversations" in row:
        conv = row["conversations"]
        if not isinstance(conv, list) or not conv:
            raise DataError(f"{where}: conversations: expected a non-empty list of {{from, value}}")
        out = []
        for i, m in enumerate(conv):
            role = SHAREGPT_ROLES.get(m.get("from")) if isinstance(m, dict) else None
            if role is None or not isinstance(m.get("value"), str):
                raise DataError(f"{where}: conversations[{i}]: expected {{\"from\": system|human|gpt, \"value\": string}}, got {json.dumps(m, ensure_ascii=False)[:80]}")
            out.append({"role": role, "content": m["value"]})
        return _check_chat(out, where)
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
        return _check_chat(msgs, where)
    if "text" in row:
        if not isinstance(row["text"], str) or not row["text"]:
            raise DataError(f"{where}: text: expected a non-empty string")
        return {"text": row["text"]}
    raise DataError(f"{where}: unknown row format (keys {sorted(row)[:6]}); expected messages, conversations, "
                    "instruction/output (alpaca) or text")


def _check_chat(msgs: list[dict[str, str]], where: str) -> dict[str, Any]:
    if not any(m["role"] == "assistant" for m in msgs):
        raise DataError(f"{where}: no assistant turn: nothing to learn from this sample")
    return {"messages": msgs}


def _detect_format(row: dict[str, Any]) -> str:
    for key, name in (("messages", "messages"), ("conversations", "sharegpt"), ("instruction", "alpaca"), ("text", "text")):
        if key in row:
            return name
    return "unknown"


def read_file(path: Path) -> list[dict[str, Any]]:
    return [normalise_row(row, f"{path}:{lineno}") for lineno, row in _read_rows(path)]


def load_split(path: str | Path, *, val_fraction: float = 0.0, seed: int = 42) -> SplitData:
    """Read a split directory or a single data file into normalised samples."""
    p = Path(path)
    if p.is_dir():
        mpath = p / "manifest.json"
        manifest = None
        if mpath.is_file():
            try:
                manifest = json.loads(mpath.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise DataError(f"{mpath}:{exc.lineno}: not valid JSON ({exc.msg}); re-export the split") from None
        files = (manifest or {}).get("files", {})
        tpath = p / files.get("train", {}).get("path", "train.jsonl")
        vpath = p / files.get("val", {}).get("path", "val.jsonl")
        if not tpath.is_file():
            raise DataError(f"{p}: no {tpath.name}: not a split directory (expected manifest.json, train.jsonl, val.jsonl)")
        train = read_file(tpath)
        val = read_file(vpath) if vpath.is_file() else []
        for name, rows in (("train", train), ("val", val)):
            want = files.get(name, {}).get("rows")
            if want is not None and want != len(rows):
                raise DataError(f"{mpath}: files.{name}.rows says {want} but {name}.jsonl has {len(rows)} rows; "
                                "the split was changed after export: export it again")
        fmt = (manifest or {}).get("format") or _first_format(tpath)
        return SplitData(train, val, str(p), fmt, manifest)
    if not p.is_file():
        raise DataError(f"{p}: no such split directory or data file")
    rows = read_file(p)
    if val_fraction > 0 and len(rows) > 1:
        idx = list(range(len(rows)))
        random.Random(seed).shuffle(idx)
        n_val = max(1, int(round(len(rows) * val_fraction)))
        val_idx = set(idx[:n_val])
        train = [r for i, r in enumerate(rows) if i not in val_idx]
        val = [r for i, r in enumerate(rows) if i in val_idx]
    else:
        train, val = rows, []
    return SplitData(train, val, str(p), _first_format(p))


def _first_format(path: Path) -> str:
    rows = _read_rows(path)
    return _detect_format(rows[0][1]) if rows and isinstance(rows[0][1], dict) else "unknown"


# ---------------------------------------------------------------- templates

def chatml_template(end_token: str) -> str:
    """ChatML, the fallback for tokenizers without a chat template; `end_token` closes every turn."""
    return (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '"
        + end_token + "' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )


def ensure_chat_template(tokenizer: Any) -> bool:
    """Give the tokenizer a ChatML template if it has none; True when the fallback was installed."""
    if getattr(tokenizer, "chat_template", None):
        return False
    end = "<|im_end|>" if "<|im_end|>" in tokenizer.get_vocab() else (tokenizer.eos_token or "</s>")
    tokenizer.chat_template = chatml_template(end)
    return True


def _render(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def assistant_char_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the [start, end) character span of each assistant turn.

    Each turn's span runs from the end of the prompt rendered with the generation prompt to the end
    of the prefix rendered with that answer, so it includes the template's end-of-turn token.
    """
    full = _render(tokenizer, messages, False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], True) if i else ""
        upto = _render(tokenizer, messages[: i + 1], False)
        if not full.startswith(upto) or not upto.startswith(before):
            raise DataError("the chat template renders a conversation differently from its prefixes (it may drop "
                            "earlier turns' content), so assistant tokens cannot be located; set "
                            "data.assistant_only_loss=false or use a prefix-consistent template")
        spans.append((len(before), len(upto)))
    return full, spans


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
        text, spans = assistant_char_spans(tokenizer, sample["messages"])
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        offsets = enc["offset_mapping"]
        in_span = [any(s <= a < e for s, e in spans) for a, _ in offsets]
        labels = [t if (keep or not assistant_only) else -100 for t, keep in zip(ids, in_span)]
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
            s = {"text": "\n".join(m["content"] for m in s["messages"])}
        out.append(tokenise_sample(tokenizer, s, assistant_only=assistant_only, max_length=max_length))
    return out


def to_dataset(tokenised: list[Tokenised]):
    """A `datasets.Dataset` with input_ids and labels; samples with nothing to learn are dropped."""
    from datasets import Dataset

    keep = [t for t in tokenised if any(x != -100 for x in t.labels[1:])]
    return Dataset.from_dict({"input_ids": [t.input_ids for t in keep], "labels": [t.labels for t in keep]})


def build_datasets(tokenizer: Any, cfg: Any, split: SplitData | None = None):
    """(train_dataset, eval_dataset or None) for a TrainConfig."""
    split = split or load_split(cfg.data.split, val_fraction=cfg.data.val_fraction_if_missing, seed=cfg.train.seed)
    if not split.train:
        raise DataError(f"{split.source}: the training split has no rows")
    ensure_chat_template(tokenizer)
    kw = dict(kind=cfg.data.kind, assistant_only=cfg.data.assistant_only_loss, max_length=cfg.data.max_length)
    train = to_dataset(tokenise_all(tokenizer, split.train, **kw))
    if len(train) == 0:
        raise DataError(f"{split.source}: no training sample keeps a trained token after cutting to "
                        f"max_length {cfg.data.max_length}; raise data.max_length")
    val = to_dataset(tokenise_all(tokenizer, split.val, **kw)) if split.val else None
    return train, (val if val is not None and len(val) else None)
