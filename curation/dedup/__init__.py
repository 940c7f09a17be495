"""Exact and near duplicates: find them, group them into clusters, pick the keeper of each.

Exact duplicates have equal normalised text (curation.normalize: NFKC, casefold, whitespace,
full/half-width punctuation). Near duplicates have a Jaccard similarity of their shingle sets
(curation.shingles: CJK character n-grams, word n-grams elsewhere) of at least the threshold.
The package, one module per data type:

- params.py      DedupParams (validated) and the parameters of the last run
- signatures.py  MinHash signatures: bulk hashing in worker processes, the signature store
- lsh.py         banding: bands and rows for the threshold, candidate pairs
- similarity.py  exact Jaccard (verification) or MinHash estimate of pairs
- plan.py        clusters from pairs, each member verified against its keeper (full run, incremental)
- clusters.py    keeper policy, cluster writes, reviewer keeper choice, listing, undo
- report.py      DedupReport: what a run found and did
- run.py         find_duplicates and check_incremental: one undoable operation each

The worker pool is curation.workers (shared with curation.quality).
"""
from .clusters import list_clusters, set_keeper, undo_operation
from .params import DEFAULT_THRESHOLD, DedupParams, last_params
from .report import DedupReport
from .run import check_incremental, find_duplicates

__all__ = ["DEFAULT_THRESHOLD", "DedupParams", "DedupReport", "check_incremental", "find_duplicates",
           "last_params", "list_clusters", "set_keeper", "undo_operation"]
