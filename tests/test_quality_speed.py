"""The quality rules' fast paths give the same values, flags and details as the plain versions
they replace (issue 20: `studio quality` made faster without changing any verdict).

Fast path: `_measure_chunk` (the echo similarity for the whole chunk at once, needle checks before
costly patterns, shared per-text caches, numpy counts). Reference: the same rules row by row with
every needle check switched off and the echo measured with `_similarity`, plus the plain regular
expressions and set comprehensions that text_stats and is_code_line stand for. Rows: generated
bilingual rows (benches/io_speed.py), the test suite's LLaMA-Factory demo rows, and hand-made rows
that hit every alternative of the gated patterns (refusals, placeholders, template tokens, links,
mojibake, the letters re.IGNORECASE folds: 'ſ', 'K', 'İ', 'ı')."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from curation import quality, text_shape, text_stats
from curation.importers.alpaca import user_turn

ROOT = Path(__file__).resolve().parents[1]

HAND = [
    ("Describe Paris", "I'm sorry, but I can't help with that."), ("怎么做蛋糕？", "抱歉，我无法满足你的请求。"),
    ("Write a poem", "As an AI language model, I cannot write poems, but here is one."), ("写诗", "作为一个AI语言模型，我不能创作诗歌。"),
    ("Explain", "Well, I am unable to do that."), ("Explain", "Unfortunately, I cannot complete this task."),
    ("Explain", "I regret that I can't answer."), ("Explain", "ı'm sorry, but ı can't."), ("Explain", "İ am unable to help."),
    ("Explain", "AS AN AI, I DO NOT HAVE OPINIONS."), ("Explain", "I apologiſe, but I am not able to do it."),
    ("解释", "我无法回答这个问题。"), ("解释", "很遗憾，我不能提供这方面的信息。"), ("解释", "不好意思，我没办法回答。"),
    ("Write code", "TODO: fill in later"), ("Write", "Lorem ipsum dolor sit amet."), ("Write", "Dear [INSERT NAME], hello."),
    ("Write", "Hi <YOUR NAME>, {{name}} is here."), ("写", "内容待补充。"), ("写", "此处省略（略）(略)在此处填写"),
    ("Write", "lorem`x`ipsum and LOREM IPSUM"), ("Write", "tbd fixme ToDo"), ("Write", "[placeholder text] [add more]"),
    ("Describe", "Paris.<|im_end|>"), ("Describe", "[INST] Paris [/INST] <<SYS>> </s> <unk> <start_of_turn>"),
    ("Describe", "Text\n## Response:\nmore"), ("Describe", "See https://example.com/a/b or WWW.EXAMPLE.COM"),
    ("Describe", "HTTP://EXAMPLE.COM"), ("Describe", "www.example.com"), ("Describe", "Ã©tÃ© â€™ æ–‡ \ufffd"),
    ("Describe", "This is **bold** and **open"), ("List 10 animals.", "Cat, dog."), ("写出10个成语", "一马当先"), ("Give one word for happy", "Glad"), ("How many moons?", "1"),
    ("Is it hot, cold, or warm", "Warm"), ("Yes or no: is it blue", "Yes"), ("Write a SQL query", "SELECT 1"),
    ("这句话的情感是正面还是负面？", "正面"), ("给我一个数字", "7"), ("这是对的吗？", "对"), ("Tell me whether it rains", "No"),
    ("Name the King", "Lear"), ("Give a ſlogan", "Go"), ("Pick a colour", "Blue"), ("Write a regular expression", "a+"), ("写", "长城很长。It is long."), ("Translate into English", "你好"),
    ("Answer in English: 长城在哪里？", "In China."), ("", ""), ("Q", ""), ("", "A"), ("Same", "Same"),
    ("Summarize the following.\n\nThe cat sat.", "The cat sat."), ("How many legs?", "4"), ("Name a colour", "Red."),
    ("x", "\U0001f600 emoji \U0001f600 text with words"), ("x", "Ｆｕｌｌ　ｗｉｄｔｈ ＡＢＣ"), ("Write a function", "def f(x):\n    return"),
    ("Show code", "Here:\n```python\nprint(1)\n```\nand `inline`"), ("Kelvin", "\u212aelvin sorry \u212a"),
]


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> list[tuple[str, str]]:
    sys.path.insert(0, str(ROOT / "benches"))
    try:
        import io_speed
    finally:
        sys.path.pop(0)
    got = list(HAND)
    for name in ("alpaca_zh_demo.json",):
        for r in json.loads((ROOT / "tests/data/llamafactory" / name).read_text(encoding="utf-8")):
            got.append((user_turn(r["instruction"], r.get("input") or None), r["output"]))
    src = tmp_path_factory.mktemp("gen") / "rows.jsonl"
    io_speed.generate(src, 1500, seed=3)
    for line in src.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        got.append((user_turn(r["instruction"], r["input"] or None), r["output"]))
    return got


def _reference(rows, monkeypatch) -> tuple[dict, dict]:
    """Row by row, no needle checks, the echo from `_similarity`, caches emptied first."""
    monkeypatch.setattr(quality, "may_contain", lambda text, needles: True)
    monkeypatch.setattr(text_shape, "may_contain", lambda text, needles: True)
    for f in (text_shape.looks_like_code, text_shape.strip_code, quality._prose_of, text_stats.cjk_and_words, text_stats.folded):
        f.cache_clear()
    rules = quality.load_rules()
    thresholds = {r.id: r.threshold for r in rules}
    values: dict = {"sample_id": [], "rule_id": [], "value": []}
    flags: dict = {"sample_id": [], "rule_id": [], "value": [], "threshold": [], "detail": []}
    for sid, (i, a) in enumerate(rows):
        for rid, value, flagged, detail in quality.measure_sample(rules, i, a, ""):
            if quality.RULES[rid].numeric:
                for k, v in zip(values, (sid, rid, value)):
                    values[k].append(v)
            if flagged:
                for k, v in zip(flags, (sid, rid, value, thresholds[rid], detail)):
                    flags[k].append(v)
    return values, flags


def test_fast_chunk_equals_reference_row_by_row(rows, monkeypatch):
    ids = list(range(len(rows)))
    fast = quality._measure_chunk(quality.load_rules(), ids, [i for i, _ in rows], [a for _, a in rows], [None] * len(rows))
    ref = _reference(rows, monkeypatch)
    assert fast[0] == ref[0]
    assert fast[1] == ref[1]
    assert len(fast[1]["sample_id"]) > 40  # the hand rows do fire


def test_echo_similarities_equal_similarity_row_by_row(rows):
    from curation.normalize import normalize

    ins = [i for i, _ in rows]
    ans = [a for _, a in rows]
    got = quality.echo_similarities(ins, ans)
    for (i, a), g in zip(rows, got):
        b = normalize(a)
        if not b or not i.strip():
            assert g is None
            continue
        want = max(0.0, quality._similarity(normalize(i), b), quality._similarity(normalize(text_shape.split_user_turn(i)[0]), b))
        assert g == want, (i, a)


def test_is_code_line_equals_the_code_line_pattern(rows):
    lines = {ln for _, a in rows for ln in a.splitlines()} | {
        "x = 1;", "  }", "def f(x):", "    indented", "\tx", "a == b", "f(x)", "f(x)  ", "f(x y)", "// c", "# c", "## h",
        "-- sql", "<div>", "SELECT 1", "a -> b", "x :=1", "", "   ", "total=5", "end.)", "call(a, b)"}
    for ln in lines:
        assert text_shape.is_code_line(ln) == bool(text_shape._CODE_LINE.search(ln)), ln


def test_short_wanted_parts_equal_the_whole_pattern(rows):
    firsts = {text_shape.split_user_turn(i)[0].split("\n", 1)[0][:300] for i, _ in rows} | {
        "Give one word for happy", "How many moons?", "Is it hot, cold, or warm", "Pick red, blue or green.", "Write a regular expression",
        "Find the synonym", "Tell me whether", "这是对的吗？", "给我一个数字", "The Following Sentence", "HOW MUCH", "a ſlogan", "\u212aey word"}
    for f in firsts:
        assert text_shape.short_wanted(f) == bool(text_shape._SHORT_WANTED.search(f)), f


def test_counts_equal_the_plain_versions(rows):
    texts = [t for pair in rows for t in pair] + ["\ud800 lone surrogate", "x\U00020000y 字", "__init__ x_1 ２３ é"]
    cjk, word = re.compile(f"[{quality.lang.CJK_CLASS}]"), re.compile(f"[^\\W{quality.lang.CJK_CLASS}]+")
    for t in texts:
        assert text_stats.cjk_and_words.__wrapped__(t) == (len(cjk.findall(t)), len(word.findall(t))), t
        s = "".join(t.split())
        assert text_stats.distinct_char_ngrams(s, 5) == len({s[i:i + 5] for i in range(len(s) - 4)}), t
        toks = quality._TOKEN.findall(t.lower())
        assert text_stats.distinct_token_ngrams(toks, 3) == len({tuple(toks[i:i + 3]) for i in range(len(toks) - 2)})
