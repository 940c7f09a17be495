"""Quality flags for instruction data: rules that measure a sample and mark it when the measure
crosses a threshold. Flags only mark; a person or a bulk action decides what happens.

The rules live in `curation/rules/default.yaml` (the user may pass their own file: each rule has
id, enabled, threshold, description). What each rule measures is built in (`RULES` below): the
file chooses which run and where their thresholds sit. Every checked sample's measured value is
stored for every numeric rule (`quality_values`), flagged or not, so `preview` can say how many
samples another threshold would flag and `distribution` can draw the histogram, both without
re-reading any text; samples with no stored value (no run yet, or added since) are measured on the
spot, without writing.

Lengths count CJK characters one by one and other text in words ("units"), so a Chinese answer
of 20 characters and an English answer of 20 words weigh alike. Code blocks are excluded where
they would mislead (markup, placeholders, language), and an instruction that asks for a
translation or a reply in a named language is never flagged for a language mismatch.

`run_quality` is one undoable operation (kind 'quality'): it replaces the flags and values of the
samples it checks and saves the old ones in `quality_undo`. A run that would change nothing (the
same rules over the same samples again) records no operation: its report's op_id is None.
"""
from __future__ import annotations

import functools
import re
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import duckdb
import numpy as np
import pyarrow as pa

from . import lang
from . import text_shape as shape
from .distinct import distinct
from .errors import NotFound, StudioError
from .jobs import Job, null_job
from .sql_json import plain_chat_sql
from .text_stats import cjk_and_words, distinct_char_ngrams, distinct_token_ngrams, may_contain, token_keys
from .workers import Workers, worker_count

if TYPE_CHECKING:
    from .workspace import Workspace

CHUNK = 4000

# -- measuring helpers ----------------------------------------------------------------------------
_CJK = lang.CJK_RE
_WORD = re.compile(f"[^\\W{lang.CJK_CLASS}]+")
_TOKEN = re.compile(f"[{lang.CJK_CLASS}]|[^\\W{lang.CJK_CLASS}]+")
_FENCE = shape.FENCED
_MOJIBAKE = re.compile(
    "\ufffd|[\u00c2-\u00f4][\u0080-\u00bf\u2013\u2014\u2018\u2019\u201a\u201c\u201d\u201e\u2020\u2021\u2022"
    "\u2026\u2030\u2039\u203a\u20ac\u2122\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc]"
    "|[\u00e4-\u00e9][\u00b8-\u00bf\u0080-\u00a0\u2013\u2014\u201c\u201d\u2018\u2019\u20ac\u2026][\u0080-\u00bf\u00a1-\u00bf\u2018-\u203a\u20ac]?"
)
# Markup debris, by structure: an HTML element or entity in prose, a chat template's special token
# (<|...|>, [INST], <<SYS>>, </s>), a prompt template's role header, an unclosed link.
_HTML_TAG = re.compile(
    r"</?(?:a|abbr|b|blockquote|body|br|button|center|code|dd|div|dl|dt|em|font|form|h[1-6]|head|hr|html|i|iframe|img|input"
    r"|label|li|link|meta|nav|ol|option|p|pre|s|script|section|select|small|span|strong|style|sub|sup|table|tbody|td|textarea"
    r"|tfoot|th|thead|title|tr|u|ul)\b(?:\s[^<>]*)?/?>", re.I)
_ENTITY = re.compile(r"&(?:[a-zA-Z]{2,8}|#\d{2,6}|#x[0-9a-fA-F]{2,5});")
_TEMPLATE_TOKEN = re.compile(
    r"<\|[^<>|\n]{1,40}\|>|\[/?INST\]|<</?SYS>>|</?s>|<(?:unk|pad|eos|bos|mask|sep|cls|eot)>|<(?:start|end)_of_turn>"
    r"|^\s*#{2,4}\s*(?:Instruction|Response|Input|Human|Assistant|System)\s*:?", re.I | re.M)
_ROLE_AT_END = re.compile(r"\n\s*(?:User|Human|Assistant|AI|Bot|用户|助手|问|答)\s*[:：]\s*$", re.I)
_BROKEN_LINK = re.compile(r"\[[^\]\n]{1,200}\]\([^)\s]*(?:\s|$)(?![^(\n]*\))|\[[^\]\n]*\]\(\s*\)")
_ASKS_MARKUP = re.compile(r"(?<![A-Za-z])(?:html|xml|svg|markup|tags?|jsx|css|web ?page|markdown|react|vue)(?![A-Za-z])|网页|标签", re.I)
_ASKS_TEMPLATE = re.compile(r"\b(?:templates?|forms?|formats?|fill[- ]in|fill out|boilerplate|placeholders?|filler|dummy text)\b"
                            r"|模板|模版|格式|范本|样板|占位|填空", re.I)
_URL = re.compile(r"(?:https?://|www\.)\S+", re.I)
# Refusals and "as an AI" disclaimers at the opening of an answer (alone, or as its prefix).
_AI_DISCLAIMER = re.compile(
    r"(?:^|(?<=[,.!?:;]\s)|(?<=\bbut\s)|(?<=\band\s))as an? (?:ai|a\.i\.|artificial intelligence|(?:large )?language model|llm|ai (?:language )?model|ai assistant|virtual assistant"
    r"|chatbot|digital assistant|machine learning model)\b"
    r"|(?:^|(?<=[，,。.!?！？:：\s但]))作为(?:一[个名款位种])?(?:ai|人工智能|(?:大型)?语言模型|ai语言模型|人工智能语言模型|ai助手|ai助理|智能助手|虚拟助手|聊天机器人|机器人|程序)", re.I)
