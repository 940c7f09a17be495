"""Quality rules: each fires on a bad sample and stays quiet on a good one, in Chinese and English;
a run stores flags with value, threshold and detail; preview counts what applying would flag;
rules files with mistakes fail with file:line: field messages."""
from __future__ import annotations

import json

import pytest

from curation import quality, store, undo
from curation.errors import StudioError
from curation.quality import Rule, load_rules, measure_sample
from curation.samples import chat

GOOD_ZH = ("请解释什么是递归。", "递归是指一个函数在执行过程中调用自身。它需要一个终止条件，否则会无限调用下去。典型的例子是计算阶乘和斐波那契数列。")
GOOD_EN = ("Explain what recursion is.", "Recursion is when a function calls itself. It needs a base case that stops the "
           "calls, otherwise it would run forever. Factorials and Fibonacci numbers are classic examples.")

# rule id -> (bad zh, bad en, extra good cases that must not fire)
CASES = {
    "answer_too_short": (("请解释什么是递归。", "好"), ("Explain what recursion is.", "Yes."), [("2+2等于几？", "等于四。")]),
    "answer_equals_instruction": (("把这句话重复一遍：今天天气很好", "把这句话重复一遍：今天天气很好"),
                                  ("Repeat after me: the weather is nice", "Repeat after me: the weather is nice"), []),
    "char_repetition": (("笑一个", "哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈"), ("Scream", "a" * 40), []),
    "word_repetition": (("说点什么", "我喜欢你" * 8), ("Say something", " ".join(["I really like this"] * 8)), []),
    "line_repetition": (("列出三个水果", "苹果很好吃\n苹果很好吃\n苹果很好吃\n香蕉也不错"),
                        ("List three fruits", "apples are good\napples are good\napples are good\nbananas too"),
                        [("写一个表格", "| 名称 | 数量 |\n|---|---|\n| 苹果 | 1 |\n| 香蕉 | 2 |")]),
    "mojibake": (("解释这段文字", "è¿™æ˜¯ä¸€æ®µä¹±ç \u00e6–‡"), ("Explain the text", "The cafÃ© serves â€œgoodâ€ coffee."),
                 [("Say hi in French", "Bonjour! Ça va? Très bien, merci.")]),
    "markup_debris": (("介绍北京", "<div><p>北京是中国的首都&nbsp;历史悠久</p></div>"),
                      ("Describe Paris", "<p>Paris is the capital of France.</p><br/>It is&nbsp;old."),
                      [("Write an HTML paragraph", "```html\n<p>Hello</p>\n<div>World</div>\n```")]),
    "truncated_answer": (("介绍一下长城", "长城是中国古代的军事防御工程，东起山海关，西至嘉峪关，全长两万多公里，它的修建历经了多个朝代，其中明长城保存最为完整，每年吸引"),
                         ("Describe the Great Wall", "The Great Wall is a series of fortifications built across northern China over "
                          "many centuries, and"),
                         [("Show code", "Here you go:\n```python\nprint(1)\n```"), ("List steps", "Steps:\n1. Open the file\n2. Read it")]),
    "url_only_answer": (("官网是哪个？", "https://www.example.cn/"), ("Where can I read more?", "https://example.com/docs"),
                        [("Where?", "See https://example.com/docs for the full reference, section 2.")]),
    "refusal": (("怎么做蛋糕？", "抱歉，我无法回答这个问题。"), ("How do I bake a cake?", "As an AI language model, I cannot help with that."),
                []),
    "placeholder": (("写一段自我介绍", "待补充"), ("Write a bio", "[INSERT BIO HERE]"),
                    [("Write a function", "```python\ndef f():\n    pass  # TODO later\n```")]),
    "language_mismatch": (("什么是机器学习？", "Machine learning is a field of AI where models learn patterns from data."),
                          ("What is machine learning?", "机器学习是人工智能的一个分支，让模型从数据中学习规律。"),
                          [("把这句话翻译成英文：我爱你", "I love you."), ("Translate into Chinese: good morning", "早上好"),
                           ("写一个Python函数计算两数之和", "```python\ndef add(a, b):\n    return a + b\n```"),
                           ("用英文回答：你好吗？", "I am fine, thank you for asking.")]),
    "too_long": (("写一篇文章", "这是一个很长的句子。" * 500), ("Write an essay", "This is a long sentence. " * 500), []),
}


