"""The studio writes no SQL: curation owns its tables and offers the queries (curation.browse and
the module that owns each table), so a schema change stays inside curation."""
from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT

SQL_CALL = re.compile(r"\.(execute|executemany|sql)\(")


def test_no_sql_calls_under_studio():
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for path in sorted((ROOT / "studio").rglob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if SQL_CALL.search(line)]
    assert found == [], "SQL under studio/ (move the query into curation):\n" + "\n".join(found)


def test_the_queries_the_studio_calls(ws):
    from curation import browse, review, store
    from curation.errors import NotFound
    from curation.jobs import recent_jobs
    from curation.samples import chat
    from curation.workspace import rolled_back

    assert browse.status_counts(ws.con) == {"pending": 0, "approved": 0, "rejected": 0}
    assert browse.max_sample_id(ws.con) == 0
    with ws.transaction():
        ids = store.insert_samples(ws.con, [chat("q1", "a1"), chat("q2", "a2"), chat("q3", "a3")])
    op = review.approve(ws, ids[:2])
    assert review.get_operation(ws.con, op).sample_count == 2
    assert browse.status_counts(ws.con) == {"pending": 1, "approved": 2, "rejected": 0}
    assert browse.max_sample_id(ws.con) == ids[-1]
    assert browse.status_and_preview(ws.con, [ids[0], 999], chars=1) == {ids[0]: ("approved", "q")}
    # a command served for another process runs inside rolled_back: what it writes is thrown away
    with rolled_back(ws.cursor()) as con:
        con.execute("UPDATE samples SET status = 'rejected'")
    assert browse.status_counts(ws.con)["rejected"] == 0
    assert browse.cluster_count(ws.con) == 0 and recent_jobs(ws.con) == []
    with pytest.raises(NotFound, match="no duplicate cluster 7"):
        browse.cluster_size(ws.con, 7)
    with pytest.raises(NotFound, match="no operation 999"):
        review.get_operation(ws.con, 999)
