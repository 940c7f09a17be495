"""The structure of an instruction and its answer, as the quality rules read it: code blocks and
code-like answers, list items, tables, sentence ends, the instruction apart from its input, and
whether an instruction asks for a developed answer or a short one.

The rules judge by structure (does the last sentence end? is this fence ever closed? does a tag
sit in prose?) rather than by lists of bad strings, so they hold on data they were not tuned on.
"""
from __future__ import annotations

import functools
import re

from . import lang
from .text_stats import may_contain

_CJK = lang.CJK_CLASS

FENCE_LINE = re.compile(r"^[ \t]*(?:```|~~~)", re.M)
FENCED = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)", re.S)
INLINE_CODE = re.compile(r"`[^`\n]+`")


@functools.lru_cache(maxsize=64)
def strip_code(text: str) -> str:
    """The text with fenced blocks and inline code replaced by a space."""
    return INLINE_CODE.sub(" ", FENCED.sub(" ", text))


def open_fence_tail(text: str) -> str | None:
    """What follows a code fence that is never closed (None when every fence is closed). The tail
    starts after the fence line, so a language tag is not part of it."""
    fences = list(FENCE_LINE.finditer(text))
    if len(fences) % 2 == 0:
        return None
    last = fences[-1]
    nl = text.find("\n", last.end())
    return "" if nl < 0 else text[nl + 1:]


# -- code without fences -----------------------------------------------------------------------------
_CODE_LINE = re.compile(
    r"[;{}]\s*$|^\s*[})\]]|^\s*(?:def|class|import|from|return|if|elif|else|for|while|try|except|with|function|var|let|const"
    r"|public|private|static|void|int|float|double|char|bool|string|#include|#define|SELECT|INSERT|UPDATE|DELETE|CREATE"
    r"|FROM|WHERE|print|console\.|System\.|echo|<\?php|package|fn|func|struct|impl|switch|case|break|continue)\b"
    r"|^\s*(?:<[a-zA-Z!/][^>]*>)|^\s*(?://|#(?!#)|/\*|\*/|--\s)|\w\s*(?:==|!=|<=|>=|\+=|-=|=>|->|:=)\s*\S|\w\([^()\s]*\)\s*$"
    r"|^\s*[\w.\[\]]+\s*=\s*\S|^(?: {4}|\t)\S")
# The same test, split for speed (is_code_line): the anchored alternatives in one `match`, the
# end-of-line ones by the line's last character, the operator one only where an operator can be.
# `_CODE_LINE` stays the definition; tests/test_quality_speed.py checks that both agree.
_CODE_LINE_START = re.compile(
    r"\s*(?:[})\]]|(?:def|class|import|from|return|if|elif|else|for|while|try|except|with|function|var|let|const"
    r"|public|private|static|void|int|float|double|char|bool|string|#include|#define|SELECT|INSERT|UPDATE|DELETE|CREATE"
    r"|FROM|WHERE|print|console\.|System\.|echo|<\?php|package|fn|func|struct|impl|switch|case|break|continue)\b"
    r"|<[a-zA-Z!/][^>]*>|//|#(?!#)|/\*|\*/|--\s|[\w.\[\]]+\s*=\s*\S)|(?: {4}|\t)\S")
_CODE_OPERATOR = re.compile(r"\w\s*(?:==|!=|<=|>=|\+=|-=|=>|->|:=)\s*\S")
_CODE_CALL_END = re.compile(r"\w\([^()\s]*\)$")


def is_code_line(line: str) -> bool:
    """Whether one line carries code syntax: `_CODE_LINE.search(line)`, about 5x faster on prose."""
    end = line.rstrip()[-1:]
    if end in (";", "{", "}") or _CODE_LINE_START.match(line):
        return True
    if end == ")" and _CODE_CALL_END.search(line.rstrip()):
        return True
    return ("=" in line or "->" in line) and _CODE_OPERATOR.search(line) is not None


