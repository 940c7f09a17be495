"""Data for benches/curation_ab.py: short English tasks with one checkable number, and planted junk.

Six templated task families, each with one fixed instruction and one fixed answer sentence that
ends with the answer, so the fine-tune teaches the format as well as the skill, and the eval's
`numeric` scorer (the last number in the answer) checks every family:

| family  | instruction (+ " Answer briefly.")                 | answer                               |
| ------- | -------------------------------------------------- | ------------------------------------ |
| add     | What is 37 + 48?                                   | The sum of 37 and 48 is 85.          |
| sub     | What is 83 - 27?                                   | 83 minus 27 is 56.                   |
| convert | How many meters are in 37 kilometers? (kg, L too)  | 37 kilometers is 37000 meters.       |
| count   | How many words are in this list: apple, river, ... | The list has 4 words.                |
| larger  | Which number is larger, 37 or 48?                  | The larger number is 48.             |
| next    | What number comes right after 699?                 | The number after 699 is 700.         |

SmolLM2-135M-Instruct answers 0-63% per family before fine-tuning (benches/curation_ab.py's header
has the measurements): it knows the words but not the format, and multiplies km by 100. The easy
families (convert, larger, next) are learnt in 30 LoRA steps; add, sub and count stay in the
middle longer (on an H100 after 150 steps: add ~90%, count ~65%, sub ~40%), which is where the
quality of the data can show.

Every item is drawn without replacement from its family's key space (the operands: the pair for
add/sub/larger, (unit, n) for convert, the set of words for count, n for next), held-out items
first, so the held-out set shares no operands with any training row, clean or junk.

The raw training file is the clean pool plus planted junk, shuffled:
- `duplicate`: a few pool items copied 20-30 times each (pool 1,500: 10 items), some copies with
  whitespace, punctuation or case edits, a few with a short prefix ("Quick question: ");
- `refusal`: refusals and "As an AI language model" boilerplate instead of the answer (one
  template in eight is a refusal the rules may not know: "Sorry, I am not able to answer this.");
- `truncated`: the answer cut at a random character between 35% and 95% of its length, as a
  generation cut off by a length limit leaves it (mid-word, mid-sentence or mid-number);
- `wrong_language`: the answer in Chinese (two in three) or French (one in three);
- `wrong_answer`: the right sentence with a plausible wrong number (off by one or ten, a swapped
  digit, x100 instead of x1000, the smaller number).
Each non-duplicate junk type is `junk_frac` of the pool (default 7.5%: 112 rows at pool 1,500), so
each is about 5% of the raw file and duplicates about 11%. Everything is a function of the seed.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

FAMILIES = ("add", "sub", "convert", "count", "larger", "next")
JUNK_TYPES = ("duplicate", "refusal", "truncated", "wrong_language", "wrong_answer")
SUFFIX = " Answer briefly."

WORDS = ("apple", "river", "stone", "cloud", "table", "green", "horse", "light", "paper", "music", "window",
         "garden", "bread", "chair", "ocean", "pencil", "tiger", "candle", "forest", "bottle", "silver",
         "mountain", "rabbit", "summer", "letter", "orange", "basket", "winter", "bridge", "flower",
         "market", "jacket", "violin", "island", "pocket", "rocket", "shadow", "butter", "planet")

UNITS = (  # (big unit, small unit, factor, Chinese big, Chinese small, French big, French small)
    ("kilometers", "meters", 1000, "千米", "米", "kilomètres", "mètres"),
    ("kilograms", "grams", 1000, "千克", "克", "kilogrammes", "grammes"),
    ("liters", "milliliters", 1000, "升", "毫升", "litres", "millilitres"),
)
REFUSALS = (
    "I'm sorry, but I can't help with that.",
    "I'm sorry, but I cannot answer that question.",
    "I cannot assist with that request.",
    "As an AI language model, I cannot do calculations reliably. Please use a calculator.",
    "As an AI language model, I don't have the ability to answer this, but I can help with something else.",
    "As an AI assistant, I am not able to verify this. Please check a reliable source.",
    "As an AI language model, I can tell you that {answer}",  # boilerplate around the right answer
    "Sorry, I am not able to answer this.",  # a refusal the rules may not know
)


@dataclass
class Item:
    family: str
    key: Any
    instruction: str
    output: str
    answer: int
    parts: dict[str, Any] = field(default_factory=dict)

    def row(self, output: str | None = None, instruction: str | None = None) -> dict[str, str]:
        return {"instruction": self.instruction if instruction is None else instruction, "input": "",
                "output": self.output if output is None else output}


# --------------------------------------------------------------------------- items

def _draw_key(family: str, rng: random.Random) -> Any:
    if family == "add":
        return (rng.randint(10, 99), rng.randint(10, 99))
    if family == "sub":
        a = rng.randint(20, 99)
        return (a, rng.randint(10, a - 1))
    if family == "convert":
        return (rng.randrange(len(UNITS)), rng.randint(2, 250))
    if family == "count":
        return tuple(rng.sample(WORDS, rng.randint(3, 8)))
    if family == "larger":
        a, b = rng.sample(range(10, 100), 2)
        return (a, b)
    if family == "next":
        return rng.randint(10, 999)
    raise ValueError(family)


def _identity(family: str, key: Any) -> Any:
    """What must not repeat across items: the operands (an unordered pair for larger, the word set for count)."""
    return frozenset(key) if family in ("larger", "count") else key


def make_item(family: str, key: Any) -> Item:
    if family == "add":
        a, b = key
        return Item(family, key, f"What is {a} + {b}?{SUFFIX}", f"The sum of {a} and {b} is {a + b}.", a + b,
                    {"a": a, "b": b})
    if family == "sub":
        a, b = key
        return Item(family, key, f"What is {a} - {b}?{SUFFIX}", f"{a} minus {b} is {a - b}.", a - b, {"a": a, "b": b})
    if family == "convert":
        u, n = key
        big, small, f = UNITS[u][:3]
        return Item(family, key, f"How many {small} are in {n} {big}?{SUFFIX}", f"{n} {big} is {n * f} {small}.",
                    n * f, {"u": u, "n": n})
    if family == "count":
        return Item(family, key, f"How many words are in this list: {', '.join(key)}?{SUFFIX}",
                    f"The list has {len(key)} words.", len(key), {"k": len(key)})
    if family == "larger":
        a, b = key
        return Item(family, key, f"Which number is larger, {a} or {b}?{SUFFIX}", f"The larger number is {max(a, b)}.",
                    max(a, b), {"a": a, "b": b})
    if family == "next":
        return Item(family, key, f"What number comes right after {key}?{SUFFIX}", f"The number after {key} is {key + 1}.",
                    key + 1, {"n": key})
    raise ValueError(family)


class _Drawer:
    """Items of each family without replacement, in a fixed order from one seeded generator."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: dict[str, set] = {f: set() for f in FAMILIES}

    def draw(self, family: str) -> Item:
        for _ in range(100_000):
            key = _draw_key(family, self.rng)
            ident = _identity(family, key)
            if ident not in self.used[family]:
                self.used[family].add(ident)
                return make_item(family, key)
        raise RuntimeError(f"{family}: key space exhausted")

    def draw_n(self, n: int) -> list[Item]:
        """n items spread evenly over the families (round robin), then shuffled."""
        items = [self.draw(FAMILIES[i % len(FAMILIES)]) for i in range(n)]
        self.rng.shuffle(items)
        return items


