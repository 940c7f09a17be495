"""A small fixed workspace for the studio's Pilot and snapshot tests: deterministic content (no
timestamps or temporary paths reach the screen), two languages, two sources, quality flags, one
duplicate cluster, and one sample whose text holds an ANSI escape and markup-looking brackets."""
from __future__ import annotations

from pathlib import Path

from curation.samples import chat
from curation.store import insert_samples
from curation.workspace import open_workspace

ANSI_INSTRUCTION = "paint \x1b[31mred\x1b[0m and [bold]bold[/bold] text"


def make_workspace(path: Path, n: int = 12) -> Path:
    samples = []
    for i in range(1, n + 1):
        if i == 5:
            samples.append(chat(ANSI_INSTRUCTION, "plain answer", source_file="data/chat_en.jsonl", lang="en"))
        elif i % 3 == 0:
            samples.append(chat(f"用中文解释第{i}个概念", f"这是第{i}个回答。", source_file="data/alpaca_zh.json", lang="zh"))
        else:
            samples.append(chat(f"Explain concept number {i}", f"Concept {i} is explained here.",
                                system="You are terse." if i == 1 else None,
                                source_file="data/chat_en.jsonl", lang="en"))
    ws = open_workspace(path)
    try:
        ids = insert_samples(ws.con, samples)
        ws.con.execute(
            "INSERT INTO quality_flags (sample_id, rule_id, value, threshold, detail) VALUES "
            "(?, 'answer_too_short', 3, 10, 'answer shorter than 10 characters'), (?, 'answer_too_short', 4, 10, NULL), "
            "(?, 'contains_url', 1, NULL, NULL)", [ids[1], ids[3], ids[3]])
        ws.con.execute("INSERT INTO dup_clusters (id, method, fields, keeper_id, keeper_chosen_by, size) "
                       "VALUES (1, 'near', 'sample', ?, 'policy', 2)", [ids[6]])
        ws.con.execute("INSERT INTO dup_members VALUES (1, ?, 1.0), (1, ?, 0.91)", [ids[6], ids[7]])
        ws.con.execute("UPDATE samples SET cluster_id = 1 WHERE id IN (?, ?)", [ids[6], ids[7]])
        ws.con.execute("UPDATE samples SET duplicate_of = ? WHERE id = ?", [ids[6], ids[7]])
    finally:
        ws.close()
    return path