def fired(rule_id, instruction, answer):
    rules = [r for r in load_rules() if r.id == rule_id]
    return [(rid, v, d) for rid, v, f, d in measure_sample(rules, instruction, answer) if f]


@pytest.mark.parametrize("rule_id", sorted(CASES))
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_rule_fires_on_bad_and_not_on_good(rule_id, lang):
    bad = CASES[rule_id][0 if lang == "zh" else 1]
    hits = fired(rule_id, *bad)
    assert hits and hits[0][0] == rule_id and hits[0][2], (rule_id, lang, bad)
    good = GOOD_ZH if lang == "zh" else GOOD_EN
    assert fired(rule_id, *good) == []
    for extra in CASES[rule_id][2]:
        assert fired(rule_id, *extra) == [], extra


def test_every_builtin_rule_is_in_the_default_file_and_tested():
    assert {r.id for r in load_rules()} == set(quality.RULES) == set(CASES)


def add(ws, *samples):
    with ws.transaction():
        return store.insert_samples(ws.con, list(samples))


def test_run_stores_flags_with_value_threshold_detail_and_replaces_them(ws):
    ids = add(ws, chat(*GOOD_ZH), chat(*GOOD_EN), chat("问题", "猫"), chat("Question", "https://example.com"))
    report = quality.run_quality(ws)
    assert report.samples == 4 and report.flagged_samples == 2
    flags = quality.flags_of(ws.con, ids[2])
    assert [f["rule_id"] for f in flags] == ["answer_too_short"]
    assert flags[0]["value"] == 1 and flags[0]["threshold"] == 3 and "1 unit" in flags[0]["detail"]
    assert [f["rule_id"] for f in quality.flags_of(ws.con, ids[3])] == ["answer_too_short", "url_only_answer"]
    assert quality.flags_of(ws.con, ids[0]) == []
    # Values are stored for every checked sample, flagged or not.
    assert ws.con.execute("SELECT count(*) FROM quality_values WHERE rule_id = 'answer_too_short'").fetchall()[0][0] == 4
    # A second run with a stricter rule replaces the flags of the checked samples.
    rules = [Rule("answer_too_short", True, 100.0)]
    quality.run_quality(ws, rules=rules, sample_ids=[ids[0]])
    assert [f["rule_id"] for f in quality.flags_of(ws.con, ids[0])] == ["answer_too_short"]
    assert [f["rule_id"] for f in quality.flags_of(ws.con, ids[3])] == ["answer_too_short", "url_only_answer"]
    undo.undo(ws)
    assert quality.flags_of(ws.con, ids[0]) == []
    undo.undo(ws)
    assert ws.con.execute("SELECT count(*) FROM quality_flags").fetchall()[0][0] == 0


@pytest.mark.parametrize("rule_id,threshold", [("answer_too_short", 10), ("answer_too_short", 40), ("char_repetition", 0.1),
                                               ("too_long", 30), ("answer_equals_instruction", 0.3)])
def test_preview_equals_what_applying_would_flag(ws, rule_id, threshold):
    add(ws, chat(*GOOD_ZH), chat(*GOOD_EN), chat("问题", "好的好的"), chat("Q", "yes yes yes"), chat("笑", "哈" * 30),
        chat("Repeat: abc def", "Repeat: abc def ghi"), chat("长", "很长的句子。" * 20))
    quality.run_quality(ws)
    predicted = quality.preview(ws.con, rule_id, threshold)
    quality.run_quality(ws, rules=[Rule(rule_id, True, float(threshold))])
    applied = ws.con.execute("SELECT count(DISTINCT sample_id) FROM quality_flags WHERE rule_id = ?", [rule_id]).fetchall()[0][0]
    assert predicted == applied
    hist = quality.distribution(ws.con, rule_id, bins=5)
    assert sum(n for *_, n in hist) == 7