_SELF_INABILITY = re.compile(
    r"^(?:well,?\s*|unfortunately,?\s*|however,?\s*)?i(?: am|'m) (?:sorry|afraid),?\s*(?:but )?i?\s*(?:can(?:no|')t|can not|am unable|am not able"
    r"|am not allowed|won't|will not|do not have|don't have|do not possess|lack)\b"
    r"|^i (?:can(?:no|')t|can not|am unable to|am not able to|won't be able to|do not have|don't have)\b"
    r"|^我(?:很|非常)?(?:无法|不能|没办法|没有办法|不可以|做不到|不具备|没有(?:能力|权限|个人|实时|访问|办法))", re.I)
_APOLOGY_INABILITY = re.compile(
    r"\b(?:sorry|apologi[sz]e|unfortunately|regret)\b[^.!?\n]{0,60}?\bi(?:'m| am)?\s*(?:can(?:no|')t|can not|unable|not able|won't|will not|do not have|don't have)\b"
    r"|(?:抱歉|对不起|很遗憾|遗憾的是|不好意思)[^。！？\n你您他她]{0,12}?(?:无法|不能|不可以|没办法|没有办法|做不到|不具备|不提供)", re.I)
_TRANSLATE = re.compile(
    r"translat|翻译|译成|译为|译作|[英中日韩法德俄]译[英中日韩法德俄]|(?:into|in|to) (?:english|chinese|mandarin|japanese|korean|french|german|spanish)"
    r"|用(?:英|中|日|韩|法|德)文|用(?:英|汉|日|韩)语|(?:英|中)文(?:回答|回复|写)|english version|中文版", re.I)
_PLACEHOLDER = re.compile(
    r"\bTODO\b|\bTBD\b|\bFIXME\b|lorem ipsum|\[(?:INSERT|YOUR|ADD|PLACEHOLDER)[^\]]*\]|<(?:INSERT|YOUR)[^>]*>|\{\{[^}]*\}\}"
    r"|待补充|待完善|待填写|此处填写|在此(?:处)?填写|（略）|\(略\)|此处省略", re.I)


# Cheap preconditions: text without any of these (case-insensitively) cannot match the pattern,
# so the pattern is not run (every match of the pattern contains one of them; placeholder needles
# have no space, so replacing code by a space, as _strip_code does, cannot make a new one).
_URL_NEEDLES = ("http", "www.")
_PLACEHOLDER_NEEDLES = ("todo", "tbd", "fixme", "lorem", "[insert", "[your", "[add", "[placeholder", "<insert", "<your",
                        "{{", "待补充", "待完善", "待填写", "此处填写", "在此", "（略）", "(略)", "此处省略")
_REFUSAL_NEEDLES = ("as a", "作为", "sorry", "apologi", "unfortunately", "regret", "抱歉", "对不起", "遗憾", "不好意思")
_SELF_STARTS = ("i", "w", "u", "h", "我")  # the first letter of every _SELF_INABILITY match
_MOJIBAKE_START = re.compile("[\ufffd\u00c2-\u00f4]")
_NON_LATIN = re.compile(f"[{lang.CJK_CLASS}\u0400-\u04ff\u0600-\u06ff\u0900-\u097f\u0e00-\u0e7f]")  # lang's CJK and _OTHER_LETTER


_EMOJI = re.compile("[\u2600-\u27bf\U0001f000-\U0001faff]")


def units(text: str) -> int:
    """CJK characters plus words: the length measure for bilingual text."""
    if not text:
        return 0
    cjk, words = cjk_and_words(text)
    return cjk + words + (0 if text.isascii() else len(_EMOJI.findall(text)))


def _strip_code(text: str) -> str:
    return shape.strip_code(text)


def _dup_fraction(items: Sequence[Any]) -> float:
    if not items:
        return 0.0
    return 1.0 - len(set(items)) / len(items)


def _ngrams(seq: Sequence[str], n: int) -> list[tuple[str, ...]] | list[str]:
    if isinstance(seq, str):
        return [seq[i:i + n] for i in range(len(seq) - n + 1)]
    return [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]


@dataclass(frozen=True)
class Measure:
    value: float
    detail: str


def _m_too_short(ins: str, ans: str, t: float) -> Measure:
    # Relative to what the instruction asks: a fact, a number or a label may come in one word
    # ("Paris.", "42"), so such an answer's units count three times; a request to explain,
    # describe, write or list counts them once.
    u = units(_URL.sub(" link ", ans) if may_contain(ans, _URL_NEEDLES) else ans)  # a link is one unit, not its path's words
    if not ans.strip():
        return Measure(0, "empty answer")
    instruction = shape.split_user_turn(ins)[0]
    empty = shape.non_answer(ans, instruction)
    if empty:
        return Measure(0, f"answer {ans.strip()[:40]!r} is {empty}")
    items = shape.items_asked(instruction)
    if items >= 2:
        # N items asked: each should take a unit at least, so N units reach the threshold (3)
        v = round(3 * u / items, 4)
        return Measure(v, f"answer is {u} unit{'s' if u != 1 else ''} long for an instruction that asks for {items} items "
                          f"(its units count 3/{items} times; minimum {t:g})")
    developed = (shape.asks_for_developed_answer(instruction)
                 and not shape.looks_like_code(ans) and not shape.is_value(ans))
    v = u if developed else 3 * u
    asks = "a developed answer" if developed else "a short answer (its units count 3 times)"
    return Measure(v, f"answer is {u} unit{'s' if u != 1 else ''} long for an instruction that asks for {asks} (minimum {t:g})")


def _similarity(a: str, b: str) -> float:
    from .shingles import jaccard, shingle_set

    if not a or not b:
        return 0.0
    return 1.0 if a == b else jaccard(shingle_set(a, 2), shingle_set(b, 2))


