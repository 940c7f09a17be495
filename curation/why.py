"""Why did the fine-tune answer that? The training rows most like an eval answer, and their story.

An eval item shows a prompt and a model's answer; the usual explanation of a surprising answer is a
training row that said nearly the same thing. `nearest_training_rows` finds the k rows of a split's
train part most similar to a query (the item's last user prompt plus the model's answer) with the
dedup engine's own measure: shingles and datasketch-compatible MinHash (curation/shingles.py). The
signatures of the train rows that share a shingle with the query rank them by estimated Jaccard
(share of equal slots); the rows within MinHash's error of the k-th best (all of them when the query
is short or few rows share a shingle) are then ranked by exact shingle-set Jaccard, so the order
never rests on MinHash noise. No model, no embedding and nothing cached: 5,000 rows of about 100
words take about 0.3 s on one core (shingling is most of it).

Each row then gets its curation history from the workspace, in a handful of batched queries: source
file and line, status, quality flags, duplicate cluster, edits and augmentation lineage. A row whose
sample id is not in this workspace (the split was exported elsewhere) comes back with history None.

Role marks: `query_text(prompt, answer)` builds the query the way dedup builds whole samples
(curation.normalize.marked_text), so prompt shingles only meet instruction shingles and answer
shingles only meet answer shingles. A query without role marks is compared with unmarked
"instruction\\nanswer" texts instead.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import normalize as norm
from . import shingles as sh
from .errors import StudioError

if TYPE_CHECKING:
    from .workspace import Workspace

DEFAULT_K = 5
NUM_PERM = 128           # the dedup default (curation.dedup.params.DEFAULT_NUM_PERM)
SHORTLIST = 64           # up to this many rows sharing a shingle (or 8 * k) are all compared exactly
SHORT_QUERY = 24         # a query with fewer distinct shingles: every row sharing one is compared exactly


# -- the query ------------------------------------------------------------------------------------
def query_text(prompt: str, answer: str = "") -> str:
    """The query for a prompt and an answer: role-marked like a dedup'd sample."""
    turns = [{"role": "user", "content": prompt or ""}]
    if answer:
        turns.append({"role": "assistant", "content": answer})
    return norm.marked_text(turns)


def item_query(item: dict[str, Any], model: str | None = None) -> str:
    """The query for one line of an eval's items.jsonl: its last user prompt plus `model`'s answer
    (no answer when `model` is None or did not answer)."""
    prompt = next((m.get("content") or "" for m in reversed(item.get("messages") or []) if m.get("role") == "user"), "")
    answer = (((item.get("answers") or {}).get(model) or {}).get("text") or "") if model else ""
    return query_text(prompt, answer)


# -- the split's train rows -----------------------------------------------------------------------
def _turns(rec: dict[str, Any]) -> tuple[list[dict[str, str]], str | None]:
    """(messages, text) of one JSONL row in any split format (docs/contracts.md)."""
    if isinstance(rec.get("messages"), list):
        return [m for m in rec["messages"] if isinstance(m, dict)], None
    if isinstance(rec.get("conversations"), list):
        roles = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
        return [{"role": roles.get(t.get("from") or "", "system"), "content": t.get("value") or ""}
                for t in rec["conversations"] if isinstance(t, dict)], None
    if "instruction" in rec or "output" in rec:
        msgs = []
        for pair in rec.get("history") or []:
            if isinstance(pair, list) and len(pair) == 2:
                msgs += [{"role": "user", "content": str(pair[0])}, {"role": "assistant", "content": str(pair[1])}]
        inp = rec.get("input") or ""
        user = str(rec.get("instruction") or "") + (f"\n\n{inp}" if str(inp).strip() else "")
        return msgs + [{"role": "user", "content": user}, {"role": "assistant", "content": str(rec.get("output") or "")}], None
    return [], str(rec.get("text") or "")


