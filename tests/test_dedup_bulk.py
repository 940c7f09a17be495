"""The bulk normaliser (curation.normalize_bulk) gives exactly normalize()'s text, so the dedup
hashing pass (which uses it) keeps its exact keys and shingles."""
import json
import random
from pathlib import Path

import numpy as np

from curation import normalize_bulk as nb
from curation import shingles as sh
from curation.dedup.signatures import hash_chunk
from curation.normalize import ROLE_MARKS, exact_key, normalize

ROOT = Path(__file__).resolve().parent

EDGE = [
    "", " ", "  x  ", "a\tb\n\nc", "Hello,  WORLD!", "你 好 ，world …", "中文 English 混合", " 中 ", "a 中", "中 a",
    "Straße İstanbul ﬁne", "ＡＢＣ，！１２３", "ｶﾞ ガ", "e\u0301 é", "a\u200bb", "\u200b", "\ufeffBOM", "😀 x 😀",
    "a\x00b", "a \x00 b", "tab\u3000ideo", "x\u2028y\u00a0z", "「引号」《书名》", "―— – dashes", "ΣΊΣΥΦΟΣ",
    ROLE_MARKS["user"] + "Q?\n" + ROLE_MARKS["assistant"] + "A 答案。",
]


def _real_texts() -> list[str]:
    rows = json.loads((ROOT / "data/llamafactory/alpaca_zh_demo.json").read_text(encoding="utf-8"))
    rows += [{"instruction": t["value"], "input": "", "output": ""}
             for r in json.loads((ROOT / "data/llamafactory/glaive_toolcall_en_demo.json").read_text(encoding="utf-8"))
             for t in r["conversations"]]
    return [ROLE_MARKS["user"] + r["instruction"] + "\n" + r["input"] + "\n" + ROLE_MARKS["assistant"] + r["output"]
            for r in rows]


def test_bulk_normalize_equals_normalize_on_edge_cases_and_real_text():
    rng = random.Random(3)
    texts = EDGE + _real_texts()
    # shuffled in, so the texts that fall back to normalize() sit between mapped ones
    texts += [" ".join(rng.sample(EDGE, 4)) for _ in range(200)]
    rng.shuffle(texts)
    assert nb.normalize_many(texts) == [normalize(t) for t in texts]


def test_hash_chunk_keys_and_shingles_match_the_reference_path():
    texts = EDGE + _real_texts()[:300] + [None]
    keys, sigs, counts = hash_chunk(texts, 3, 128)
    ref = [normalize(t) for t in texts]
    assert keys.tolist() == [exact_key(t) if t else 0 for t in ref]
    hashes, offsets = sh.shingle_hashes(ref, 3)
    assert counts.tolist() == np.diff(offsets).tolist()
    cp, lens = nb.normalized_codepoints(texts)
    h2, o2 = sh.codepoint_shingle_hashes(cp, lens, 3)
    assert np.array_equal(hashes, h2) and np.array_equal(offsets, o2)


def test_arrow_utf8_texts_normalise_and_hash_as_the_str_list():
    import pyarrow as pa

    texts = EDGE + _real_texts()[:300] + [None, "", "尾"]
    arr = pa.array(texts, pa.string())
    for a in (arr, arr.slice(7, 200), pa.array(texts, pa.large_string())):
        sub = texts[7:207] if len(a) == 200 else texts
        u = nb.Utf8Texts.from_arrow(a)
        assert len(u) == len(sub)
        cp, lens = nb.normalized_codepoints(u)
        assert nb.strings(cp, lens) == [normalize(t) for t in sub]
        k1, s1, c1 = hash_chunk(u, 3, 128)
        k2, s2, c2 = hash_chunk(sub, 3, 128)
        assert np.array_equal(k1, k2) and np.array_equal(s1, s2) and np.array_equal(c1, c2)