# --------------------------------------------------------------------------- junk

def _chinese(it: Item) -> str:
    p = it.parts
    if it.family == "add":
        return f"{p['a']}加{p['b']}等于{it.answer}。"
    if it.family == "sub":
        return f"{p['a']}减{p['b']}等于{it.answer}。"
    if it.family == "convert":
        u = UNITS[p["u"]]
        return f"{p['n']}{u[3]}等于{it.answer}{u[4]}。"
    if it.family == "count":
        return f"这个列表有{it.answer}个词。"
    if it.family == "larger":
        return f"较大的数是{it.answer}。"
    return f"{p['n']}后面的数是{it.answer}。"


def _french(it: Item) -> str:
    p = it.parts
    if it.family == "add":
        return f"La somme de {p['a']} et {p['b']} est {it.answer}."
    if it.family == "sub":
        return f"{p['a']} moins {p['b']} font {it.answer}."
    if it.family == "convert":
        u = UNITS[p["u"]]
        return f"{p['n']} {u[5]} font {it.answer} {u[6]}."
    if it.family == "count":
        return f"La liste contient {it.answer} mots."
    if it.family == "larger":
        return f"Le plus grand nombre est {it.answer}."
    return f"Le nombre après {p['n']} est {it.answer}."


def _wrong_number(it: Item, rng: random.Random) -> int:
    p, right = it.parts, it.answer
    if it.family == "convert" and rng.random() < 0.5:
        return p["n"] * 100  # the base model's own mistake
    if it.family == "larger" and rng.random() < 0.6:
        return min(p["a"], p["b"])
    if it.family == "count":
        return right + rng.choice([-1, 1]) if right > 3 else right + 1
    choices = [right + d for d in (-1, 1, -10, 10, 2, -2) if right + d > 0]
    s = str(right)
    if len(s) >= 2 and s[0] != s[-1]:
        choices.append(int(s[-1] + s[1:-1] + s[0]))
    wrong = rng.choice(choices)
    return wrong if wrong != right else right + 1