def _pair(msgs: list[dict[str, str]], text: str | None) -> tuple[str, str]:
    """(instruction, answer): the last user turn and the first assistant turn after it (a raw-text
    row: no instruction, its text as the answer)."""
    if text is not None:
        return "", text
    last = max((i for i, m in enumerate(msgs) if m.get("role") == "user"), default=-1)
    answer = next((m.get("content") or "" for m in msgs[last + 1:] if m.get("role") == "assistant"), "")
    return (msgs[last].get("content") or "") if last >= 0 else "", answer


def read_train_rows(split: str | Path) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """(instruction, answer) of every train row of a split directory (or of a data file), and each
    row's manifest entry ({} where the manifest has none: a data file, replayed general rows)."""
    p = Path(split)
    manifest: dict[str, Any] = {}
    if p.is_dir():
        mpath = p / "manifest.json"
        if mpath.is_file():
            try:
                manifest = json.loads(mpath.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise StudioError(f"{mpath}: not valid JSON ({exc}); export the split again.") from None
            if isinstance(manifest, dict) and "rows" not in manifest and "lineage" in manifest:
                from .manifest import split_rows

                manifest = {**manifest, "rows": split_rows(p, manifest)}  # schema 3: the lineage sidecar
        data = p / ((manifest.get("files") or {}).get("train") or {}).get("path", "train.jsonl")
    else:
        data = p
    if not data.exists():
        raise StudioError(f"{data} does not exist: the split is gone; export it again (studio export NAME) "
                          "or point the run's data.split at it.")
    if data.suffix == ".parquet" or data.is_dir():  # the parquet and hf (save_to_disk) targets
        return _with_meta([_pair(*_turns(r)) if isinstance(r, dict) else ("", "") for r in _table_rows(data)], manifest)
    text = data.read_text(encoding="utf-8")
    lines = [(1, text)] if data.suffix == ".json" else [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    recs: list[Any] = []
    for lineno, chunk in lines:
        try:
            recs.append(json.loads(chunk))
        except ValueError as exc:
            line = getattr(exc, "lineno", 1) if data.suffix == ".json" else lineno
            raise StudioError(f"{data}:{line}: not valid JSON ({getattr(exc, 'msg', exc)}); export the split again.") from None
    if data.suffix == ".json":
        recs = recs[0]
    if not isinstance(recs, list):
        raise StudioError(f"{data}: expected a list of rows; export the split again.")
    return _with_meta([_pair(*_turns(r)) if isinstance(r, dict) else ("", "") for r in recs], manifest)


def _table_rows(data: Path) -> list[dict[str, Any]]:
    """The rows of a Parquet file, or of a `save_to_disk` folder (Arrow stream files, in the order
    its state.json lists them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if data.is_dir():
            state = json.loads((data / "state.json").read_text(encoding="utf-8"))
            rows: list[dict[str, Any]] = []
            for f in state["_data_files"]:
                with pa.memory_map(str(data / f["filename"])) as src:
                    rows += pa.ipc.open_stream(src).read_all().to_pylist()
            return rows
        return pq.read_table(data).to_pylist()
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
        raise StudioError(f"{data}: cannot read the split's rows ({exc}); export the split again.") from None


def _with_meta(pairs: list[tuple[str, str]], manifest: dict[str, Any]) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    meta = list((manifest.get("rows") or {}).get("train") or [])
    replay = set((((manifest.get("settings") or {}).get("replay")) or {}).get("positions") or [])
    if replay:  # a replay split: the manifest lists the task rows only; general rows sit at `positions`
        it = iter(meta)
        meta = [{} if i in replay else next(it, {}) for i in range(len(pairs))]
    meta = [m if isinstance(m, dict) else {} for m in meta[:len(pairs)]]
    meta += [{} for _ in range(len(pairs) - len(meta))]
    return pairs, meta


# -- similarity -----------------------------------------------------------------------------------
def _texts(pairs: list[tuple[str, str]], marked: bool) -> list[str]:
    """Normalised comparison texts. The fields are normalised apart and the role marks added after:
    the same shingles as normalising the marked text (marks and newlines only separate), but ASCII
    fields keep normalize's fast path (a marked text is never ASCII)."""
    if not marked:
        return [norm.normalize(f"{q}\n{a}") for q, a in pairs]
    user, assistant = norm.ROLE_MARKS["user"], norm.ROLE_MARKS["assistant"]
    return [(f"{user}{norm.normalize(q)} " if q else "") + assistant + norm.normalize(a) for q, a in pairs]


def _gather(offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions into the hash array of every shingle of `rows`, the new offsets of those rows)."""
    lens = offsets[rows + 1] - offsets[rows]
    new = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(lens, out=new[1:])
    pos = np.arange(int(new[-1]), dtype=np.int64) - np.repeat(new[:-1], lens) + np.repeat(offsets[rows], lens)
    return pos, new


def exact_jaccard(hashes: np.ndarray, offsets: np.ndarray, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Exact Jaccard of each text in `rows` (indices into offsets) with the sorted distinct `query`
    hashes, vectorised: the distinct (row, hash) pairs (one sort), then counts per row."""
    rows = np.asarray(rows, dtype=np.int64)
    pos, new = _gather(offsets, rows)
    if pos.size == 0 or query.size == 0:
        return np.zeros(rows.size)
    owner = np.repeat(np.arange(rows.size, dtype=np.uint64), np.diff(new))
    keys = np.sort((owner << np.uint64(32)) | hashes[pos].astype(np.uint64))
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    own = (keys >> np.uint64(32)).astype(np.int64)
    size = np.bincount(own, minlength=rows.size)
    inter = np.bincount(own[_member(keys.astype(np.uint32), query)], minlength=rows.size)
    return np.where(size > 0, inter / np.maximum(size + query.size - inter, 1), 0.0)


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """values in sorted_set, by binary search (the set is a query's few hundred shingles)."""
    at = np.minimum(np.searchsorted(sorted_set, values), sorted_set.size - 1)
    return sorted_set[at] == values


def rank(pairs: list[tuple[str, str]], query: str, k: int, *, shingle: int = sh.DEFAULT_SHINGLE,
         num_perm: int = NUM_PERM) -> list[tuple[int, float, float]]:
    """(row index, exact Jaccard, MinHash estimate) of the k rows most like `query`, best first.

    Rows sharing no shingle with the query (Jaccard 0) are left out. When more than a shortlist of
    rows share one, MinHash signatures of those rows rank them, and the rows whose estimate lies
    within MinHash's error of the k-th best (ties included) are refined by exact Jaccard; with few
    sharing rows, or a short query, every sharing row is compared exactly."""
    marked = any(mark in query for mark in norm.ROLE_MARKS.values())
    n = len(pairs)
    qnorm = norm.normalize(query) if not marked else _texts(
        [(_field(query, "user"), _field(query, "assistant"))], True)[0]
    hashes, offsets = sh.shingle_hashes(_texts(pairs, marked) + [qnorm], shingle)
    qset = np.unique(hashes[offsets[n]:offsets[n + 1]])
    if n == 0 or qset.size == 0 or k <= 0:
        return []
    hit_rows = np.flatnonzero(np.bincount(np.repeat(np.arange(n), np.diff(offsets[:n + 1])),
                                          weights=_member(hashes[:offsets[n]], qset), minlength=n))
    if hit_rows.size == 0:
        return []
    pos, sub = _gather(offsets, np.append(hit_rows, n))  # the query last
    sigs = sh.signatures(hashes[pos], sub, num_perm)
    est = (sigs[:-1] == sigs[-1]).mean(axis=1)
    if qset.size < SHORT_QUERY or hit_rows.size <= max(SHORTLIST, 8 * k):
        pick = np.arange(hit_rows.size)
    else:
        # Keep every row whose estimate could reach the k-th best one's true similarity: three
        # standard errors of a MinHash estimate (binomial over num_perm slots) plus one slot.
        kth = float(np.partition(est, est.size - k)[est.size - k])
        margin = 3 * np.sqrt(kth * (1 - kth) / num_perm) + 1 / num_perm
        pick = np.flatnonzero(est >= kth - margin)
    cand = hit_rows[pick]
    jac = exact_jaccard(hashes, offsets, cand, qset)
    order = np.lexsort((cand, -est[pick], -jac))
    return [(int(cand[i]), float(jac[i]), float(est[pick[i]])) for i in order[:k] if jac[i] > 0]


def _field(query: str, role: str) -> str:
    """The text of `role`'s turns in a marked query (turns of other roles left out)."""
    mark = norm.ROLE_MARKS[role]
    parts = re.split("([" + "".join(norm.ROLE_MARKS.values()) + "])", query)
    return "\n".join(parts[i + 1] for i in range(len(parts) - 1) if parts[i] == mark).strip()


# -- history --------------------------------------------------------------------------------------
def _rows(con, sql: str, ids: list[int]) -> list[tuple]:
    return con.execute(sql, [ids]).fetchall()


def _loads(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def sample_history(con, sample_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The curation history of each sample id found in the workspace (absent ids are left out)."""
    ids = sorted({int(i) for i in sample_ids})
    if not ids:
        return {}
    out: dict[int, dict[str, Any]] = {}
    for (sid, status, version, sfile, srow, src_id, import_id, cluster_id, dup_of, parent_id, operation, lineage,
         jscore, jreason, ipath, iformat, iat) in _rows(con, """
            SELECT s.id, CAST(s.status AS TEXT), s.version, s.source_file, s.source_row, s.source_id, s.import_id,
                   s.cluster_id, s.duplicate_of, s.parent_id, s.operation, s.lineage, s.judge_score, s.judge_reason,
                   i.path, i.format, i."at"
            FROM samples s LEFT JOIN imports i ON i.id = s.import_id
            WHERE s.id IN (SELECT unnest(?)) ORDER BY s.id""", ids):
        out[int(sid)] = {
            "status": status, "source_file": sfile, "source_row": srow, "source_id": src_id,
            "import": ({"id": import_id, "path": ipath, "format": iformat, "at": str(iat) if iat else None}
                       if import_id is not None else None),
            "flags": [], "cluster": None, "duplicate_of": dup_of,
            "edits": {"version": int(version), "earlier_versions": 0, "latest": None},
            "augment": None, "judge": {"score": jscore, "reason": jreason} if jscore is not None else None,
            "_cluster_id": cluster_id, "_parent": parent_id, "_operation": operation, "_lineage": _loads(lineage),
        }
    found = list(out)
    for sid, rule, value, threshold, detail in _rows(con, """
            SELECT sample_id, rule_id, value, threshold, detail FROM quality_flags
            WHERE sample_id IN (SELECT unnest(?)) ORDER BY sample_id, rule_id""", found):
        out[int(sid)]["flags"].append({"rule_id": rule, "value": value, "threshold": threshold, "detail": detail})
    for sid, cid, method, fields, keeper, chosen_by, size, resolved, sim in _rows(con, """
            SELECT s.id, c.id, c.method, c.fields, c.keeper_id, c.keeper_chosen_by, c.size, c.resolved, m.similarity
            FROM samples s JOIN dup_clusters c ON c.id = s.cluster_id
            LEFT JOIN dup_members m ON m.cluster_id = c.id AND m.sample_id = s.id
            WHERE s.id IN (SELECT unnest(?))""", found):
        out[int(sid)]["cluster"] = {"id": int(cid), "method": method, "fields": fields, "size": int(size),
                                    "keeper_id": int(keeper), "is_keeper": int(keeper) == int(sid),
                                    "keeper_chosen_by": chosen_by, "resolved": bool(resolved), "similarity": sim}
    for sid, n, version, op_id, kind, at, reason in _rows(con, """
            SELECT v.sample_id, count(*) OVER w, v.version, v.op_id, o.kind, o."at", o.reason
            FROM sample_versions v LEFT JOIN operations o ON o.id = v.op_id
            WHERE v.sample_id IN (SELECT unnest(?))
            WINDOW w AS (PARTITION BY v.sample_id)
            QUALIFY row_number() OVER (PARTITION BY v.sample_id ORDER BY v.version DESC) = 1""", found):
        out[int(sid)]["edits"].update({"earlier_versions": int(n), "latest": {
            "op_id": op_id, "kind": kind, "at": str(at) if at else None, "reason": reason,
            "from_version": int(version)}})
    outputs = {int(r[0]): r[1:] for r in _rows(con, """
            SELECT a.sample_id, a.parent_id, a.job_id, j.operation FROM augment_outputs a
            LEFT JOIN augment_jobs j ON j.job_id = a.job_id
            WHERE a.sample_id IN (SELECT unnest(?)) AND a.parent_id IS DISTINCT FROM a.sample_id""", found)}
    for sid, h in out.items():
        parent, operation, lineage = h.pop("_parent"), h.pop("_operation"), h.pop("_lineage")
        h.pop("_cluster_id")
        row = outputs.get(sid)
        if parent is None and row is None and not (operation or "").startswith("augment"):
            continue
        lin = lineage if isinstance(lineage, dict) else {}
        h["augment"] = {
            "parent_id": parent if parent is not None else (row[0] if row else None),
            "operation": (row[2] if row and row[2] else None) or (operation or "").removeprefix("augment:") or None,
            "job_id": (row[1] if row else None) or lin.get("job_id"),
            "provider": lin.get("provider"), "model": lin.get("model"), "template": lin.get("template"),
        }
    return out


def _same_sample(meta: dict[str, Any], hist: dict[str, Any]) -> bool:
    """Whether the workspace's sample is the one the manifest names (not an id from another workspace)."""
    if meta.get("source_file") is not None and meta.get("source_file") != hist.get("source_file"):
        return False
    return meta.get("source_row") is None or meta.get("source_row") == hist.get("source_row")


# -- the whole answer -----------------------------------------------------------------------------
def nearest_training_rows(ws: Workspace, split_dir: str | Path, query_text: str, *, k: int = DEFAULT_K,
                          shingle: int = sh.DEFAULT_SHINGLE, num_perm: int = NUM_PERM) -> list[dict[str, Any]]:
    """The k train rows of `split_dir` most similar to `query_text`, best first, each with its
    curation history in workspace `ws` (None when the row's sample is not in it; `ws` may be None).

    Each dict: rank, row (1-based line of train.jsonl), sample_id, similarity (exact Jaccard of the
    shingle sets), estimate (MinHash), instruction, answer, source (the manifest's entry), history."""
    pairs, meta = read_train_rows(split_dir)
    best = rank(pairs, query_text, k, shingle=shingle, num_perm=num_perm)
    ids = [meta[i].get("sample_id") for i, _, _ in best]
    hist = sample_history(ws.con, [i for i in ids if isinstance(i, int)]) if ws is not None else {}
    out = []
    for n, ((i, jac, est), sid) in enumerate(zip(best, ids), 1):
        h = hist.get(sid) if isinstance(sid, int) else None
        if h is not None and not _same_sample(meta[i], h):
            h = None
        out.append({"rank": n, "row": i + 1, "sample_id": sid, "similarity": round(jac, 4), "estimate": round(est, 4),
                    "instruction": pairs[i][0], "answer": pairs[i][1],
                    "source": {key: meta[i].get(key) for key in ("source_id", "source_file", "source_row")},
                    "history": h})
    return out
