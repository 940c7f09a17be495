"""DedupReport: what a dedup run found and did, the `studio dedup --json` report.

Its own module so that the planner (plan.py) and the runner (run.py), which both fill it in, need
not import each other.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class DedupReport:
    """What a run found and did; `as_dict` is the `studio dedup --json` report."""

    op_id: int | None
    params: dict[str, Any]
    incremental: bool = False
    samples: int = 0              # samples compared
    signatures_computed: int = 0
    signatures_reused: int = 0
    candidate_pairs: int = 0
    verified_pairs: int = 0       # pairs at or above the threshold
    chains_split: int = 0         # linked groups split because members were below the threshold to the keeper
    clusters: int = 0
    exact_clusters: int = 0
    near_clusters: int = 0
    duplicates: int = 0           # samples marked duplicate_of a keeper
    joined_existing: int = 0      # incremental: new samples added to clusters that existed
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