def _m_equals(ins: str, ans: str, t: float) -> Measure:
    # Against the whole user turn and against the instruction alone: an answer that repeats the
    # instruction of a row with an input is not 90% the same as instruction + input. An answer
    # that only copies the input back (character for character, spaces aside) is an echo too.
    from .normalize import normalize

    b = normalize(ans)
    if not b or not ins.strip():
        return Measure(0.0, "")
    instruction, input_text = shape.split_user_turn(ins)
    best = 0.0
    for part in (ins, instruction):
        best = max(best, _similarity(normalize(part), b))
    return _echo_measure(ins, ans, best)


def _echo_measure(ins: str, ans: str, best: float) -> Measure:
    """The echo measure from the best shingle similarity (row by row or `echo_similarities`)."""
    what = "the instruction"
    input_text = shape.split_user_turn(ins)[1]
    if input_text and " ".join(ans.split()) == " ".join(input_text.split()):
        best, what = 1.0, "the input"
    return Measure(round(best, 4), f"answer is {best:.0%} the same as {what}")


def echo_similarities(ins: Sequence[str], ans: Sequence[str]) -> list[float | None]:
    """`_m_equals`'s shingle similarity for a whole chunk at once (the input-copy check aside):
    per row the larger of Jaccard(user turn, answer) and Jaccard(instruction, answer) on 2-shingles
    of the normalised texts, 1.0 for equal texts; None where the rule measures nothing (an empty
    answer or instruction). The same numbers as
    `_similarity` row by row (tests/test_quality_speed.py checks), from one numpy pass over the chunk
    instead of three small ones per row."""
    from .normalize import normalize
    from .shingles import shingle_hashes

    n = len(ins)
    if n == 0:
        return []
    b = [normalize(a) for a in ans]
    live = [bool(bb) and bool(i.strip()) for i, bb in zip(ins, b)]  # else no measure, as in _m_equals
    full = [normalize(i) if ok else "" for i, ok in zip(ins, live)]
    only = [normalize(shape.split_user_turn(i)[0]) if ok else "" for i, ok in zip(ins, live)]
    apart = [k for k in range(n) if only[k] != full[k]]  # rows with an input: the instruction alone differs
    texts = full + [only[k] for k in apart] + b
    owner = np.concatenate([np.arange(n), np.asarray(apart, dtype=np.int64), np.arange(n)]).astype(np.uint64)
    hashes, offsets = shingle_hashes(texts, 2)
    keys = (np.repeat(owner, np.diff(offsets)) << np.uint64(32)) | hashes.astype(np.uint64)
    cut = offsets[[n, n + len(apart)]]
    answer = distinct(keys[cut[1]:])
    answer_size = np.bincount((answer >> np.uint64(32)).astype(np.int64), minlength=n)
    out = np.zeros(n, dtype=np.float64)
    for part in (keys[:cut[0]], keys[cut[0]:cut[1]]):
        side = distinct(part)
        size = np.bincount((side >> np.uint64(32)).astype(np.int64), minlength=n)
        both = np.concatenate([side, answer])
        both.sort()
        common = both[1:][both[1:] == both[:-1]]
        inter = np.bincount((common >> np.uint64(32)).astype(np.int64), minlength=n)
        union = size + answer_size - inter
        ok = (size > 0) & (answer_size > 0)
        sim = np.zeros(n, dtype=np.float64)
        np.divide(inter, union, out=sim, where=ok)
        np.maximum(out, sim, out=out)
    res: list[float | None] = list(out.tolist())
    for k in range(n):
        if not live[k]:
            res[k] = None
        elif (full[k] and full[k] == b[k]) or (only[k] and only[k] == b[k]):
            res[k] = 1.0
    return res


@functools.lru_cache(maxsize=64)
def _prose_of(ans: str) -> str:
    """The answer without fenced/inline code; '' when the answer is unfenced code."""
    prose = _strip_code(ans)
    return "" if shape.looks_like_code(prose) else prose


def _m_char_rep(ins: str, ans: str, t: float) -> Measure:
    s = "".join(_prose_of(ans).split())
    if len(s) < 20:
        return Measure(0.0, "")
    count = len(s) - 4
    v = 1.0 - distinct_char_ngrams(s, 5) / count  # = _dup_fraction(_ngrams(s, 5))
    return Measure(round(v, 4), f"{v:.0%} of 5-character grams repeat")


def _m_word_rep(ins: str, ans: str, t: float) -> Measure:
    toks = token_keys(_prose_of(ans).lower())  # = _TOKEN.findall(...), as bytes for ASCII prose
    if len(toks) < 15:
        return Measure(0.0, "")
    v = 1.0 - distinct_token_ngrams(toks, 3) / (len(toks) - 2)  # = _dup_fraction(_ngrams(toks, 3))
    return Measure(round(v, 4), f"{v:.0%} of 3-word grams repeat")


def _m_line_rep(ins: str, ans: str, t: float) -> Measure:
    lines = [ln.strip() for ln in _prose_of(ans).splitlines() if len(ln.strip()) > 3 and not shape.TABLE_LINE.match(ln)]
    if len(lines) < 3:
        return Measure(0.0, "")
    v = _dup_fraction(lines)
    return Measure(round(v, 4), f"{v:.0%} of lines repeat")


def _m_mojibake(ins: str, ans: str, t: float) -> Measure:
    hits = [h for text in (ins, ans) if not text.isascii() and _MOJIBAKE_START.search(text) for h in _MOJIBAKE.findall(text)]
    return Measure(len(hits), f"{len(hits)} garbled sequence(s), e.g. {hits[0]!r}" if hits else "")


