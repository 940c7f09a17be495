"""curation/distinct.py: np.unique's values, by a sort and a compare."""
from __future__ import annotations

import numpy as np
import pytest

from curation.distinct import distinct


@pytest.mark.parametrize("dtype", [np.int64, np.uint64, np.int32, np.uint32, np.float64])
def test_distinct_is_np_unique(dtype):
    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 7, 1000):
        x = rng.integers(0, max(n // 3, 1) + 1, n).astype(dtype)
        got = distinct(x)
        assert got.dtype == x.dtype and np.array_equal(got, np.unique(x))
    assert distinct(np.array([3, 1, 3, 2, 1])).tolist() == [1, 2, 3]