def _with_number(it: Item, number: int) -> str:
    """The item's answer sentence with its final number replaced."""
    head, _, tail = it.output.rpartition(str(it.answer))
    return f"{head}{number}{tail}"


def _truncate(text: str, rng: random.Random) -> str:
    cut = max(1, int(len(text) * rng.uniform(0.35, 0.95)))
    return text[:cut].rstrip()


def _near_copy(row: dict[str, str], rng: random.Random) -> tuple[dict[str, str], str]:
    """A copy of the row with a whitespace / punctuation / case edit, or exact (what kind, too)."""
    ins, out = row["instruction"], row["output"]
    kind = rng.choices(["exact", "whitespace", "punctuation", "case", "prefix"], [4, 2, 2, 1, 1])[0]
    if kind == "whitespace":
        ins = ins.replace(" ", "  ", 1) + rng.choice([" ", "\n", "  "])
        out = " " + out if rng.random() < 0.5 else out + " "
    elif kind == "punctuation":
        ins = ins.replace("?", rng.choice(["??", " ?", ""]), 1)
        out = out.rstrip(".") + rng.choice(["", "!", " ."])
    elif kind == "case":
        ins = ins.lower() if rng.random() < 0.5 else ins.upper()
    elif kind == "prefix":
        ins = rng.choice(["Quick question: ", "Question: "]) + ins
    return {**row, "instruction": ins, "output": out}, kind


# --------------------------------------------------------------------------- the data set

@dataclass
class ABData:
    pool: list[Item]                # the clean training items
    heldout: list[Item]             # the eval items: no operands shared with any training row
    raw: list[dict[str, str]]       # alpaca rows: pool + junk, shuffled
    labels: list[dict[str, Any]]    # per raw row: type (clean or a junk type), family, and more
    settings: dict[str, Any]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for lab in self.labels:
            out[lab["type"]] = out.get(lab["type"], 0) + 1
        return out


def build(*, pool: int = 1500, heldout: int = 180, junk_frac: float = 0.075, seed: int = 0) -> ABData:
    """The clean pool, the held-out set, and the raw file (pool + planted junk) with per-row labels."""
    rng = random.Random(seed)
    drawer = _Drawer(rng)
    held = drawer.draw_n(heldout)
    clean = drawer.draw_n(pool)
    n_junk = max(1, round(pool * junk_frac))
    rows: list[tuple[dict[str, str], dict[str, Any]]] = []
    for it in clean:
        rows.append((it.row(), {"type": "clean", "family": it.family}))

    # duplicates: a few pool items over-weighted (pool 1,500: 10 items x 20-30 copies)
    n_items = max(2, round(pool / 150))
    lo, hi = max(2, round(pool / 75)), max(3, round(pool / 50))
    picked = rng.sample(range(len(clean)), min(n_items, len(clean)))
    for g, idx in enumerate(picked):
        rows[idx][1]["dup_group"] = g
        for _ in range(rng.randint(lo, hi)):
            row, kind = _near_copy(clean[idx].row(), rng)
            rows.append((row, {"type": "duplicate", "family": clean[idx].family, "dup_group": g, "edit": kind}))

    for it in drawer.draw_n(n_junk):  # refusals and boilerplate
        tpl = rng.choice(REFUSALS)
        rows.append((it.row(tpl.format(answer=it.output)), {"type": "refusal", "family": it.family, "template": tpl}))
    for it in drawer.draw_n(n_junk):  # truncated by a length limit
        rows.append((it.row(_truncate(it.output, rng)), {"type": "truncated", "family": it.family}))
    for it in drawer.draw_n(n_junk):  # answered in Chinese or French
        zh = rng.random() < 2 / 3
        rows.append((it.row(_chinese(it) if zh else _french(it)),
                     {"type": "wrong_language", "family": it.family, "language": "zh" if zh else "fr"}))
    for it in drawer.draw_n(n_junk):  # plausible wrong numbers
        rows.append((it.row(_with_number(it, _wrong_number(it, rng))), {"type": "wrong_answer", "family": it.family}))

    order = list(range(len(rows)))
    rng.shuffle(order)
    raw = [rows[i][0] for i in order]
    labels = [{"row": n, **rows[i][1]} for n, i in enumerate(order)]
    return ABData(clean, held, raw, labels, {"pool": pool, "heldout": heldout, "junk_frac": junk_frac, "seed": seed,
                                              "dup_items": len(picked), "dup_copies": [lo, hi]})