def _broken_tables(text: str) -> list[str]:
    """Tables whose rows have different numbers of cells, or whose header has no |---| line."""
    out, block = [], []
    for ln in text.splitlines() + [""]:
        if shape.TABLE_LINE.match(ln):
            block.append(ln.strip())
            continue
        if len(block) >= 2:
            cells = {len(r.strip("|").split("|")) for r in block}
            has_rule = any(re.fullmatch(r"\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?", r) for r in block[1:2])
            if len(cells) > 1 or (not has_rule and len(block) <= 2):  # 3+ equal rows without a rule: a grid
                out.append(block[0][:30])
        block = []
    return out


def _m_markup(ins: str, ans: str, t: float) -> Measure:
    prose = _strip_code(ans)
    hits = _TEMPLATE_TOKEN.findall(prose) if may_contain(prose, ("<", "[", "#")) else []  # every token has one
    hits += [m.group(0).strip() for m in _ROLE_AT_END.finditer(ans)]
    tail = shape.open_fence_tail(ans)
    if tail is not None and (not tail.strip() or (not shape.looks_like_code(tail) and not shape.unfinished_ending(tail))):
        hits.append("``` (a fence never closed)")  # a stray fence; a cut inside code is truncated_answer
    asks_markup = bool(_ASKS_MARKUP.search(shape.split_user_turn(ins)[0]))
    if shape.looks_like_code(prose):
        # In code, a tag or entity outside string literals is debris unless the code is markup.
        bare = shape._CODE_STRING.sub('""', prose)
        if not asks_markup and not shape.looks_like_markup(bare) and len(_HTML_TAG.findall(bare)) <= 2:
            hits += _HTML_TAG.findall(bare) + _ENTITY.findall(bare)
        return Measure(len(hits), f"{len(hits)} piece(s) of markup debris outside code, e.g. {hits[0]!r}" if hits else "")
    if not shape.looks_like_markup(ans) and not asks_markup:
        hits += _HTML_TAG.findall(prose) + _ENTITY.findall(prose)
    hits += [m.group(0) for m in _BROKEN_LINK.finditer(prose)]
    hits += [f"table {b!r}" for b in _broken_tables(prose)]
    # Bold markers at word edges (**word** or **粗体**), left open in a line; 2**3 is arithmetic.
    bold = [ln for ln in prose.splitlines() if "**" in ln and not shape.is_code_line(ln)
            and re.sub(r"(?<=[\w)\]])(?:\*\*| \*\* )(?=[\w(])", "", ln).count("**") % 2 == 1]
    hits += ["** left open"] * bool(bold)
    return Measure(len(hits), f"{len(hits)} piece(s) of markup debris outside code, e.g. {hits[0]!r}" if hits else "")


def _m_truncated(ins: str, ans: str, t: float) -> Measure:
    s = ans.rstrip()
    if not s:
        return Measure(0.0, "")
    tail = shape.open_fence_tail(s)
    if tail is not None and tail.strip() and (shape.looks_like_code(tail) or shape.unfinished_ending(tail)):
        return Measure(1.0, "ends inside a code block that is never closed")
    if tail is not None or shape.FENCE_LINE.match(shape.last_line(s)):
        return Measure(0.0, "")  # ends with a code block (or a stray fence: markup_debris)
    prose = shape.FENCED.sub("\n", s).rstrip()
    if not prose or shape.looks_like_markup(prose):
        return Measure(0.0, "")
    if shape.looks_like_code(prose):
        why = shape.unfinished_code(prose) if prose == s else ""
        return Measure(1.0, f"{why}: …{s[-30:]!r}") if why else Measure(0.0, "")
    why = shape.unfinished_ending(prose)
    if why == "a sentence with no end" and shape.last_line(ins)[-1:].isalnum():
        why = ""  # the answer mirrors an input that has no end either (rewrite this sentence: ...)
    return Measure(1.0, f"{why}: …{s[-30:]!r}") if why else Measure(0.0, "")


def _m_url_only(ins: str, ans: str, t: float) -> Measure:
    s = ans.strip()
    if s and (_URL.sub("", s) if may_contain(s, _URL_NEEDLES) else s).strip(" \n\t.,;:!?<>()[]\"'") == "":
        return Measure(1.0, "answer is only a link")
    return Measure(0.0, "")


def _opening(ans: str) -> str:
    """The first two sentences of an answer (at most 300 characters)."""
    s = ans.strip()[:300]
    ends = [m.end() for m in re.finditer(r"[.!?。！？\n](?=\s|[^\d]|$)", s)]
    return s[: ends[1]] if len(ends) >= 2 else s


def _m_refusal(ins: str, ans: str, t: float) -> Measure:
    head = _opening(ans)
    if may_contain(head, _REFUSAL_NEEDLES):
        for pattern in (_AI_DISCLAIMER, _APOLOGY_INABILITY):
            m = pattern.search(head)
            if m:
                return Measure(1.0, f"refusal: {m.group(0)!r}")
    for sentence in re.split(r"(?<=[.!?。！？])\s*", head)[:2]:
        sentence = sentence.strip()
        m = _SELF_INABILITY.search(sentence) if may_contain(sentence[:1], _SELF_STARTS) else None
        if m:
            return Measure(1.0, f"refusal: {m.group(0)!r}")
    return Measure(0.0, "")


