"""The studio writes no SQL: curation owns its tables and offers the queries (curation.browse and
the module that owns each table), so a schema change stays inside curation."""
from __future__ import annotations

import re

from tests.conftest import ROOT

SQL_CALL = re.compile(r"\.(execute|executemany|sql)\(")


def test_no_sql_calls_under_studio():
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for path in sorted((ROOT / "studio").rglob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if SQL_CALL.search(line)]
    assert found == [], "SQL under studio/ (move the query into curation):\n" + "\n".join(found)