@functools.lru_cache(maxsize=64)
def looks_like_code(text: str) -> bool:
    """Whether an answer (or a part of one) is code written without fences: most of its lines
    carry code syntax. One-line answers count when the line is unmistakable (`x = f(1);`)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return False
    if not text.isascii() and len(lang.CJK_RE.findall(text)) * 5 > len("".join(text.split())):
        return False  # Chinese prose, whatever its punctuation
    if len(lines) == 1:
        return bool(re.search(r"[;{}]\s*$|^\s*(?:def|class|import|SELECT|#include|function|public)\b|\w\([^()]*\)\s*;?\s*$"
                              r"|^\s*[\w.\[\]]+\s*=\s*\S", lines[0])) and not re.search(r"[.!?。！？]\s*$", lines[0])
    # Code when at least half the lines carry code syntax: stop as soon as that is decided.
    need = (len(lines) + 1) // 2
    hits = 0
    for k, ln in enumerate(lines):
        if is_code_line(ln):
            hits += 1
            if hits >= need:
                return True
        elif hits + len(lines) - k - 1 < need:
            return False
    return False


def looks_like_markup(text: str) -> bool:
    """Whether an answer is a markup document (HTML/XML/SVG) rather than prose with tags in it."""
    s = text.strip()
    if "\n" not in s:  # "<p>prose</p>" on one line is prose in a wrapper: debris
        return False
    tags = re.findall(r"</?[A-Za-z][\w:-]*[^<>]*>", s)
    return bool(re.match(r"<(?:!doctype|html|\?xml|svg|head|body|form|table|ul|ol|div|section|nav)\b", s, re.I)) \
        or sum(map(len, tags)) * 3 >= len(s)


# -- lines, lists, sentences -------------------------------------------------------------------------
LIST_MARKER = re.compile(r"^\s*(?:[-*+•·]\s+|\d{1,3}[.)、:：]\s*|[a-zA-Z][.)]\s+|[（(]\d{1,3}[)）]\s*"
                         r"|[一二三四五六七八九十]{1,3}[、.．]\s*|#{1,6}\s+|>\s*)")
TABLE_LINE = re.compile(r"^\s*\|.*\|\s*$|^\s*\|")
_LABEL = re.compile(r"^[^：:。.!?！？\s]{1,8}\s?[：:]")  # "标题：...", "Answer: ..."
SENTENCE_END = set(".!?。！？…;；")
CLOSERS = set("\"'”’)）]】」』》>`*_~")
# Endings that complete a thing without a full stop: numbers, units, formulas, symbols, emoji.
_COMPLETE_END = re.compile(r"[\d%‰°℃℉$€£¥²³½¼¾=+×÷±√∞π→←↑↓✓✔︎\u2600-\u27bf\U0001f000-\U0001faff]$"
                           r"|\d\s?(?:[mgsLKWVAJN]|Pa|mg|kg|km|cm|mm|nm|µm|μm|ms|ml|mL|mph|kph|min|sec|hrs?|lbs?|oz|ft|in|yd"
                           r"|GB|MB|KB|TB|Hz|kHz|MHz|GHz|kW|kWh|mAh|°[CF]|[CF]°)\.?$")
_ABBREV = re.compile(r"\b(?:e\.g|i\.e|etc|vs|Mr|Mrs|Ms|Dr|Prof|St|No|Fig|approx|ca|cf|al|Jr|Sr|Inc|Ltd|Co|U\.S|U\.K|a\.m|p\.m|ft|feat|vol|ch|pp|op)\.$", re.I)

# Words a sentence does not end on: articles, prepositions, conjunctions, auxiliaries, determiners.
_FUNCTION_WORDS = frozenset(
    "a an the and or but nor so yet because although though while whereas if unless until since than as of to in on at by "
    "for from with without into onto upon about above below between among through during before after over under against "
    "toward towards within across behind beyond via per is are was were be been being am has have had do does did will would "
    "shall should can could may might must this these those that which who whom whose where when such their its his her our "
    "your my very more most less least also both either neither each every any some no not such including like".split())
_CJK_FUNCTION_END = re.compile(r"(?:的|和|与|及|或|在|把|被|对|从|向|跟|给|但|而|并|且|因为|所以|如果|以及|例如|比如|包括|是|的一|一个|这个|那个|这些|那些|通过|由于|虽然|然后|并且|或者|还有|以便|使得|比)$")


def _left_open(line: str) -> str:
    """A quote or bracket opened in `line` and never closed ('' when all are closed)."""
    if line.count('"') % 2 == 1 and re.search(r'(?:^|\s)"[^"]*$', line):
        return "a quote"
    for o, c in ("“”", "()", "（）", "「」", "《》"):
        if line.count(o) > line.count(c):
            return f"{o!r}"
    return ""


def last_line(text: str) -> str:
    for ln in reversed(text.splitlines()):
        if ln.strip():
            return ln.strip()
    return ""


def is_structural_line(line: str) -> bool:
    """A list item, table row, heading or quote line: such lines may end without a full stop."""
    return bool(LIST_MARKER.match(line) or TABLE_LINE.match(line) or _LABEL.match(line))


def unfinished_ending(text: str) -> str:
    """Why `text` (prose, code excluded by the caller) stops mid-sentence, or '' when it ends the
    way finished text ends: sentence punctuation, a closing quote or bracket, a number, unit or
    formula, a list item or table row, a short label or title."""
    s = text.rstrip()
    if not s:
        return ""
    end = s[-1]
    line = last_line(s)
    if re.search(r"(?:[#@]\w+|https?://\S+)$", s):
        return ""  # a hashtag, a mention or a link
    if end in ",，、:：(（[【{&/\\–—" or s.endswith(("...,", " -")):
        return f"ends with {end!r}"
    if end in SENTENCE_END or end in CLOSERS or _COMPLETE_END.search(s[-12:]):
        return ""
    body = LIST_MARKER.sub("", line, count=1)
    cjk_end = bool(re.match(f"[{_CJK}]", end))
    if not cjk_end and not end.isalpha():
        return ""
    if cjk_end:
        if _LABEL.match(line) and "。" not in line:
            return ""  # a "标题：..." line
        m = _CJK_FUNCTION_END.search(s[-4:])
        if m and len(lang.CJK_RE.findall(body)) >= 5:
            return f"ends on {m.group(0)!r}"
        if TABLE_LINE.match(line):
            return ""
        # Clauses before the tail: a sentence that was cut, not a label or a list of words.
        cut = max(body.rfind(p) for p in "。！？；，")
        if cut >= 0 and len(body) - cut - 1 >= 2 and len(lang.CJK_RE.findall(body)) >= 12:
            return "the last sentence has no end"
        if is_structural_line(line):
            return ""
        earlier = s[: len(s) - len(line)].rstrip()
        # a last paragraph after a finished one that never ends, however short: the text was cut
        # right after the paragraph break ("...的满意度。\n\n因")
        if earlier and earlier[-1] in "。！？" and (len(lang.CJK_RE.findall(body)) >= 1 or "，" in body):
            return "the last paragraph has no end"
        return ""
    words = re.findall(r"[A-Za-z\u00c0-\u024f']+", body)
    if not words:
        return ""
    opened = _left_open(body)
    if opened and len(words) >= 2:
        return f"{opened} is never closed"
    last = words[-1].lower()
    if last in _FUNCTION_WORDS and len(words) >= 4 and not TABLE_LINE.match(line):
        return f"ends on {words[-1]!r}"
    if TABLE_LINE.match(line) or (is_structural_line(line) and not re.search(r"[.!?]\s+[A-Z]", body)):
        return ""
    # A sentence break inside the last line, then a tail that never ends.
    breaks = [m for m in re.finditer(r"[.!?](?=\s+[A-Z\"'“])", body) if not _ABBREV.search(body[: m.end()])]
    if breaks and len(re.findall(r"[A-Za-z']+", body[breaks[-1].end():])) >= 2:
        return "the last sentence has no end"
    earlier = s[: len(s) - len(line)].rstrip()
    if len(words) >= 6 and earlier and earlier[-1] in ".!?" and body[:1].isupper() and not is_structural_line(line):
        return "the last paragraph has no end"
    lowers = sum(1 for w in words if w[:1].islower())
    # One sentence (not a title: most words are lower case) that never ends.
    if (len(words) >= 15 or (len(words) >= 6 and earlier == "" and body[:1].isupper())) and lowers * 3 >= len(words) * 2:
        return "a sentence with no end"
    return ""


_CODE_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'')
_CODE_DANGLING = re.compile(
    r"(?:[,(\[{=+\-*/&|<]|\b(?:FROM|WHERE|SELECT|BY|AND|OR|JOIN|ON|SET|VALUES|INTO|return|var|let|const|int|float|double"
    r"|char|void|new|import|from|in|is|not|and|or|def|class|public|private|static|if|for|while|elif|else if))\s*$")


def unfinished_code(text: str) -> str:
    """Why unfenced code stops in the middle, or '': a bracket left open, a last line that ends on
    an operator, a comma or a keyword, or a Python block header without its colon."""
    s = text.rstrip()
    bare = _CODE_STRING.sub('""', s)
    for o, c in ("()", "[]", "{}"):
        if bare.count(o) > bare.count(c):
            return f"{o!r} is never closed"
    line = last_line(bare)
    if re.match(r"^\s*(?://|#|--)", line):
        return ""
    if _CODE_DANGLING.search(line) and not line.endswith(("++", "--", "*/")):
        return f"ends on {line.split()[-1]!r}"
    if (re.match(r"^\s*(?:for|if|while|def|class|elif|with|try|except)\b", line) and not line.endswith((":", "{", ";", ")"))
            and re.search(r":\s*$", bare, re.M)):
        return "a block header without its colon"
    return ""


# -- the instruction ---------------------------------------------------------------------------------
def split_user_turn(user: str) -> tuple[str, str]:
    """(instruction, input) of a user turn: the alpaca importer writes instruction, a blank line,
    then the input; a turn without a blank line is all instruction."""
    head, sep, rest = user.partition("\n\n")
    return (head.strip(), rest.strip()) if sep else (user.strip(), "")


_DEVELOPED = re.compile(
    r"(?:^|[.!?:]\s+)\W*(?:please\s+|(?:can|could|would) you\s+|kindly\s+|now\s+)?(?:explain|describe|discuss|elaborate|summari[sz]e|compare|contrast|analy[sz]e|outline|write|compose|draft|create"
    r"|generate|design|develop|list|provide|suggest|recommend|propose|brainstorm|plan|tell me about|give (?:me )?(?:some|a few|\d+|three|five|an? (?:overview|explanation|description|summary|example))"
    r")\b|\b(?:why|what are|in what ways|how (?:do|does|can|could|to|would|should|is|are|did|might|will))\b"
    r"|解释|描述|[简概论叙详]述|清单|讨论|阐述|说明|总结|概括|比较|分析|撰写|编写|写一|写出|写个|创作|创建|生成|设计|列出|列举|提供|建议|推荐|介绍|为什么|如何|怎么|怎样|哪些|讲讲|谈谈",
    re.I)
_SHORT_WANTED = re.compile(
    r"\b(?:an?|one|single|the(?! (?:following|given|above|below|provided|input|original|same)\b))(?: [\w-]+)? (?:number|word|name|title|letter|digit|integer|value|term|adjective|adverb|noun|verb|synonym"
    r"|antonym|colou?r|emoji|date|year|answer|sentence|phrase|slogan|headline|username|password|passphrase|hashtag|acronym|rhyme|string|url|link|noun|character)\b"
    r"|\bhow (?:many|much|old|long|far|often|tall|big)\b|\b(?:one|single)[- ]word\b|\byes or no\b|\btrue or false\b|\bwhether\b|\b\w+, \w+,? or \w+\W*$"
    r"|\b(?:code|script|regex|regular expression|selector|query|command|expression|snippet|one-liner)\b|情感|还是|或者?中性"
    r"|一个[^，。？\n]{0,6}?(?:数字|词|单词|名字|名称|用户名|标题|字|成语|句子|密码|口号|网址)|一句话|一个词|几个字|多少|是否|是不是|对不对|吗[？?]?$",
    re.I)


# _SHORT_WANTED cut into its alternatives, each run only where a word it needs occurs (every match of
# the part holds one of them, case-insensitively): the same answer as _SHORT_WANTED.search, 3x faster.
# tests/test_quality_speed.py checks that both agree.
_SHORT_WANTED_PARTS = [
    (re.compile(r"\b(?:an?|one|single|the(?! (?:following|given|above|below|provided|input|original|same)\b))(?: [\w-]+)? "
                r"(?:number|word|name|title|letter|digit|integer|value|term|adjective|adverb|noun|verb|synonym|antonym|colou?r|emoji"
                r"|date|year|answer|sentence|phrase|slogan|headline|username|password|passphrase|hashtag|acronym|rhyme|string|url"
                r"|link|noun|character)\b", re.I),
     ("number", "word", "name", "title", "letter", "digit", "integer", "value", "term", "adjective", "adverb", "noun", "verb",
      "synonym", "antonym", "colo", "emoji", "date", "year", "answer", "sentence", "phrase", "slogan", "headline", "hashtag",
      "acronym", "rhyme", "string", "url", "link", "character")),
    (re.compile(r"\bhow (?:many|much|old|long|far|often|tall|big)\b", re.I), ("how ",)),
    (re.compile(r"\b(?:one|single)[- ]word\b", re.I), ("word",)),
    (re.compile(r"\byes or no\b|\btrue or false\b|\bwhether\b", re.I), ("yes or no", "true or false", "whether")),
    (re.compile(r"\b\w+, \w+,? or \w+\W*$", re.I), (" or ",)),
    (re.compile(r"\b(?:code|script|regex|regular expression|selector|query|command|expression|snippet|one-liner)\b", re.I),
     ("code", "script", "regex", "regular expression", "selector", "query", "command", "expression", "snippet", "one-liner")),
    (re.compile(r"情感|还是|或者?中性|一个[^，。？\n]{0,6}?(?:数字|词|单词|名字|名称|用户名|标题|字|成语|句子|密码|口号|网址)"
                r"|一句话|一个词|几个字|多少|是否|是不是|对不对|吗[？?]?$", re.I),
     ("情感", "还是", "中性", "一个", "一句话", "几个字", "多少", "是否", "是不是", "对不对", "吗")),
]


def short_wanted(first: str) -> bool:
    """bool(_SHORT_WANTED.search(first)), alternative by alternative."""
    return any(may_contain(first, needles) and part.search(first) for part, needles in _SHORT_WANTED_PARTS)


_SHORT_QUESTION = re.compile(
    r"^\W*(?:what(?:'s| is| was)|who|whom|when|where|which|whose|is|are|was|were|does|do|did|can|could|will|would|should|has|have)\b"
    r"|^\W*(?:classify|categori[sz]e|identify|select|choose|pick|find|calculate|compute|convert|evaluate|rate|count|determine (?:whether|if|which)"
    r"|tell (?:me )?(?:whether|if|which)|detect|check|output|print|return|given|you are given|name|translate|correct|rewrite|edit|rephrase|paraphrase|reword|change|replace|sort|arrange|rank|reverse)\b"
    r"|[吗呢][？?]?$|(?:判断|选择|计算|找出|识别|分类|哪个|哪一|哪里|哪儿|何时|什么时候|是什么|是谁|多少|几个|几岁|改写|翻译|纠正|替换|排序|排列)", re.I)


# How many things an instruction asks for ("three features", "5 examples", "两个", "三句话"), when two or more.
_COUNT_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
                "两": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
# The number must be the object of a request verb: "compare the two sentences" or "given 4 options"
# count what the instruction gives, not what the answer should hold.
_ASKS_COUNT = re.compile(
    r"\b(?:list|name|give|provide|write|generate|suggest|add|create|identify|find|come up with|think of|brainstorm|outline"
    r"|mention|cite|state|recommend|propose|offer|share|compose|make|produce|enumerate|describe|explain)\s+(?:me\s+|us\s+)?"
    r"(?:at least\s+|exactly\s+|about\s+)?([2-9]|10|two|three|four|five|six|seven|eight|nine|ten)\s+(?:[a-z-]+\s+){0,2}?[a-z]+s\b"
    r"|(?:列出|列举|写出|写下|给出|提供|举出|说出|生成|编制|想出|提出|推荐|建议|描述)[^，。？！和与及\n]{0,10}?(?:至少)?"
    r"([2-9]|10|[两二三四五六七八九十])\s*[个种条句点段项首篇位部本件样类]", re.I)


_COUNT_NEEDLES = tuple("23456789") + ("10",) + tuple(_COUNT_WORDS)  # every _ASKS_COUNT match holds one


def items_asked(instruction: str) -> int:
    """How many items the instruction's first line asks for (0: no number of items is named):
    "List three features" -> 3, "写出5个特点" -> 5, "in 2 sentences" -> 2."""
    first = instruction.strip().split("\n", 1)[0][:300]
    if not may_contain(first, _COUNT_NEEDLES):
        return 0
    m = _ASKS_COUNT.search(first)
    if not m:
        return 0
    word = (m.group(1) or m.group(2)).lower()
    return int(word) if word.isdigit() else _COUNT_WORDS[word]


# Answers with no content of their own, by word class: a bare affirmation (only a yes/no question
# may get one) and a pointer to somewhere else ("See above.", "见上文。", "略。", "N/A").
_AFFIRMATION = re.compile(r"^\W*(?:yes|yeah|yep|no|nope|ok(?:ay)?|sure|right|correct|true|false|done|got it|certainly|of course"
                          r"|是的?|好的?|对的?|行|可以|没错|不是|不对|没有|嗯|当然)\W*$", re.I)
_POINTER = re.compile(r"^\W*(?:(?:please\s+)?(?:see|refer to|as|same as|as stated|as mentioned|as shown)\s+(?:in\s+)?(?:the\s+)?"
                      r"(?:above|below|before|previous|earlier|text above|answer above)(?:\s+\w+)?|n/?a|none given|omitted|same as before"
                      r"|(?:参?见|参考|请见|如|同)(?:上|下|前)(?:文|述|面|所述)?|略|省略|同上|无)\W*$", re.I)
_POLAR = re.compile(r"^\W*(?:is|are|was|were|do|does|did|can|could|will|would|should|has|have|had|may|might|must|shall)\b"
                    r"|吗[？?]?\s*$|是否|是不是|对不对|有没有|能不能|可不可以|会不会|判断|yes or no|true or false|\b(?:whether|if)\b", re.I)
_CORE = re.compile(r"[^\w\u4e00-\u9fff]+")


def non_answer(answer: str, instruction: str) -> str:
    """What makes the answer empty of content ('' when it has some): a pointer elsewhere, or a bare
    yes/no/OK to an instruction that is not a yes/no question."""
    s = answer.strip()
    if len(s) > 40:
        return ""
    if _POINTER.match(s):
        return "a pointer to somewhere else"
    if _AFFIRMATION.match(s) and not _POLAR.search(instruction.strip().split("\n", 1)[0]) \
            and _CORE.sub("", s).lower() not in _CORE.sub(" ", instruction).lower().split():  # an option the instruction names
        return "a bare yes/no/OK to a question that is not a yes/no question"
    return ""


def asks_for_developed_answer(instruction: str) -> bool:
    """Whether an instruction asks for a developed answer (explain, describe, write, list, why,
    how...), as opposed to a fact, a number, a label, one word or an edit, which a one-word answer
    may give ("Paris.", "42")."""
    first = instruction.strip().split("\n", 1)[0][:300]
    if short_wanted(first):
        return False
    if _DEVELOPED.search(first):
        return True
    return not _SHORT_QUESTION.search(first)


_VALUE = re.compile(r"^\W*(?:[-+]?[\d.,/%:]+\w{0,4}|(?i:true|false|null|none|nil)|[\w$#]*(?:[\d_$#]|\.\w)[\w.$#]*|[a-z]+[A-Z]\w*"
                    r"|int|float|str|string|bool|boolean|char|double|list|dict|array|object)\W*$")


def is_value(answer: str) -> bool:
    """An answer that is a value: a number, a boolean, an identifier or a type name ("42", "true",
    "my_var", "int")."""
    return bool(_VALUE.match(answer.strip()))
