"""The numba kernels of curation/text_kernels.py give the numpy versions' results bit for bit:
shingle hashes (tokens, CJK runs, role marks, short runs, characters past the BMP) and normalised
code points (dropped and collapsed whitespace, texts left to normalize())."""
from __future__ import annotations

import random

import numpy as np
import pytest

from curation import normalize_bulk as nb
from curation import shingles as sh
from curation import text_kernels
from curation.normalize import ROLE_MARKS, normalize

U, A, S = ROLE_MARKS["user"], ROLE_MARKS["assistant"], ROLE_MARKS["system"]

CRAFTED = [
    "", " ", "a", "hello world", "  Hello,   World!  ", "快速排序", "请把 quick sort 写成 Python", "你好",
    f"{U}what is 2+2{A}4", f"{S}be brief{U}请翻译{A}translate this please", f"{U}{A}", f"x{U}y z{U}w",
    "a\u200bb", "\u200b", "tab\there\nnew  line", "中 文 a b 中", "a\u3000b", "…", "straße", "e\u0301",
    "😀 smile 😀", "𠀀𠀁𠀂 cjk ext b", "x\x00y", "ｆｕｌｌ，ｗｉｄｔｈ！", "カタカナ・テスト", "한국어 텍스트",
    "under_score snake_case", "123 456 7.89", "mixed中文and English混合", "\ue001" * 3, "a" * 300,
    " ".join(["word"] * 200),
]


def _random_text(rng: random.Random) -> str:
    pools = ["abc XYZ", "  \t\n", "中文字符测试", "，。！？、", "\u200b\u200d", "ßé…—", "😀🎉", "𠀀𠀁", "\ue001\ue002\ue003",
             "0123456789", "_-", "カナ", "한글", "\u3000", "Ｆｕｌｌ"]
    return "".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(0, 60)))


def _texts() -> list[str]:
    rng = random.Random(7)
    return CRAFTED + [_random_text(rng) for _ in range(400)]


@pytest.fixture
def numpy_only(monkeypatch):
    """Run the block with the numpy versions (as without numba)."""
    def use(flag: bool) -> None:
        if flag:
            monkeypatch.setenv("STUDIO_NO_JIT", "1")
        else:
            monkeypatch.delenv("STUDIO_NO_JIT", raising=False)
    return use


def test_the_kernels_are_there_and_can_be_switched_off(monkeypatch):
    monkeypatch.delenv("STUDIO_NO_JIT", raising=False)
    assert text_kernels.shingler() is not None and text_kernels.normalizer() is not None
    assert text_kernels.key_hasher() is not None
    monkeypatch.setenv("STUDIO_NO_JIT", "1")
    assert text_kernels.shingler() is None and text_kernels.normalizer() is None
    assert text_kernels.key_hasher() is None


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_shingler_equals_numpy(numpy_only, n):
    normed = [normalize(t) for t in _texts()]
    cp, lens = nb._encode(normed)
    numpy_only(True)
    ref = sh.codepoint_shingle_hashes(cp, lens.copy(), n)
    numpy_only(False)
    got = sh.codepoint_shingle_hashes(cp, lens.copy(), n)
    assert got[0].dtype == ref[0].dtype == np.uint32
    assert np.array_equal(got[1], ref[1]) and np.array_equal(got[0], ref[0])
    assert ref[0].size > 1000  # the texts do make shingles


def test_shingler_on_one_text_and_on_none(numpy_only):
    for texts in ([], [""], ["a"], ["中"], [f"{U}"]):
        cp, lens = nb._encode(texts) if texts else (np.zeros(0, np.uint32), np.zeros(0, np.int64))
        numpy_only(True)
        ref = sh.codepoint_shingle_hashes(cp, lens.copy(), 3)
        numpy_only(False)
        got = sh.codepoint_shingle_hashes(cp, lens.copy(), 3)
        assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1]), texts


def test_normalizer_equals_numpy_and_normalize(numpy_only):
    texts = _texts()
    numpy_only(True)
    ref = nb.normalized_codepoints(texts)
    numpy_only(False)
    got = nb.normalized_codepoints(texts)
    assert np.array_equal(got[1], ref[1]) and np.array_equal(got[0], ref[0])
    assert nb.strings(*got) == [normalize(t) for t in texts]
    # some texts were left to normalize() (ß, …, e + combining accent, emoji, an inner NUL)
    image, _ = nb.tables()
    assert any((image[np.frombuffer(t.encode("utf-32-le"), np.uint32)] == nb.COMPLEX).any() for t in texts)