def _m_placeholder(ins: str, ans: str, t: float) -> Measure:
    hits = []
    if may_contain(ins, _PLACEHOLDER_NEEDLES):
        # A placeholder the request names that also sits in its input ("replace the TODO comment") is the subject.
        request, given = (x.lower() for x in shape.split_user_turn(ins))
        hits = [h for h in _PLACEHOLDER.findall(_strip_code(ins)) if not (h.lower() in request and h.lower() in given)]
    if may_contain(ans, _PLACEHOLDER_NEEDLES):
        # In the answer, a slot is the answer when the instruction asks for a template or form, or is
        # about filler text; and a placeholder the instruction itself names (a TODO to replace) is its subject.
        if not _ASKS_TEMPLATE.search(ins):
            asked = ins.lower()
            hits += [h for h in _PLACEHOLDER.findall(_strip_code(ans)) if h.lower() not in asked]
    return Measure(len(hits), f"placeholder {hits[0]!r}" if hits else "")


def _m_language(ins: str, ans: str, t: float) -> Measure:
    # The answer's prose against the instruction's and the input's: quoted spans, code and proper
    # nouns do not count (lang.prose_script), and an answer in the language of the input (改写这句
    # 英文: ...) is no mismatch.
    if not ins.strip() or not ans.strip():
        return Measure(0.0, "")
    if not _NON_LATIN.search(ins) and not _NON_LATIN.search(ans):
        return Measure(0.0, "")  # both in Latin script (or none): prose_script can only say 'latin' or ''
    if _TRANSLATE.search(ins):
        return Measure(0.0, "")
    instruction, input_text = shape.split_user_turn(ins)
    if not input_text and "\n" in instruction.strip():  # an input on the lines after the instruction
        instruction, input_text = (p.strip() for p in instruction.strip().split("\n", 1))
    given = frozenset(w.lower() for w in re.findall(r"[A-Za-z\u00c0-\u024f]{2,}", ins))
    a = lang.prose_script(ans, given)  # words the instruction gave (a sentence it quotes) do not count
    i = lang.prose_script(instruction, names=True)
    if not a or not i or a == i or "other" in (a, i):
        return Measure(0.0, "")
    if input_text and lang.prose_script(input_text) == a:
        return Measure(0.0, "")
    return Measure(1.0, f"instruction is {lang.detect(instruction)}, answer is {lang.detect(_strip_code(ans))}")


def _m_too_long(ins: str, ans: str, t: float, whole: str = "") -> Measure:
    text = whole or (ins + "\n" + ans)
    cjk, words = cjk_and_words(text)
    est = cjk + 1.3 * words
    return Measure(round(est), f"about {est:,.0f} tokens (limit {t:g})")


@dataclass(frozen=True)
class RuleDef:
    """What a rule measures and which side of the threshold flags."""

    measure: Callable[..., Measure]
    flag_below: bool = False  # True: flag when value < threshold; else when value >= threshold
    numeric: bool = True      # False: a yes/no check (value 0 or 1); its values are not stored
    whole_sample: bool = False


RULES: dict[str, RuleDef] = {
    "answer_too_short": RuleDef(_m_too_short, flag_below=True),
    "answer_equals_instruction": RuleDef(_m_equals),
    "char_repetition": RuleDef(_m_char_rep),
    "word_repetition": RuleDef(_m_word_rep),
    "line_repetition": RuleDef(_m_line_rep),
    "mojibake": RuleDef(_m_mojibake),
    "markup_debris": RuleDef(_m_markup),
    "truncated_answer": RuleDef(_m_truncated, numeric=False),
    "url_only_answer": RuleDef(_m_url_only, numeric=False),
    "refusal": RuleDef(_m_refusal, numeric=False),
    "placeholder": RuleDef(_m_placeholder),
    "language_mismatch": RuleDef(_m_language, numeric=False),
    "too_long": RuleDef(_m_too_long, whole_sample=True),
}


# -- rules file ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    id: str
    enabled: bool
    threshold: float
    description: str = ""

    @property
    def definition(self) -> RuleDef:
        return RULES[self.id]

    def flags(self, value: float) -> bool:
        return value < self.threshold if self.definition.flag_below else value >= self.threshold


def default_rules_path() -> Path:
    return Path(str(resources.files("curation") / "rules" / "default.yaml"))


def load_rules(path: str | Path | None = None) -> list[Rule]:
    """Rules from a YAML file (default: curation/rules/default.yaml). Errors name the file, the
    line and the field (`rules.yaml:12: rules[3].threshold: ...`)."""
    from .yaml_lines import parse_yaml

    path = Path(path) if path is not None else default_rules_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StudioError(f"{path}: cannot read the rules file ({exc.strerror or exc}). Pass an existing file with --rules.") from None
    doc = parse_yaml(text, str(path), StudioError)
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise StudioError(f"{path}:1: rules: expected a top-level 'rules:' list of rules (see {default_rules_path().name}).")
    out: list[Rule] = []
    seen: set[str] = set()
    for i, item in enumerate(data["rules"]):
        where = f"{doc.where(f'rules[{i}]')}: rules[{i}]"

        def field_line(name: str, at: str = f"rules[{i}]") -> str:
            return f"{doc.where(f'{at}.{name}')}: {at}.{name}"

        if not isinstance(item, dict):
            raise StudioError(f"{where}: expected a mapping with id, enabled, threshold, description.")
        unknown = set(item) - {"id", "enabled", "threshold", "description"}
        if unknown:
            raise StudioError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; a rule has id, enabled, threshold, description.")
        rid = item.get("id")
        if not isinstance(rid, str) or not rid:
            raise StudioError(f"{field_line('id')}: missing or not a string. Known rules: {', '.join(RULES)}.")
        if rid not in RULES:
            raise StudioError(f"{field_line('id')}: unknown rule {rid!r}. Known rules: {', '.join(RULES)}.")
        if rid in seen:
            raise StudioError(f"{field_line('id')}: rule {rid!r} appears twice.")
        seen.add(rid)
        enabled = item.get("enabled", True)
        if not isinstance(enabled, bool):
            raise StudioError(f"{field_line('enabled')}: expected true or false, got {enabled!r}.")
        thr = item.get("threshold")
        if isinstance(thr, bool) or not isinstance(thr, (int, float)):
            raise StudioError(f"{field_line('threshold')}: expected a number, got {thr!r}.")
        desc = item.get("description", "")
        if not isinstance(desc, str):
            raise StudioError(f"{field_line('description')}: expected text, got {desc!r}.")
        out.append(Rule(rid, enabled, float(thr), desc))
    return out


