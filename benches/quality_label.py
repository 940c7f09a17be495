"""Labelled sets for the quality rules, from real instruction data: clean real rows, and real rows
with one planted defect each (truncation at a random word, markup debris, echo of the instruction
or the input, refusals alone and as prefixes, an answer in the other language, a cut-down answer),
plus the hand labels of real rows that were defective already.

Three sets from different sources, so that the rules are checked on data they were not tuned on:
  tuning   LLaMA-Factory data/alpaca_en_demo.json + alpaca_zh_demo.json
  heldout  BELLE open-source 1k (zh, as kept in shibing624/MedicalGPT), CodeAlpaca 2k (en, code),
           self-instruct's 175 human-written seed tasks (en). Read while the rules were tuned: no
           longer a test of generalisation on its own.
  heldout2 AlpacaEval's 805 instructions with GPT-4 (0613) answers (en; tatsu-lab/alpaca_eval), and
           the MOSS conversations of Firefly's data/dummy_data.jsonl (zh and en, one row per turn):
           built after the rule changes of issue 20 item 1 were made, from sources never read before.

The source rows are not copied into this repository: the script reads them from git snapshots of
the source repositories (at the commits in SOURCES, checked by blob id) and the truth files hold
ids, labels and notes only. Both this script and benches/quality_eval.py rebuild the same rows from
the snapshots and the seed.

    python benches/quality_label.py --git ROOT      # ROOT/<owner>+<name>/repo: bare git dirs
writes benches/data/quality_truth_tuning.jsonl and quality_truth_heldout.jsonl. Hand labels live
in benches/data/quality_hand_labels.jsonl (source, row, expected rules, note); see that file.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
HAND_LABELS = DATA / "quality_hand_labels.jsonl"
SEED = 20261206

# name: (repository, commit, path, blob, format)
SOURCES = {
    "lf_alpaca_en": ("hiyouga/LLaMA-Factory", "ff6d4d12eeb035d6ce06805a5733dd7b29f2ac30", "data/alpaca_en_demo.json",
                     "b645c416b5204f25fab66f839a44203a9ad5a2a4", "json"),
    "lf_alpaca_zh": ("hiyouga/LLaMA-Factory", "ff6d4d12eeb035d6ce06805a5733dd7b29f2ac30", "data/alpaca_zh_demo.json",
                     "4501a26f599373c68a8724ee21a4644f58550ca1", "json"),
    "belle_1k": ("shibing624/MedicalGPT", "5fec167692dfbc492e95a0d4ea04c168940563a8", "data/finetune/Belle_open_source_1k.json",
                 None, "jsonl"),
    "code_alpaca_2k": ("sahil280114/codealpaca", "2f78ddc5c682ed6738ad092bbbfa59ba915afcb0", "data/code_alpaca_2k.json",
                       "72d030181710b5ab46e042a7146773dac3f88998", "json"),
    "self_instruct_seed": ("yizhongw/self-instruct", "0b26ccaa415992100fa32df62d41b994cf928e23", "data/seed_tasks.jsonl",
                           "c97d40d76abd45cd7456f2d0d58459bb4df3cad5", "seed"),
    # heldout2: built after the rules were tuned on the two sets above, from sources never read before
    "alpaca_eval_gpt4": ("tatsu-lab/alpaca_eval", "cd543a149df89434d8a54582c0151c0b945c3d20", "results/gpt4_0613/model_outputs.json",
                         "8246bfd7640ce9bceef7ea8642e9cd0f1458bf74", "json"),
    "firefly_moss": ("yangjianxin1/Firefly", "e22b406ee440fda0b18a073c6325853de17741cb", "data/dummy_data.jsonl",
                     "510f91afa14d013763860235b1016a9f89d71a57", "turns"),
}
# set: ((source, clean rows, planted rows), ...)
SETS = {
    "tuning": (("lf_alpaca_en", 420, 200), ("lf_alpaca_zh", 420, 200)),
    "heldout": (("belle_1k", 350, 180), ("code_alpaca_2k", 350, 170), ("self_instruct_seed", 120, 50)),
    "heldout2": (("alpaca_eval_gpt4", 350, 170), ("firefly_moss", 90, 60)),
}
DEFECTS = ("truncated", "debris", "echo", "refusal", "refusal_prefix", "language", "too_short")
EXPECTED = {"truncated": "truncated_answer", "debris": "markup_debris", "echo": "answer_equals_instruction",
            "refusal": "refusal", "refusal_prefix": "refusal", "language": "language_mismatch", "too_short": "answer_too_short"}
_CJK = re.compile(r"[\u3400-\u9fff]")


@dataclass
class Row:
    id: str
    source: str
    row: int
    instruction: str
    input: str
    output: str


def read_source(name: str, git_root: Path) -> list[Row]:
    repo, commit, path, blob, fmt = SOURCES[name]
    gitdir = git_root / repo.replace("/", "+")
    gitdir = gitdir / "repo" if (gitdir / "repo").exists() else gitdir
    if blob is not None:
        got = subprocess.run(["git", "--git-dir", str(gitdir), "rev-parse", f"{commit}:{path}"], capture_output=True, text=True)
        if got.returncode or got.stdout.strip() != blob:
            raise SystemExit(f"{gitdir}: {commit}:{path} is not blob {blob} ({got.stderr.strip() or got.stdout.strip()}); "
                             f"fetch {repo} into {git_root}.")
    out = subprocess.run(["git", "--git-dir", str(gitdir), "show", f"{commit}:{path}"], capture_output=True)
    if out.returncode:
        raise SystemExit(f"{gitdir}: cannot read {commit}:{path}: {out.stderr.decode().strip()}. Fetch {repo} into {git_root}.")
    text = out.stdout.decode("utf-8")
    rows: list[Row] = []
    if fmt == "json":
        recs = json.loads(text)
    else:
        recs = [json.loads(line) for line in text.splitlines() if line.strip()]
    if fmt == "turns":  # multi-turn conversations: each human turn and its answer a row
        recs = [{"instruction": t["human"], "output": t["assistant"]} for r in recs for t in r["conversation"]]
    if fmt == "seed":
        recs = [{"instruction": r["instruction"], "input": i["input"], "output": i["output"]} for r in recs for i in r["instances"][:1]]
    for i, r in enumerate(recs):
        rows.append(Row(f"{name}:{i}", name, i, r["instruction"], r.get("input") or "", r["output"]))
    return rows


def is_zh(text: str) -> bool:
    return len(_CJK.findall(text)) * 2 > len(re.findall(r"[A-Za-z]+", text))


# -- planting -----------------------------------------------------------------------------------------
REFUSALS_ZH = ["抱歉，我无法满足你的请求。", "对不起，我不能回答这个问题。", "很抱歉，我无法提供这方面的帮助。",
               "作为一个AI语言模型，我不能对此发表意见。", "抱歉，作为人工智能助手，我无法完成这个任务。", "我无法回答这个问题，请咨询专业人士。",
               "不好意思，这个问题我没办法回答。", "作为一个人工智能，我没有个人经历，因此无法回答。"]
REFUSALS_EN = ["I'm sorry, but I can't help with that.", "I'm sorry, but I cannot fulfill this request.",
               "As an AI language model, I cannot provide personal opinions.", "I am unable to assist with this request.",
               "Sorry, I can't answer that question.", "As an AI, I don't have the ability to do that.",
               "I apologize, but I am not able to provide that information.", "Unfortunately, I cannot complete this task."]
PREFIX_ZH = ["作为一个AI语言模型，我不能确定所有细节，但", "抱歉，我无法提供准确的信息。不过，", "作为人工智能，我没有个人观点。",
             "对不起，我不能完全回答这个问题，但是"]
PREFIX_EN = ["As an AI language model, I don't have personal opinions, but ", "I'm sorry, but I can't be certain. However, ",
             "As an AI, I cannot browse the internet. That said, ", "Sorry, I am unable to verify this, but "]
DEBRIS = [
    lambda t, r: t + "<|im_end|>", lambda t, r: t + "\n<|endoftext|>", lambda t, r: t + " [/INST]", lambda t, r: "[INST] " + t,
    lambda t, r: t + "</s>", lambda t, r: "<p>" + t.replace("\n\n", "</p><p>") + "</p>", lambda t, r: t + "<br>",
    lambda t, r: _at_break(t, r, "<br/>"), lambda t, r: _at_break(t, r, "&nbsp;"), lambda t, r: t + "\n```",
    lambda t, r: "```\n" + t, lambda t, r: _at_break(t, r, "\n| a | b |\n| 1 | 2 | 3 |\n"), lambda t, r: t + "\n\n### Response:",
    lambda t, r: t + "\n<|assistant|>", lambda t, r: _at_break(t, r, "</div>"), lambda t, r: t + "\n\nUser:",
    lambda t, r: _at_break(t, r, " **"), lambda t, r: _at_break(t, r, "&amp;quot;"), lambda t, r: t + "<|eot_id|>",
    lambda t, r: _at_break(t, r, "<span style=\"color:red\">"),
]


def _at_break(text: str, rng: random.Random, piece: str) -> str:
    spots = [m.end() for m in re.finditer(r"[.。!！?？,，]\s?", text)] or [len(text)]
    i = rng.choice(spots)
    return text[:i] + piece + text[i:]


def _cut(text: str, rng: random.Random) -> str | None:
    """The text cut at a random word (a random character in Chinese) inside a prose sentence, 30-90%
    of the way through, never right after sentence punctuation and never inside a list item,
    heading, table or code."""
    spots = []
    pos = 0
    in_code = False
    for line in text.splitlines(keepends=True):
        s = line.strip()
        if s.startswith("```"):
            in_code = not in_code
        elif s and not in_code and not re.match(r"(?:[-*+#>|]|\d+[.)、])", s):
            for m in re.finditer(r"(?<=[A-Za-z,;])\s+(?=[A-Za-z])|(?<=[\u4e00-\u9fff，])(?=[\u4e00-\u9fff])", line):
                spots.append(pos + m.start())
        pos += len(line)
    lo, hi = 0.3 * len(text), 0.9 * len(text)
    spots = [i for i in spots if lo <= i <= hi]
    if not spots:
        return None
    return text[: rng.choice(spots)].rstrip()


def plant(kind: str, row: Row, rng: random.Random, other_lang: list[Row]) -> Row | None:
    out = None
    ins, inp, ans = row.instruction, row.input, row.output
    zh = is_zh(ins + ans)
    if kind == "truncated":
        out = _cut(ans, rng)
    elif kind == "debris":
        out = rng.choice(DEBRIS)(ans, rng)
    elif kind == "echo":
        if inp.strip() and rng.random() < 0.3:
            out = inp
        else:
            out = rng.choice([ins, ins, ins.strip() + "\n", ins.lower() if not zh else ins])
    elif kind == "refusal":
        out = rng.choice(REFUSALS_ZH if zh else REFUSALS_EN)
    elif kind == "refusal_prefix":
        out = rng.choice(PREFIX_ZH if zh else PREFIX_EN) + ans
    elif kind == "language":
        if inp.strip() and is_zh(inp) != is_zh(ins):
            return None
        out = rng.choice(other_lang).output
    elif kind == "too_short":
        units = len(_CJK.findall(ans)) + len(re.findall(r"[A-Za-z]+", ans))
        if units < 40:
            return None
        if zh:
            out = rng.choice(["好的。", "是的。", "见上文。", "略。", re.sub(r"[，。].*", "", ans.strip(), flags=re.S)[:2] + "。"])
        else:
            words = ans.split()
            out = rng.choice(["Yes.", "OK.", "See above.", "N/A", " ".join(words[:rng.choice([1, 2])]).rstrip(",.:;") + "."])
    if not out or out == ans:
        return None
    return Row(row.id, row.source, row.row, ins, inp, out)


def hand_labels() -> dict[str, dict]:
    if not HAND_LABELS.exists():
        return {}
    out = {}
    for line in HAND_LABELS.read_text(encoding="utf-8").splitlines():
        r = json.loads(line) if line.strip() else {}
        if "source" in r:
            out[f"{r['source']}:{r['row']}"] = r
    return out


def build(set_name: str, git_root: Path) -> tuple[list[Row], list[dict]]:
    """The rows of one set and their truth: the same rows for the same seed and sources."""
    rows: list[Row] = []
    truth: list[dict] = []
    labels = hand_labels()
    for source, n_clean, n_plant in SETS[set_name]:
        pool = read_source(source, git_root)
        seen, unique = set(), []
        for r in pool:
            key = (r.instruction.strip(), r.input.strip(), r.output.strip())
            if key not in seen:
                seen.add(key)
                unique.append(r)
        rng = random.Random(f"{SEED}:{set_name}:{source}")
        rng.shuffle(unique)
        clean, rest = unique[:n_clean], unique[n_clean:]
        for r in clean:
            lab = labels.get(r.id) or {}
            rows.append(r)
            truth.append({"id": r.id, "kind": "real", "defect": lab.get("defect"), "expected": lab.get("expected", []),
                          "allowed": lab.get("allowed", []), "note": lab.get("note", "")})
        # Answers in the other language, for language swaps: from the other sources of the set.
        others = [x for s, _, _ in SETS[set_name] if s != source for x in read_source(s, git_root)]
        planted = 0
        for r in rest:
            if planted >= n_plant:
                break
            if labels.get(r.id, {}).get("expected"):  # a row that was defective already gets no second defect
                continue
            kind = DEFECTS[planted % len(DEFECTS)]
            prng = random.Random(f"{SEED}:{r.id}:{kind}")
            other = [x for x in others if is_zh(x.output) != is_zh(r.instruction)]
            if not other:  # no other source in that language: the other-language rows of this one
                other = [x for x in pool if is_zh(x.output) != is_zh(r.instruction)]
            new = plant(kind, r, prng, other)
            if new is None:
                continue
            new.id = f"{r.id}:{kind}"
            rows.append(new)
            allowed = ["markup_debris"] if kind == "truncated" else []
            if kind == "too_short":
                allowed = ["truncated_answer"]
            truth.append({"id": new.id, "kind": "planted", "defect": kind, "expected": [EXPECTED[kind]], "allowed": allowed, "note": ""})
            planted += 1
    return rows, truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--git", type=Path, required=True, help="folder holding <owner>+<name>/repo git dirs of the sources")
    args = ap.parse_args()
    DATA.mkdir(exist_ok=True)
    for name in SETS:
        rows, truth = build(name, args.git)
        path = DATA / f"quality_truth_{name}.jsonl"
        with path.open("w", encoding="utf-8") as f:
            f.write(json.dumps({"set": name, "seed": SEED, "sources": {s: SOURCES[s][:3] for s, _, _ in SETS[name]}}) + "\n")
            for t in truth:
                f.write(json.dumps(t, ensure_ascii=False) + "\n")
        n_planted = sum(t["kind"] == "planted" for t in truth)
        n_bad_real = sum(t["kind"] == "real" and bool(t["expected"]) for t in truth)
        print(f"{path}: {len(rows)} rows, {n_planted} planted, {n_bad_real} real rows hand-labelled defective")


if __name__ == "__main__":
    main()