def test_normalizer_on_arrow_texts(numpy_only):
    pa = pytest.importorskip("pyarrow")
    texts = _texts()
    arr = pa.array(texts)
    numpy_only(True)
    ref = nb.normalized_codepoints(nb.Utf8Texts.from_arrow(arr))
    numpy_only(False)
    got = nb.normalized_codepoints(nb.Utf8Texts.from_arrow(arr))
    assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1])


def test_exact_keys_equal_numpy_and_the_single_text_key(numpy_only):
    """The compiled exact keys equal the numpy definition and normalize.exact_key of each text:
    0 for an empty text, equal for equal texts, distinct for the distinct texts here (order,
    length and a code point's position all count)."""
    from curation.normalize import exact_key

    normed = [normalize(t) for t in _texts()] + ["ab", "ba", "a", "aa", "a b", "ab\0", "\0ab", "𠀀", "\uffff" * 2]
    cp, lens = nb._encode(normed)
    numpy_only(True)
    ref = nb.exact_keys(cp, lens)
    numpy_only(False)
    got = nb.exact_keys(cp, lens)
    assert got.dtype == ref.dtype == np.int64 and np.array_equal(got, ref)
    assert got.tolist() == [exact_key(t) for t in normed]
    by_text = dict(zip(normed, got.tolist()))
    assert by_text[""] == 0 and all(k != 0 for t, k in by_text.items() if t)
    assert len(set(by_text.values())) == len(by_text)  # no two distinct texts share a key
    assert nb.exact_keys(np.zeros(0, np.uint32), np.zeros(0, np.int64)).size == 0


def test_utf8_decoder_equals_python(numpy_only):
    """Arrow texts decoded by the kernel: the same code points and lengths as Python's codecs,
    for every byte length of UTF-8, an inner NUL, empty texts and a sliced array."""
    pa = pytest.importorskip("pyarrow")
    texts = _texts() + ["", "x\x00y", "\x00", "é中😀\U0010ffff\x7f\x80\u07ff\u0800\uffff\U00010000"]
    arr = pa.array(texts)
    for sub in (arr, arr.slice(3, 50)):
        numpy_only(True)
        ref = nb.Utf8Texts.from_arrow(sub).codepoints()
        numpy_only(False)
        got = nb.Utf8Texts.from_arrow(sub).codepoints()
        assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1])
        assert [got[2](i) for i in range(len(sub))] == sub.to_pylist()


def test_utf8_decoder_stops_at_a_cut_off_sequence():
    """Invalid UTF-8 (a sequence cut off by the text's end) becomes U+FFFD; the next text is read
    from its own start, never from the bytes the cut sequence would have run into."""
    decode = text_kernels.utf8_decoder()
    if decode is None:
        pytest.skip("numba is not installed")
    data = np.frombuffer("ab".encode() + "中".encode()[:2] + "xy".encode() + "😀".encode()[:3], np.uint8)
    offsets = np.array([0, 4, 6, 9], np.int64)
    cp, lens = np.empty(data.size + 3, np.uint32), np.empty(3, np.int64)
    n = decode(data, offsets, cp, lens)
    assert cp[:n].tolist() == [ord("a"), ord("b"), 0xFFFD, 0, ord("x"), ord("y"), 0, 0xFFFD, 0]
    assert lens.tolist() == [4, 3, 2]


def test_row_agreement_equals_the_gathered_estimates(numpy_only):
    from curation.dedup.similarity import estimates_at

    rng = np.random.default_rng(3)
    sigs = rng.integers(0, 4, size=(500, 64), dtype=np.uint32)  # few values: every agreement count occurs
    ia, ib = rng.integers(0, 500, 2000), rng.integers(0, 500, 2000)
    ia[:5] = ib[:5]  # a row against itself agrees everywhere
    numpy_only(True)
    want = estimates_at(sigs, ia, ib)
    numpy_only(False)
    assert text_kernels.row_agreement() is not None
    got = estimates_at(sigs, ia, ib)
    assert np.array_equal(got, want) and (got[:5] == 1.0).all() and len(set(got.tolist())) > 10
    assert estimates_at(sigs, ia[:0], ib[:0]).size == 0