WORKSPACE_RULES = "rules.yaml"  # WORKSPACE/rules.yaml: the workspace's own thresholds (the Quality screen writes it)


def workspace_rules_path(ws: Workspace) -> Path:
    """The rules a workspace uses: WORKSPACE/rules.yaml when it exists, else the built-in file."""
    own = Path(ws.root) / WORKSPACE_RULES
    return own if own.is_file() else default_rules_path()


def _resolve_rules(rules: str | Path | Sequence[Rule] | None, ws: Workspace | None = None) -> list[Rule]:
    if rules is None and ws is not None:
        rules = workspace_rules_path(ws)
    if rules is None or isinstance(rules, (str, Path)):
        return load_rules(rules)
    return list(rules)


# -- measuring (pure: runs in worker processes too) ------------------------------------------------
def measure_sample(rules: Sequence[Rule], instruction: str, answer: str, whole: str = "",
                   echo: float | None | str = "") -> list[tuple[str, float, bool, str]]:
    """(rule id, value, flagged, detail) for each enabled rule. `echo`: this sample's entry of
    `echo_similarities` when the caller computed the chunk's at once ('' : measure it here)."""
    out = []
    for r in rules:
        if not r.enabled:
            continue
        d = r.definition
        if r.id == "answer_equals_instruction" and echo != "":
            m = Measure(0.0, "") if echo is None else _echo_measure(instruction, answer, float(echo))
        else:
            m = d.measure(instruction, answer, r.threshold, whole) if d.whole_sample else d.measure(instruction, answer, r.threshold)
        out.append((r.id, float(m.value), r.flags(m.value), m.detail))
    return out


def _measure_chunk(rules: Sequence[Rule], ids: Sequence[int], ins: Sequence[str | None], ans: Sequence[str | None],
                   whole: Sequence[str | None]) -> tuple[dict[str, list], dict[str, list]]:
    values: dict[str, list] = {"sample_id": [], "rule_id": [], "value": []}
    flags: dict[str, list] = {"sample_id": [], "rule_id": [], "value": [], "threshold": [], "detail": []}
    ins_text = [i or "" for i in ins]
    ans_text = [a or "" for a in ans]
    echo: Sequence[float | None | str] = [""] * len(ins_text)
    if any(r.enabled and r.id == "answer_equals_instruction" for r in rules):
        echo = echo_similarities(ins_text, ans_text)
    # measure_sample's loop, inlined with each rule's parts looked up once per chunk
    plan = [(r.id, r.definition.measure, r.definition.whole_sample, r.threshold, r.definition.flag_below, r.definition.numeric)
            for r in rules if r.enabled]
    v_sid, v_rid, v_val = values["sample_id"], values["rule_id"], values["value"]
    for sid, i, a, w, e in zip(ids, ins_text, ans_text, whole, echo):
        for rid, measure, whole_sample, t, below, numeric in plan:
            if rid == "answer_equals_instruction" and e != "":
                m = Measure(0.0, "") if e is None else _echo_measure(i, a, float(e))
            else:
                m = measure(i, a, t, w or "") if whole_sample else measure(i, a, t)
            value = float(m.value)
            if numeric:
                v_sid.append(sid)
                v_rid.append(rid)
                v_val.append(value)
            if (m.value < t) if below else (m.value >= t):
                flags["sample_id"].append(sid)
                flags["rule_id"].append(rid)
                flags["value"].append(value)
                flags["threshold"].append(t)
                flags["detail"].append(m.detail)
    return values, flags


# What a rule reads of a sample: instruction, answer (raw text for text samples), the whole sample.
_PAIR_COLUMNS = "coalesce(instruction, ''), coalesce(answer, text, '')"
_WHOLE_COLUMN = (f"concat_ws(chr(10), system, CASE WHEN {plain_chat_sql()} THEN instruction || chr(10) || answer "
                 "ELSE array_to_string(json_extract_string(messages, '$[*].content'), chr(10)) END, text)")


