"""How the review engine holds up at a million samples: list pages, search, count, rank, and a bulk
status change through `review.set_status` (audit rows included), against the targets the review
screen needs (a page under 20 ms, a search's first page under 200 ms, 10k status changes under
100 ms). Alternatives are timed side by side in the same run.

    .venv/bin/python benches/workspace_bench.py [--rows 1000000] [--out benches/results/workspace.md]

The samples are generated straight into the workspace with SQL (a few seconds), not imported.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curation import browse, review, undo  # noqa: E402
from curation.browse import Filter  # noqa: E402
from curation.workspace import open_workspace  # noqa: E402

WORDS = ["sort", "array", "python", "排序", "算法", "network", "model", "数据", "train", "loss", "gradient",
         "token", "矩阵", "函数", "memory", "cache", "query", "index", "线程", "并发"]


def generate(ws, n: int) -> None:
    """n samples: mixed Chinese/English instruction and answer, statuses, a few flags and duplicates."""
    words = "[" + ", ".join(f"'{w}'" for w in WORDS) + "]"
    ws.con.execute(f"""
        CREATE TEMP TABLE gen AS
        SELECT i + 1 AS id,
               'Question ' || i || ': explain ' || {words}[1 + i % 20] || ' and ' || {words}[1 + (i * 7) % 20]
                   || ' in the context of ' || {words}[1 + (i * 13) % 20] || ' please' AS instruction,
               'The answer ' || i || ' uses ' || {words}[1 + (i * 3) % 20] || ' then ' || {words}[1 + (i * 11) % 20]
                   || repeat(' detail', 10 + i % 30) AS answer,
               CASE WHEN i % 10 < 6 THEN 'pending' WHEN i % 10 < 9 THEN 'approved' ELSE 'rejected' END AS status,
               CASE WHEN i % 3 = 0 THEN 'zh' ELSE 'en' END AS lang,
               'file' || (i % 5) || '.jsonl' AS source_file
        FROM range({n}) t(i)""")
    ws.con.execute("""
        INSERT INTO samples (id, kind, system, messages, text, instruction, answer, status, lang, source_file,
                             source_row, content_hash, duplicate_of, judge_score, search_text)
        SELECT id, 'chat', NULL,
               to_json([{'role': 'user', 'content': instruction}, {'role': 'assistant', 'content': answer}]),
               NULL, instruction, answer, status, lang, source_file, id, md5(instruction || answer),
               CASE WHEN id % 50 = 0 THEN id - 1 END, (id % 11) / 10.0,
               lower(concat_ws(chr(10), instruction, answer))  -- as store.insert_arrow writes it
        FROM gen ORDER BY id""")
    ws.con.execute("INSERT INTO quality_flags (sample_id, rule_id, value, threshold) "
                   "SELECT id, CASE WHEN id % 2 = 0 THEN 'too_short' ELSE 'lang_mismatch' END, 1, 2 FROM gen WHERE id % 20 = 3")
    ws.con.execute(f"SELECT setval('sample_id_seq', {n})")
    ws.con.execute("DROP TABLE gen")
    ws.con.execute("CHECKPOINT")


def timed(fn, repeat: int) -> float:
    """Median milliseconds of `repeat` calls (after one warm-up call)."""
    fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    n = args.rows
    rng = random.Random(0)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        ws = open_workspace(Path(tmp) / "ws")
        t = time.perf_counter()
        generate(ws, n)
        gen_s = time.perf_counter() - t
        con = ws.con
        pending = Filter(status="pending")
        rows: list[tuple[str, float, float | None]] = []

        def add(label: str, ms: float, target: float | None = None) -> None:
            rows.append((label, ms, target))
            print(f"{label}: {ms:.1f} ms", file=sys.stderr)

        starts = [rng.randrange(n) for _ in range(60)]
        it = iter(starts * 10)
        add("page of 100, keyset (`page`, after_id anywhere)", timed(lambda: browse.page(con, Filter(), after_id=next(it)), 50), 20)
        add("page of 100, keyset, status=pending", timed(lambda: browse.page(con, pending, after_id=next(it)), 50), 20)
        add("previous page of 100 (`page`, before_id)", timed(lambda: browse.page(con, pending, before_id=next(it)), 50), 20)
        add("page of 100 by OFFSET (`page_at`, random position)", timed(lambda: browse.page_at(con, pending, next(it) // 2), 30), 20)
        add("first page, search='gradient' (common) + status", timed(lambda: browse.page(con, Filter(search="gradient", status="pending")), 10), 200)
        add("first page, search='question 123456' (rare) + status", timed(lambda: browse.page(con, Filter(search="Question 123456:", status="pending")), 10), 200)
        add("first page, search='数据 and 矩阵' (CJK)", timed(lambda: browse.page(con, Filter(search="数据 and 矩阵")), 10), 200)
        add("count, no filter", timed(lambda: browse.count(con, Filter()), 20))
        add("count, status=pending", timed(lambda: browse.count(con, pending), 20))
        add("count, search='gradient'", timed(lambda: browse.count(con, Filter(search="gradient")), 5))
        add("count, flag=too_short, exclude duplicates", timed(lambda: browse.count(con, Filter(flag="too_short", duplicates="exclude")), 10))
        add("rank of an id, status=pending", timed(lambda: browse.rank(con, pending, next(it)), 20))

        def set10k(status: str) -> None:
            review.set_status(ws, rng.sample(range(1, n + 1), 10_000), status)

        flip = iter(["approved", "rejected"] * 50)
        add("set_status of 10k random ids (+ operation + 10k op_samples)", timed(lambda: set10k(next(flip)), 8), 100)

        add("undo of the last 10k status change", timed(lambda: (set10k(next(flip)), undo.undo(ws)), 4)
            - timed(lambda: set10k(next(flip)), 4))
        from curation import export

        k = [0]

        def export_once() -> None:
            k[0] += 1
            export.export_split(ws, f"s{k[0]}", val=0.1, seed=42)

        t = time.perf_counter()
        export_once()
        exported = sum(export.preview_counts(con, 0.1, 42, "approved")[p] for p in ("train", "val"))
        add(f"export_split of {exported:,} approved samples (messages, val 0.1)", (time.perf_counter() - t) * 1000)

        # Side by side: the query shapes the engine did not choose, same data, same run.
        needle = "Question 123456:"
        alt = {}
        alt["search_used"] = timed(lambda: browse.count(con, Filter(search=needle)), 5)
        alt["search_ilike"] = timed(lambda: con.execute(
            "SELECT count(*) FROM samples WHERE instruction ILIKE ? OR answer ILIKE ? OR text ILIKE ?",
            [f"%{needle}%"] * 3).fetchone(), 5)
        alt["search_lower"] = timed(lambda: con.execute(
            "SELECT count(*) FROM samples WHERE contains(lower(instruction), lower(?)) OR contains(lower(answer), lower(?)) "
            "OR contains(lower(text), lower(?))", [needle] * 3).fetchone(), 5)
        cols = ("s.id, s.status, s.lang, left(coalesce(s.instruction, s.text, ''), 400), left(coalesce(s.answer, ''), 400), "
                "s.source_file, s.cluster_id, s.duplicate_of, s.judge_score, s.kind")
        alt["page_two_step"] = timed(lambda: browse.page(con, Filter(), after_id=next(it)), 30)
        alt["page_one_step"] = timed(lambda: con.execute(
            f"SELECT {cols} FROM samples s WHERE s.id > ? ORDER BY s.id LIMIT 100", [next(it)]).fetchall(), 30)

        def scattered_update(column: str, values: tuple[str, str]) -> None:
            ids10k = rng.sample(range(1, n + 1), 10_000)
            with ws.transaction():
                con.execute(f"UPDATE samples SET {column} = ? WHERE id IN (SELECT unnest(?))", [rng.choice(values), ids10k])

        alt["update_enum"] = timed(lambda: scattered_update("status", ("approved", "rejected")), 8)
        alt["update_text"] = timed(lambda: scattered_update("judge_reason", ("approved", "rejected")), 8)
        ws.close()

    lines = [
        "# Workspace engine at scale",
        "",
        f"Machine: {os.cpu_count()}-core CPU, no GPU ({platform.machine()}, Python {platform.python_version()}), shared with other work;",
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (other work shares these cores: medians, not minima).",
        f"{n:,} generated samples (60% pending, 30% approved, 10% rejected; 5% flagged; 2% duplicates); generation {gen_s:.1f} s.",
        "",
        f"Command: `.venv/bin/python benches/workspace_bench.py --rows {n}`",
        "",
        "| operation | median ms | target ms | ratio to target |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, ms, target in rows:
        ratio = f"{ms / target:.2f}" if target else ""
        lines.append(f"| {label} | {ms:.1f} | {target or ''} | {ratio} |")
    lines += [
        "",
        "Query shapes side by side (same data, same run; ratio to the shape the engine uses):",
        "",
        "| variant | median ms | ratio |",
        "| --- | ---: | ---: |",
        f"| search count: `contains(search_text, lower(?))` (used; migration 0005) | {alt['search_used']:.1f} | 1.00 |",
        f"| search count: `col ILIKE ?` over instruction, answer, text | {alt['search_ilike']:.1f} | {alt['search_ilike'] / alt['search_used']:.2f} |",
        f"| search count: `contains(lower(col), lower(?))` over the three | {alt['search_lower']:.1f} | {alt['search_lower'] / alt['search_used']:.2f} |",
        f"| page of 100: ids first, then their rows (used) | {alt['page_two_step']:.1f} | 1.00 |",
        f"| page of 100: one `SELECT cols ... ORDER BY id LIMIT 100` | {alt['page_one_step']:.1f} | {alt['page_one_step'] / alt['page_two_step']:.2f} |",
        f"| update + commit 10k scattered ids: status ENUM (used; migration 0005) | {alt['update_enum']:.1f} | 1.00 |",
        f"| update + commit 10k scattered ids: a TEXT column (status before 0005) | {alt['update_text']:.1f} | {alt['update_text'] / alt['update_enum']:.2f} |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
