"""lang.detect in SQL: the language of many rows in one statement, equal to what lang.detect gives
for each (tests/test_import_fast_sql.py compares them on tricky text). `store.fill_derived` fills
samples.lang with it for the rows the fast import leaves without one.

Profiled on 100k real-length rows (benches/io_speed.py): counting characters with regexp_replace
costs 5-20 us a row, and lang.detect's rule spelled as one CASE evaluated its counts again in every
branch, so `lang_ctes` first puts each row in a class by cheap tests and takes only the counts its
class needs, once, as columns."""
from __future__ import annotations

from .lang import HAN_RANGES, HANGUL_JAMO_RANGES, HANGUL_RANGES, KANA_RANGES, char_class

# lang.detect in SQL, same character classes (RE2 spells code points \x{...}).
_HAN = f"[{char_class(HAN_RANGES, re2=True)}]"
_KANA = f"[{char_class(KANA_RANGES, re2=True)}]"
_HANGUL = f"[{char_class(HANGUL_RANGES + HANGUL_JAMO_RANGES, re2=True)}]"
_LATIN = r"[A-Za-z\x{c0}-\x{24f}]+"
_OTHER = r"[\x{400}-\x{4ff}\x{600}-\x{6ff}\x{900}-\x{97f}\x{e00}-\x{e7f}]"
# Any character that counts as CJK or as another script's letter: text without one is '' or 'en'.
_SCRIPTED = (f"[{char_class(KANA_RANGES + HAN_RANGES + HANGUL_RANGES + HANGUL_JAMO_RANGES, re2=True)}"
             r"\x{400}-\x{4ff}\x{600}-\x{6ff}\x{900}-\x{97f}\x{e00}-\x{e7f}]")


def _count(expr: str, cls: str) -> str:
    """How many characters of `expr` are in `cls`: drop runs of the others ('+' keeps the number
    of replacements small), measure what is left."""
    return f"length(regexp_replace({expr}, '[^{cls[1:-1]}]+', '', 'g'))"


# Characters that count for no language in lang.detect and are 3 bytes in UTF-8: general
# punctuation, CJK punctuation, full-width forms. Chinese text is mostly han plus these.
_NEUTRAL3 = r"[\x{2000}-\x{206f}\x{3000}-\x{303f}\x{ff00}-\x{ffef}]"
# A class-2 probe less these keeps its ASCII letters and neutral punctuation: one pass counts both.
_KEPT2 = r"[^A-Za-z\x{2000}-\x{206f}\x{3000}-\x{303f}\x{ff00}-\x{ffef}]"
_COMMON = f"[^\\x00-\\x7f{char_class(HAN_RANGES, re2=True)}\\x{{2000}}-\\x{{206f}}\\x{{3000}}-\\x{{303f}}\\x{{ff00}}-\\x{{ffef}}]"


def _latin_words(p: str) -> str:
    """Runs of Latin letters (lang.detect's words), counted once."""
    return f"len(regexp_extract_all({p}, '{_LATIN}'))"


def _decide(han: str, kana: str, hangul: str, latin: str, other: str) -> str:
    cjk = f"({han} + {kana} + {hangul})"
    return f"""CASE
        WHEN {cjk} = 0 AND {latin} = 0 AND {other} = 0 THEN ''
        WHEN {cjk} >= 2 * {latin} AND {cjk} >= {other} THEN
            CASE WHEN {kana} > {han} * 0.2 AND {kana} > 0 THEN 'ja' WHEN {hangul} > {han} THEN 'ko' ELSE 'zh' END
        WHEN {other} > {latin} THEN 'other' ELSE 'en' END"""