# -- public API ---------------------------------------------------------------------------------
@dataclass
class QualityReport:
    op_id: int | None
    samples: int = 0
    flagged_samples: int = 0
    flags: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    rules_file: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_quality(ws: Workspace, *, rules: str | Path | Sequence[Rule] | None = None, sample_ids: Iterable[int] | None = None,
                job: Job | None = None, workers: int | None = None) -> QualityReport:
    """Check samples (all, or `sample_ids`) against the rules and replace their flags and values.
    One undoable operation of kind 'quality'."""
    rule_list = _resolve_rules(rules, ws)
    job = job or null_job("quality")
    started = time.monotonic()
    con = ws.con
    only = None if sample_ids is None else sorted({int(i) for i in sample_ids})
    where, args = ("TRUE", []) if only is None else ("id IN (SELECT unnest(?))", [only])
    total = int(con.execute(f"SELECT count(*) FROM samples WHERE {where}", args).fetchall()[0][0])
    job.set_total(total)
    sql = f"SELECT id, {_PAIR_COLUMNS}, {_WHOLE_COLUMN} FROM samples WHERE {where} ORDER BY id"
    sizes: list[int] = []
    # The samples are read on a cursor of their own, so that each chunk's values and flags can go
    # into temporary tables on `con` as they come back: at 10M samples they are ~70M rows, which
    # DuckDB holds within its memory_limit (spilling to disk), not Python beside it.
    reader = ws.cursor()

    def tasks() -> Iterator[tuple]:
        for batch in reader.sql(sql, params=args).to_arrow_reader(CHUNK):
            cols = [c.to_pylist() for c in batch.columns]
            sizes.append(len(cols[0]))
            yield (rule_list, *cols)

    con.execute(f"CREATE OR REPLACE TEMPORARY TABLE {_NEW_VALUES} (sample_id BIGINT, rule_id VARCHAR, value DOUBLE)")
    con.execute(f"CREATE OR REPLACE TEMPORARY TABLE {_NEW_FLAGS} (sample_id BIGINT, rule_id VARCHAR, value DOUBLE, "
                "threshold DOUBLE, detail VARCHAR)")
    try:
        with Workers(worker_count(workers, total)) as pool:
            for values, flags in pool.stream(_measure_chunk, tasks(), job):
                _append(con, _NEW_VALUES, pa.table(values, schema=_VALUES_SCHEMA))
                _append(con, _NEW_FLAGS, pa.table(flags, schema=_FLAGS_SCHEMA))
                job.advance(sizes.pop(0) if sizes else 0)
        job.check()
        report = QualityReport(op_id=None, samples=total, rules_file=str(rules) if isinstance(rules, (str, Path)) else None)
        op_id = None
        with ws.transaction() as c:
            # When nothing would change (a rerun with the same rules), record no operation: undo then
            # reverts the last real change, not an empty one. The report counts the same flags either way.
            if not _same_as_stored(c, only):
                op_id = _replace(ws, c, rule_list, only, total)
        by_rule = con.execute(f"SELECT rule_id, count(*) FROM {_NEW_FLAGS} GROUP BY 1 ORDER BY 1").fetchall()
        report.by_rule = {str(r): int(n) for r, n in by_rule}
        report.flags = sum(report.by_rule.values())
        report.flagged_samples = int(con.execute(f"SELECT count(DISTINCT sample_id) FROM {_NEW_FLAGS}").fetchall()[0][0])
    finally:
        reader.close()
        for table in (_NEW_VALUES, _NEW_FLAGS):
            con.execute(f"DROP TABLE IF EXISTS {table}")
    report.op_id = op_id
    report.seconds = time.monotonic() - started
    return report


_NEW_VALUES, _NEW_FLAGS = "_quality_new_values", "_quality_new_flags"  # temporary tables of one run


def _append(con, table: str, rows: pa.Table) -> None:
    """Insert an Arrow table's rows into the temporary table `table`."""
    if not rows.num_rows:
        return
    con.register("_quality_chunk", rows)
    try:
        con.execute(f"INSERT INTO {table} SELECT * FROM _quality_chunk")
    finally:
        con.unregister("_quality_chunk")


_VALUES_SCHEMA = pa.schema([("sample_id", pa.int64()), ("rule_id", pa.string()), ("value", pa.float64())])
_FLAGS_SCHEMA = pa.schema([("sample_id", pa.int64()), ("rule_id", pa.string()), ("value", pa.float64()),
                           ("threshold", pa.float64()), ("detail", pa.string())])


def _same_as_stored(c, only: list[int] | None) -> bool:
    """Whether the new values and flags of the checked samples equal the stored ones exactly."""
    scope, args = ("TRUE", []) if only is None else ("sample_id IN (SELECT unnest(?))", [only])
    v, f = _NEW_VALUES, _NEW_FLAGS
    diff = c.execute(
        f"""SELECT (SELECT count(*) FROM (SELECT sample_id, rule_id, value FROM quality_values WHERE {scope}
                                           EXCEPT ALL SELECT sample_id, rule_id, value FROM {v}))
                 + (SELECT count(*) FROM (SELECT sample_id, rule_id, value FROM {v}
                                           EXCEPT ALL SELECT sample_id, rule_id, value FROM quality_values WHERE {scope}))
                 + (SELECT count(*) FROM (SELECT sample_id, rule_id, value, threshold, detail FROM quality_flags WHERE {scope}
                                           EXCEPT ALL SELECT sample_id, rule_id, value, threshold, detail FROM {f}))
                 + (SELECT count(*) FROM (SELECT sample_id, rule_id, value, threshold, detail FROM {f}
                                           EXCEPT ALL SELECT sample_id, rule_id, value, threshold, detail FROM quality_flags WHERE {scope}))""",
        args * 4).fetchall()[0][0]
    return int(diff) == 0


def _replace(ws: Workspace, c, rule_list: list[Rule], only: list[int] | None, total: int) -> int:
    """Record the 'quality' operation and replace the checked samples' flags and values (from the
    run's temporary tables), saving the old ones in quality_undo; returns the operation's id."""
    args = [] if only is None else [only]
    op_id = ws.record_operation("quality", sample_count=total, details={
        "rules": [asdict(r) for r in rule_list],
        "sample_ids": None if only is None else (only if len(only) <= 1000 else f"{len(only)} ids"),
        "undo_note": "deletes this op's quality_flags/quality_values and restores the rows saved in quality_undo"})
    scope = "TRUE" if only is None else "sample_id IN (SELECT unnest(?))"
    c.execute(f"INSERT INTO quality_undo SELECT ?, sample_id, rule_id, value, threshold, detail, op_id, TRUE "
              f"FROM quality_flags WHERE {scope}", [op_id, *args])
    c.execute(f"INSERT INTO quality_undo SELECT ?, sample_id, rule_id, value, NULL, NULL, op_id, FALSE "
              f"FROM quality_values WHERE {scope}", [op_id, *args])
    c.execute(f"DELETE FROM quality_flags WHERE {scope}", args)
    c.execute(f"DELETE FROM quality_values WHERE {scope}", args)
    c.execute(f"INSERT INTO quality_values SELECT sample_id, rule_id, value, ? FROM {_NEW_VALUES}", [op_id])
    c.execute(f"INSERT INTO quality_flags SELECT sample_id, rule_id, value, threshold, detail, ? FROM {_NEW_FLAGS}", [op_id])
    return op_id


