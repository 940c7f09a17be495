"""The README's first command builds the demo workspace from sample_data/: the planted duplicates
and low-quality rows described in sample_data/README.md must show up, and clean rows must not."""
from __future__ import annotations

import json
import re

import pytest

from studio.cli import main
from tests.conftest import SAMPLE_DATA


def _planted():
    pairs, low = [], []
    for line in (SAMPLE_DATA / "README.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| (p\d+) \| \d+ \| (exact duplicate|near duplicate|low quality) \|.*\| (?:(a\d+) .*)?\|$", line)
        if m:
            (pairs if m.group(3) else low).append((m.group(1), m.group(2), m.group(3)))
    return pairs, low


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    import duckdb

    path = tmp_path_factory.mktemp("demo") / "ws"
    assert main(["-w", str(path), "demo", "--no-open"]) == 0
    manifest = json.loads((path / "splits" / "demo" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["train"] > 200  # pending and non-duplicate samples: the Train screen has a split
    con = duckdb.connect(str(path / "studio.duckdb"), read_only=True)
    yield con
    con.close()


def test_planted_duplicates_are_clustered(demo):
    pairs, _ = _planted()
    assert sum(k == "exact duplicate" for _, k, _ in pairs) == 15 and len(pairs) == 35
    cluster = dict(demo.execute("SELECT s.source_id, m.cluster_id FROM samples s JOIN dup_members m ON m.sample_id = s.id").fetchall())
    found = {p: cluster.get(p) is not None and cluster.get(p) == cluster.get(orig) for p, _, orig in pairs}
    assert all(found[p] for p, k, _ in pairs if k == "exact duplicate"), found
    near = [found[p] for p, k, _ in pairs if k == "near duplicate"]
    # the misses are short answers where one added line drops Jaccard under the 0.8 threshold
    assert sum(near) >= 17, found
    # a translation and its reverse share words but not turns (sample_data: a0125/a0126, a0135/a0136)
    for a, b in (("a0125", "a0126"), ("a0135", "a0136")):
        assert cluster.get(a) is None or cluster.get(a) != cluster.get(b), (a, b)
    # each cluster keeps one sample; the others leave every split
    kept = demo.execute("SELECT count(*) FROM dup_clusters c JOIN samples s ON s.id = c.keeper_id WHERE s.duplicate_of IS NULL").fetchall()[0][0]
    assert kept == demo.execute("SELECT count(*) FROM dup_clusters").fetchall()[0][0]


def test_planted_low_quality_rows_are_flagged_and_clean_rows_are_not(demo):
    _, low = _planted()
    flagged = {r[0] for r in demo.execute("SELECT DISTINCT s.source_id FROM quality_flags f JOIN samples s ON s.id = f.sample_id").fetchall()}
    assert [p for p, _, _ in low if p not in flagged] == []
    clean = sorted(x for x in flagged if x and x.startswith("a"))
    assert len(clean) <= 2, clean
    # translation requests (英译中, 中译英) are not a language mismatch
    wrong = demo.execute("""SELECT s.instruction FROM quality_flags f JOIN samples s ON s.id = f.sample_id
                            WHERE f.rule_id = 'language_mismatch' AND regexp_matches(s.instruction, '译')""").fetchall()
    assert wrong == []


def test_demo_opens_an_existing_workspace_without_importing_again(demo, tmp_path, capsys):
    path = tmp_path / "ws"
    assert main(["-w", str(path), "demo", "--no-open"]) == 0
    assert main(["-w", str(path), "demo", "--no-open"]) == 0
    err = capsys.readouterr().err
    assert err.count("building the demo workspace") == 1