def lang_ctes(source: str, probe: str, ascii_only: str) -> tuple[str, str]:
    """(CTEs after `source`, the SQL of the language of each row) equal to `lang.detect(probe)`.
    The CTEs are `lang_class`, `lang_counts`, then `lang_words` (select from it); `probe` must be cut to 2000
    characters already.

    Profiled on 100k real-length rows (benches/io_speed.py): counting characters with
    regexp_replace costs 5-20 us a row, and lang.detect's rule spelled as one CASE evaluated its
    counts again in every branch: 7.7 s of a 10.5 s import. So each row is first put in a class by
    cheap tests, and only the counts its class needs are taken, once, as columns:
    - 0: ASCII only: 'en' when there is a letter, else '' (the common English row);
    - 1: no CJK and no other script's letter (English with a dash or an accent): 'en' or '';
    - 2: only ASCII, han and 3-byte punctuation (most Chinese): every non-ASCII character is 3
      bytes, so han = (bytes - chars) / 2 - punctuation; one regexp pass keeps the ASCII letters
      and the punctuation, whose bytes and characters count both; Latin words are counted only
      when han is less than twice the ASCII letters (a word has at least one letter);
    - 3: anything else: the five counts, as lang.detect takes them.
    """
    lp = "_lang_probe"
    ctes = f""", lang_class AS (
        SELECT *, CASE WHEN {ascii_only} THEN 0 WHEN NOT regexp_matches({lp}, '{_SCRIPTED}') THEN 1
                       WHEN NOT regexp_matches({lp}, '{_COMMON}') THEN 2 ELSE 3 END AS _lang_class
        FROM (SELECT *, {probe} AS {lp} FROM {source})
    ), lang_counts AS (
        SELECT *,
            CASE WHEN _lang_class < 2 THEN regexp_matches({lp}, '[A-Za-z\\x{{c0}}-\\x{{24f}}]') END AS _has_letter,
            CASE WHEN _lang_class = 2 THEN regexp_replace({lp}, '{_KEPT2}+', '', 'g') END AS _kept2,
            CASE WHEN _lang_class = 3 THEN {_count(lp, _HAN)} END AS _han3,
            CASE WHEN _lang_class = 3 THEN {_count(lp, _KANA)} END AS _kana3,
            CASE WHEN _lang_class = 3 THEN {_count(lp, _HANGUL)} END AS _hangul3,
            CASE WHEN _lang_class = 3 THEN {_count(lp, _OTHER)} END AS _other3,
            CASE WHEN _lang_class = 3 THEN {_latin_words(lp)} END AS _words3
        FROM lang_class
    ), lang_split AS (
        -- _kept2 holds the ASCII letters (1 byte) and the neutral punctuation (3 bytes) of a class-2 probe
        SELECT *, (strlen({lp}) - length({lp})) // 2 - (strlen(_kept2) - length(_kept2)) // 2 AS _han2,
               length(_kept2) - (strlen(_kept2) - length(_kept2)) // 2 AS _letters2
        FROM lang_counts
    ), lang_words AS (
        SELECT *, CASE WHEN _lang_class = 2 AND _han2 > 0 AND _han2 < 2 * _letters2 THEN {_latin_words(lp)} END AS _words2
        FROM lang_split
    )"""
    lang = f"""CASE _lang_class
        WHEN 0 THEN CASE WHEN _has_letter THEN 'en' ELSE '' END
        WHEN 1 THEN CASE WHEN _has_letter THEN 'en' ELSE '' END
        WHEN 2 THEN CASE WHEN _han2 = 0 THEN CASE WHEN _letters2 > 0 THEN 'en' ELSE '' END
                         WHEN _han2 >= 2 * _letters2 THEN 'zh'
                         ELSE {_decide('_han2', '0', '0', '_words2', '0')} END
        ELSE {_decide('_han3', '_kana3', '_hangul3', '_words3', '_other3')} END"""
    return ctes, lang


def stored_lang_ctes(source: str) -> tuple[str, str]:
    """`lang_ctes` over a source with `instruction` and `answer` columns, probed as
    Sample.detected_lang probes a single-turn row (the first two turns): what the rows the fast
    import stores without a language get, by `store.fill_derived` or by `lang_filter_sql`."""
    return lang_ctes(source, "left(instruction || ' ' || answer, 2000)",
                     "strlen(instruction) = length(instruction) AND strlen(answer) = length(answer)")


def lang_filter_sql(alias: str = "") -> str:
    """SQL condition: the sample's language is the `?` (the value twice, two parameters). A row
    stored without one (the fast import's, until `store.fill_derived` runs) has it detected here,
    so that a filter finds it before the fill as after; once filled, that part is a scan for NULL
    that finds nothing. Only reads."""
    a = f"{alias}." if alias else ""
    ctes, lang = stored_lang_ctes("todo")
    return (f"({a}lang = ? OR ({a}lang IS NULL AND {a}id IN ("
            f"WITH todo AS (SELECT id, instruction, answer FROM samples WHERE lang IS NULL){ctes} "
            f"SELECT id FROM lang_words WHERE {lang} = ?)))")