def _rule_def(rule_id: str) -> RuleDef:
    if rule_id not in RULES:
        raise NotFound(f"unknown quality rule {rule_id!r}. Known rules: {', '.join(RULES)}.")
    d = RULES[rule_id]
    if not d.numeric:
        raise StudioError(f"rule {rule_id!r} is a yes/no check: it has no threshold to preview.")
    return d


def _unmeasured_values(con, rule_id: str) -> np.ndarray:
    """The rule's values for the samples that have none stored (never checked, added since the last
    run, or checked with the rule disabled), measured now and not written: a preview or histogram
    is then right before any run. After a run this reads no text (every sample has its value).
    A rule's value does not depend on its threshold (only the detail text does)."""
    d = RULES[rule_id]
    rule = Rule(rule_id, True, 0.0)
    whole = _WHOLE_COLUMN if d.whole_sample else "''"
    sql = (f"SELECT {_PAIR_COLUMNS}, {whole} FROM samples s WHERE NOT EXISTS "
           f"(SELECT 1 FROM quality_values v WHERE v.sample_id = s.id AND v.rule_id = ?)")
    values: list[float] = []
    for batch in con.sql(sql, params=[rule_id]).to_arrow_reader(CHUNK):
        ins, ans, text = (c.to_pylist() for c in batch.columns)
        for i, a, w in zip(ins, ans, text):
            m = d.measure(i or "", a or "", rule.threshold, w or "") if d.whole_sample else d.measure(i or "", a or "", rule.threshold)
            values.append(float(m.value))
    return np.asarray(values, dtype=np.float64)


def preview(con, rule_id: str, threshold: float) -> int:
    """How many samples `rule_id` would flag at `threshold`: from the values the last run stored,
    and for samples without a stored value, measured now (nothing is written)."""
    d = _rule_def(rule_id)
    op = "<" if d.flag_below else ">="
    stored = int(con.execute(
        f"SELECT count(DISTINCT v.sample_id) FROM quality_values v JOIN samples s ON s.id = v.sample_id "
        f"WHERE v.rule_id = ? AND v.value {op} ?", [rule_id, float(threshold)]).fetchall()[0][0])
    fresh = _unmeasured_values(con, rule_id)
    t = float(threshold)
    return stored + int(np.count_nonzero(fresh < t if d.flag_below else fresh >= t))


def rule_values(con: duckdb.DuckDBPyConnection, rule_id: str) -> np.ndarray:
    """Every sample's value for the rule: stored by the last run, or measured now for samples
    without one (as `preview` counts them, so a histogram and the preview agree)."""
    stored = con.execute("SELECT v.value FROM quality_values v JOIN samples s ON s.id = v.sample_id "
                         "WHERE v.rule_id = ? AND v.value IS NOT NULL", [rule_id]).fetchnumpy()["value"]
    return np.concatenate([np.asarray(stored, dtype=np.float64), _unmeasured_values(con, rule_id)])


def flagged_per_rule(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rule id -> how many samples it flags now (every rule with a flag, the rules file's or not)."""
    return {r: int(n) for r, n in con.execute(
        "SELECT rule_id, count(DISTINCT f.sample_id) FROM quality_flags f JOIN samples s ON s.id = f.sample_id "
        "GROUP BY 1").fetchall()}


def measured_samples(con: duckdb.DuckDBPyConnection) -> int:
    """How many samples have stored values (0: quality never ran)."""
    return int(con.execute("SELECT count(DISTINCT sample_id) FROM quality_values").fetchall()[0][0])


def distribution(con, rule_id: str, bins: int = 20) -> list[tuple[float, float, int]]:
    """Histogram of the values of a rule, stored or (for samples never measured) measured now:
    (low, high, count) per bin."""
    _rule_def(rule_id)
    vals = rule_values(con, rule_id)
    if vals.size == 0:
        return []
    counts, edges = np.histogram(vals, bins=max(1, int(bins)))
    return [(float(edges[i]), float(edges[i + 1]), int(counts[i])) for i in range(counts.size)]


def flags_of(con, sample_id: int) -> list[dict[str, Any]]:
    """The flags of one sample (rule, value, threshold, detail)."""
    return [{"rule_id": r, "value": v, "threshold": t, "detail": d} for r, v, t, d in con.execute(
        "SELECT rule_id, value, threshold, detail FROM quality_flags WHERE sample_id = ? ORDER BY rule_id", [int(sample_id)]).fetchall()]


def undo_operation(ws: Workspace, op) -> None:
    """Undo of 'quality' operations (curation.undo.undo_handlers): drop this op's flags and values, restore the saved ones."""
    con = ws.con
    op_id = op.id if hasattr(op, "id") else int(op)
    con.execute("DELETE FROM quality_flags WHERE op_id = ?", [op_id])
    con.execute("DELETE FROM quality_values WHERE op_id = ?", [op_id])
    con.execute("INSERT INTO quality_flags SELECT sample_id, rule_id, value, threshold, detail, flag_op_id "
                "FROM quality_undo WHERE op_id = ? AND is_flag", [op_id])
    con.execute("INSERT INTO quality_values SELECT sample_id, rule_id, value, flag_op_id "
                "FROM quality_undo WHERE op_id = ? AND NOT is_flag", [op_id])
