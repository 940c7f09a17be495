"""What a dedup run is asked for (DedupParams, validated at construction) and what the last run
that still stands used (`last_params`, read from its operation)."""
from __future__ import annotations

import json
from dataclasses import dataclass

from .. import normalize as norm
from .. import shingles as sh
from ..errors import StudioError

DEFAULT_THRESHOLD = 0.8
DEFAULT_NUM_PERM = 128
DEFAULT_SHINGLE = sh.DEFAULT_SHINGLE
# The MinHash of stored signatures (curation/dedup/signatures.py) and, after the '+', the hash of
# their exact keys (text_kernels.exact_keys_numpy; rensa-rminhash2 alone stored blake2b keys).
SCHEME = "rensa-rminhash2+key64"
OLD_SCHEMES = ("affine32", "rensa-rminhash2")  # earlier schemes, whose stored signatures are dropped


@dataclass(frozen=True)
class DedupParams:
    threshold: float = DEFAULT_THRESHOLD  # Jaccard similarity at which two samples are near duplicates
    fields: str = "sample"                # 'sample' (system and every turn), 'instruction' or 'answer'
    num_perm: int = DEFAULT_NUM_PERM      # MinHash permutations
    shingle: int = DEFAULT_SHINGLE        # shingle size: CJK characters / words
    verify: bool = True                   # check candidates by exact Jaccard (else the MinHash estimate)

    def __post_init__(self) -> None:
        norm.check_fields(self.fields)
        if not 0.0 < self.threshold <= 1.0:
            raise StudioError(f"dedup threshold must be in (0, 1], got {self.threshold}.")
        if not 16 <= self.num_perm <= 1024:
            raise StudioError(f"--num-perm must be between 16 and 1024, got {self.num_perm}.")
        if not 1 <= self.shingle <= 16:
            raise StudioError(f"--shingle must be between 1 and 16, got {self.shingle}.")

    @property
    def signature_key(self) -> str:
        """What a stored signature depends on (threshold and verify do not change it)."""
        # v2: whole samples are shingled turn by turn with role marks (curation/normalize.py)
        return f"v2 fields={self.fields} num_perm={self.num_perm} shingle={self.shingle} seed={sh.SEED} scheme={SCHEME}"


def last_params(con) -> DedupParams | None:
    """Parameters of the latest dedup run that was not undone."""
    row = con.execute("SELECT details FROM operations WHERE kind = 'dedup' AND undone_by IS NULL "
                      "ORDER BY id DESC LIMIT 1").fetchall()
    if not row:
        return None
    row = row[0]
    d = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    return DedupParams(d.get("threshold", DEFAULT_THRESHOLD), d.get("fields", "sample"),
                       d.get("num_perm", DEFAULT_NUM_PERM), d.get("shingle", DEFAULT_SHINGLE), d.get("verify", True))