def test_preview_of_yes_no_or_unknown_rule_is_a_clear_error(ws):
    with pytest.raises(StudioError, match="yes/no"):
        quality.preview(ws.con, "refusal", 1)
    with pytest.raises(StudioError, match="unknown quality rule 'nope'"):
        quality.preview(ws.con, "nope", 1)


@pytest.mark.parametrize("text,message", [
    ("rules:\n  - id: answer_too_short\n    threshold: [1\n", r"rules\.yaml:\d+: not valid YAML"),
    ("just text\n", r"rules\.yaml:1: rules: expected a top-level 'rules:' list"),
    ("rules:\n  - id: answer_too_short\n    threshold: 3\n  - id: made_up\n    threshold: 1\n",
     r"rules\.yaml:4: rules\[1\]\.id: unknown rule 'made_up'"),
    ("rules:\n  - id: answer_too_short\n    threshold: lots\n", r"rules\.yaml:3: rules\[0\]\.threshold: expected a number, got 'lots'"),
    ("rules:\n  - id: answer_too_short\n    enabled: yes please\n    threshold: 3\n", r"rules\.yaml:3: rules\[0\]\.enabled: expected true or false"),
    ("rules:\n  - id: answer_too_short\n    threshhold: 3\n", r"rules\.yaml:2: rules\[0\]: unknown field\(s\) threshhold"),
    ("rules:\n  - id: mojibake\n    threshold: 1\n  - id: mojibake\n    threshold: 2\n", r"rules\.yaml:4: rules\[1\]\.id: rule 'mojibake' appears twice"),
])
def test_rules_file_errors_name_file_line_and_field(tmp_path, text, message):
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(StudioError, match=message):
        load_rules(path)


def test_missing_rules_file(tmp_path):
    with pytest.raises(StudioError, match="cannot read the rules file"):
        load_rules(tmp_path / "nope.yaml")


def test_user_rules_file_disables_and_moves_thresholds(ws, tmp_path):
    ids = add(ws, chat("问题", "猫狗"), chat("Question", "https://example.com"))
    path = tmp_path / "mine.yaml"
    path.write_text("rules:\n  - id: answer_too_short\n    enabled: true\n    threshold: 2\n"
                    "  - id: url_only_answer\n    enabled: false\n    threshold: 1\n", encoding="utf-8")
    quality.run_quality(ws, rules=path)
    assert quality.flags_of(ws.con, ids[0]) == []  # 2 units is not below 2
    assert [f["rule_id"] for f in quality.flags_of(ws.con, ids[1])] == ["answer_too_short"]


def test_cli_quality_and_preview(ws_path, capsys, tmp_path):
    from curation.workspace import open_workspace
    from studio.cli import main

    with open_workspace(ws_path) as w:
        add(w, chat(*GOOD_EN), chat("Q", "ok"), chat("问", "好"))
    assert main(["quality", "-w", str(ws_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["flagged_samples"] == 2 and data["by_rule"] == {"answer_too_short": 2}
    assert main(["quality", "-w", str(ws_path), "--preview", "answer_too_short=50"]) == 0
    assert "answer_too_short at 50: 3 samples would be flagged" in capsys.readouterr().out
    assert main(["quality", "-w", str(ws_path), "--preview", "answer_too_short"]) == 2
    assert "expected RULE=THRESHOLD" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - id: x\n    threshold: 1\n", encoding="utf-8")
    assert main(["quality", "-w", str(ws_path), "--rules", str(bad)]) == 2
    assert "bad.yaml:2: rules[0].id: unknown rule 'x'" in capsys.readouterr().err
