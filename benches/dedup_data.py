"""A realistic bilingual data set for the dedup bench: mostly unique rows, plus planted
near-duplicate families of realistic sizes, with the planted truth kept beside the data.

    PYTHONPATH=. .venv/bin/python benches/dedup_data.py --llamafactory GIT_DIR --rows 1000000 OUT.jsonl

Text: the real sentences of LLaMA-Factory's demo files (alpaca_en/zh, dpo_en/zh, kto_en,
glaive_toolcall_en/zh, c4, wiki), read with `git show COMMIT:data/FILE` from a clone (--llamafactory,
or the LLAMAFACTORY_GIT variable; the commit is printed and recorded), plus benches/io_speed.py's
sources (this repository's LLaMA-Factory rows, sample_data, README prose).

- **Unique rows** (most of them): a real instruction (15% Chinese), now and then a real input,
  and an answer composed of sentences drawn at random from the real pool of its language until a
  drawn length (log-normal, ~650 characters on average in English, ~300 in Chinese) is reached,
  in paragraphs or as a numbered list, now and then with a code block or an escape. With tens of
  thousands of sentences in the pool two random rows share a sentence now and then, and a few
  shingles, but are far from near duplicates: the LSH still meets such chance pairs.
- **Planted families** (FAMILY_SHARE of the rows, sizes 2 to 30 drawn as s^-FAMILY_SKEW: mostly
  2 or 3): an original (a fresh row) and copies of it, each made by one edit from its parent
  (the original, or for CHAIN_SHARE of the copies an earlier copy: chains), placed at random
  positions in the file. Edit types (EDITS): a few typos, whitespace and punctuation, Chinese
  versus ASCII punctuation width, a sentence dropped, a sentence inserted, a prefix or a suffix,
  and two of these at once.

The truth (`OUT.truth.jsonl`): one line per family row: row (0-based line of OUT), family, root
(the original's row), parent, edit ('original' for the original). Recall is measured against the
original (see dedup_real.recall_planted).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benches"))

LF_FILES = ("alpaca_en_demo.json", "alpaca_zh_demo.json", "dpo_en_demo.json", "dpo_zh_demo.json", "kto_en_demo.json",
            "glaive_toolcall_en_demo.json", "glaive_toolcall_zh_demo.json", "c4_demo.jsonl", "wiki_demo.txt")
ZH_SHARE = 0.15
INPUT_SHARE = 0.3
FAMILY_SHARE = 0.15     # of the rows: members of planted families (originals included)
FAMILY_SKEW = 2.0       # P(size s) ~ s^-FAMILY_SKEW, s in 2..MAX_FAMILY
MAX_FAMILY = 30
CHAIN_SHARE = 0.2       # copies made from an earlier copy rather than from the original
EDITS = ("typo", "space_punct", "width", "sentence_drop", "sentence_insert", "prefix_suffix", "two_edits")

_ZH = re.compile(r"[\u4e00-\u9fff]")
_EN_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_ZH_SPLIT = re.compile(r"(?<=[。！？；])")


def _git_show(git_dir: Path, commit: str, name: str) -> str:
    out = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{commit}:data/{name}"],
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"cannot read data/{name} at {commit} from {git_dir}: {out.stderr.strip()}")
    return out.stdout


def resolve_commit(git_dir: Path, commit: str) -> str:
    out = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", commit], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{git_dir} is not a git directory with {commit}: pass --llamafactory GIT_DIR.")
    return out.stdout.strip()


def _texts(git_dir: Path, commit: str) -> tuple[list[str], list[str]]:
    """(instructions, answer-like texts) of the LLaMA-Factory demo files."""
    ins: list[str] = []
    out: list[str] = []
    for name in LF_FILES:
        raw = _git_show(git_dir, commit, name)
        if name.endswith(".txt"):
            out += [p for p in raw.split("\n") if p.strip()]
            continue
        rows = [json.loads(x) for x in raw.splitlines() if x.strip()] if name.endswith(".jsonl") else json.loads(raw)
        for r in rows:
            if "instruction" in r:
                ins.append(r["instruction"])
                out += [r.get("output") or "", r.get("input") or ""]
            elif "messages" in r:
                for m in r["messages"]:
                    (ins if m["role"] == "user" else out).append(m["content"])
            elif "conversations" in r:
                for t in r["conversations"]:
                    if t["from"] == "human":
                        ins.append(t["value"])
                    elif t["from"] == "gpt":
                        out.append(t["value"])
                for k in ("chosen", "rejected"):
                    if isinstance(r.get(k), dict):
                        out.append(r[k]["value"])
            elif "text" in r:
                out.append(r["text"])
    return ins, out


def sentences(text: str) -> list[str]:
    """Sentences of one text (Chinese: after 。！？；, else after . ! ? before a capital)."""
    out = []
    for para in text.split("\n"):
        para = para.strip()
        if not para:
            continue
        parts = _ZH_SPLIT.split(para) if _ZH.search(para) else _EN_SPLIT.split(para)
        out += [p.strip() for p in parts if p.strip()]
    return out


def pools(git_dir: Path, commit: str) -> dict[str, list[str]]:
    import io_speed

    ins, outs = _texts(git_dir, commit)
    base = io_speed._pools()
    ins += base["zh_ins"] + base["en_ins"]
    outs += base["zh_out"] + base["en_out"] + base["zh_inp"] + base["en_inp"]
    p: dict[str, set[str]] = {k: set() for k in ("zh_ins", "en_ins", "zh_sent", "en_sent")}
    for t in ins:
        t = t.strip()
        if 4 <= len(t) <= 600:
            p["zh_ins" if _ZH.search(t) else "en_ins"].add(t)
    for t in outs:
        for s in sentences(t):
            zh = bool(_ZH.search(s))
            if (zh and 6 <= len(s) <= 300) or (not zh and 25 <= len(s) <= 400 and s.count(" ") >= 4):
                p["zh_sent" if zh else "en_sent"].add(s)
    return {k: sorted(v) for k, v in p.items()}


CODE = ('def load(path):\n    with open(path) as f:\n        return [json.loads(line) for line in f if line.strip()]\n',
        'print("tab\\there", \'quote\', r"C:\\Users\\data\\train.jsonl")\n',
        're.sub(r"\\s+", " ", text)  # collapse whitespace\n',
        'SELECT "name", count(*) FROM t WHERE path LIKE \'%\\\\%\' GROUP BY 1;\n')


class Composer:
    def __init__(self, pool: dict[str, list[str]], rng: random.Random):
        self.p, self.rng = pool, rng

    def answer_sentences(self, zh: bool) -> list[str]:
        rng = self.rng
        # log-normal length: median ~480 (en) / ~220 (zh) characters, long tail
        target = rng.lognormvariate(math.log(220 if zh else 480), 0.75)
        out, n = [], 0
        sents = self.p["zh_sent" if zh else "en_sent"]
        while n < target or not out:
            s = sents[rng.randrange(len(sents))]
            out.append(s)
            n += len(s) + 1
        return out

    def join(self, sents: list[str], zh: bool, layout: int) -> str:
        if layout == 0:    # one paragraph
            return ("" if zh else " ").join(sents)
        if layout == 1:    # paragraphs of two or three sentences
            paras = [sents[i:i + 3] for i in range(0, len(sents), 3)]
            return "\n\n".join(("" if zh else " ").join(p) for p in paras)
        return "\n".join(f"{i + 1}. {s}" for i, s in enumerate(sents))  # a numbered list

    def row(self) -> dict:
        rng = self.rng
        zh = rng.random() < ZH_SHARE
        lang = "zh" if zh else "en"
        ins = self.p[f"{lang}_ins"][rng.randrange(len(self.p[f"{lang}_ins"]))]
        inp = ""
        if rng.random() < INPUT_SHARE:
            sents = self.p[f"{lang}_sent"]
            inp = ("" if zh else " ").join(sents[rng.randrange(len(sents))] for _ in range(rng.choice((1, 1, 2, 3))))
        layout = rng.choice((0, 0, 1, 1, 2))
        sents = self.answer_sentences(zh)
        tail = ""
        e = rng.random()
        if e < 0.08:
            tail = "\n\n```python\n" + rng.choice(CODE) + "```"
        elif e < 0.085:
            tail = " The escape \\u00e9 is é."
        elif e < 0.087:
            tail = " \x1b[1mbold\x1b[0m"
        return {"instruction": ins, "input": inp, "sents": sents, "zh": zh, "layout": layout, "tail": tail}


def render(r: dict, composer: Composer) -> dict:
    return {"instruction": r["instruction"], "input": r["input"],
            "output": composer.join(r["sents"], r["zh"], r["layout"]) + r["tail"]}


_COMMON_ZH = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理府研质"  # a typo in Chinese: one character replaced by a common one
_WIDE = str.maketrans({",": "，", ".": "。", "!": "！", "?": "？", ":": "：", ";": "；", "(": "（", ")": "）"})
_NARROW = str.maketrans({v: k for k, v in {",": "，", ".": "。", "!": "！", "?": "？", ":": "：", ";": "；"}.items()})


def _typo(s: str, rng: random.Random) -> str:
    if _ZH.search(s) and rng.random() < 0.5:
        i = rng.randrange(len(s))
        return s[:i] + rng.choice(_COMMON_ZH) + s[i + 1:]
    words = s.split(" ")
    i = rng.randrange(len(words))
    w = words[i]
    if len(w) > 3:
        j = rng.randrange(len(w) - 1)
        k = rng.random()
        w = w[:j] + w[j + 1] + w[j] + w[j + 2:] if k < 0.4 else (w[:j] + w[j + 1:] if k < 0.7 else w[:j] + w[j] + w[j:])
    words[i] = w
    return " ".join(words)


def edit(r: dict, kind: str, composer: Composer, rng: random.Random) -> dict:
    """A copy of row `r` (its parts) with one edit of `kind`."""
    r = dict(r, sents=list(r["sents"]))
    sents = r["sents"]
    if kind == "two_edits":
        a, b = rng.sample(EDITS[:-1], 2)
        return edit(edit(r, a, composer, rng), b, composer, rng)
    if kind == "typo":
        for _ in range(rng.choice((1, 1, 2, 3))):
            i = rng.randrange(len(sents))
            sents[i] = _typo(sents[i], rng)
    elif kind == "space_punct":
        for _ in range(rng.choice((1, 2, 3))):
            i = rng.randrange(len(sents))
            s = sents[i]
            k = rng.random()
            sents[i] = (s.replace(", ", " , ", 1) if k < 0.3 else s.rstrip(".!?。！？") + rng.choice(("!", "...", "  ", ""))
                        if k < 0.7 else "  " + s + " ")
        r["layout"] = rng.choice((r["layout"], 0, 1))
    elif kind == "width":
        r["sents"] = [s.translate(_NARROW if r["zh"] else _WIDE) for s in sents]
        r["instruction"] = r["instruction"].translate(_NARROW if r["zh"] else _WIDE)
    elif kind == "sentence_drop" and len(sents) > 1:
        del sents[rng.randrange(len(sents))]
    elif kind in ("sentence_insert", "sentence_drop"):
        pool = composer.p["zh_sent" if r["zh"] else "en_sent"]
        sents.insert(rng.randrange(len(sents) + 1), pool[rng.randrange(len(pool))])
    elif kind == "prefix_suffix":
        if rng.random() < 0.5:
            sents.insert(0, rng.choice(("当然可以！", "好的，下面是回答：", "以下是我的回答。") if r["zh"] else
                                       ("Sure!", "Certainly! Here is the answer.", "Great question.")))
        else:
            sents.append(rng.choice(("希望对你有帮助。", "如果还有问题，请告诉我。") if r["zh"] else
                                    ("Hope this helps!", "Let me know if you need more detail.")))
    return r


def family_sizes(rows: int, rng: random.Random) -> list[int]:
    """Sizes (2..MAX_FAMILY, P(s) ~ s^-FAMILY_SKEW) whose sum is about FAMILY_SHARE of `rows`."""
    sizes = list(range(2, MAX_FAMILY + 1))
    weights = [s ** -FAMILY_SKEW for s in sizes]
    out, n = [], 0
    while n < rows * FAMILY_SHARE:
        s = rng.choices(sizes, weights)[0]
        out.append(s)
        n += s
    return out


def generate(path: Path, rows: int, git_dir: Path, commit: str, seed: int = 0) -> dict:
    """Write `rows` alpaca JSON Lines to `path` and the planted truth to `path`.truth.jsonl;
    what they are like."""
    rng = random.Random(seed)
    pool = pools(git_dir, commit)
    comp = Composer(pool, rng)
    fams = family_sizes(rows, rng)
    fam_rows = sum(fams)
    positions = rng.sample(range(rows), fam_rows)
    planted: dict[int, dict] = {}
    truth = []
    at = 0
    for f, size in enumerate(fams):
        pos = sorted(positions[at:at + size])
        at += size
        members = [comp.row()]
        kinds = ["original"]
        parents = [0]
        for _ in range(size - 1):
            parent = rng.randrange(1, len(members)) if len(members) > 1 and rng.random() < CHAIN_SHARE else 0
            kind = rng.choice(EDITS)
            members.append(edit(members[parent], kind, comp, rng))
            kinds.append(kind)
            parents.append(parent)
        # the original is not always first in the file
        order = list(range(size))
        rng.shuffle(order)
        row_of = {m: pos[k] for k, m in enumerate(order)}
        for m in range(size):
            planted[row_of[m]] = render(members[m], comp)
            truth.append({"row": row_of[m], "family": f, "root": row_of[0], "parent": row_of[parents[m]], "edit": kinds[m]})
    zh = chars = 0
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(rows):
            r = planted.pop(i, None)
            if r is None:
                r = render(comp.row(), comp)
            zh += bool(_ZH.search(r["instruction"] + r["output"]))
            chars += len(r["output"])
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(str(path) + ".truth.jsonl", "w", encoding="utf-8") as fh:
        for t in sorted(truth, key=lambda t: t["row"]):
            fh.write(json.dumps(t) + "\n")
    return {"rows": rows, "zh_share": zh / rows, "mean_answer_chars": chars / rows, "families": len(fams),
            "family_rows": fam_rows, "en_sentences": len(pool["en_sent"]), "zh_sentences": len(pool["zh_sent"]),
            "en_instructions": len(pool["en_ins"]), "zh_instructions": len(pool["zh_ins"]), "commit": commit}


def lf_git(arg: str | None) -> Path:
    value = arg or os.environ.get("LLAMAFACTORY_GIT")
    if not value:
        raise SystemExit("no LLaMA-Factory clone: pass --llamafactory GIT_DIR (a clone's .git or a bare repository) "
                         "or set LLAMAFACTORY_GIT.")
    return Path(value)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--llamafactory", help="git directory of a LLaMA-Factory clone (or LLAMAFACTORY_GIT)")
    ap.add_argument("--commit", default="HEAD")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    git_dir = lf_git(args.llamafactory)
    print(json.dumps(generate(args.out, args.rows, git_dir, resolve_commit(git_dir, args.commit), args.seed)))


if __name__ == "__main__":
    main()
