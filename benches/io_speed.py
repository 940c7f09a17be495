"""Import and export speed on real-length bilingual rows, beside DuckDB doing the same by itself.

    PYTHONPATH=. .venv/bin/python benches/io_speed.py [--rows 100000 1000000] [--profile]

The rows are built from the real text in this repository (LLaMA-Factory's alpaca_zh_demo and
glaive_toolcall_en_demo rows in tests/data/llamafactory/, sample_data/, the English prose of
README.md and docs/contracts.md), multiplied with edits: about 15% Chinese rows, answers of several
hundred characters (one to three real answers or paragraphs joined, mostly one or two), a third with an `input`, and
the escapes real files have (newlines, quotes, backslashes in code, now and then a literal `\\u00e9`
or a control character, which used to send a row's content hash to Python). Alpaca JSON Lines.

Printed, side by side from one run (rows/s, and each studio step as a ratio of its DuckDB baseline):
- DuckDB `read_json` into an in-memory table; into a DuckDB file (committed, closed);
- `studio import` (`curation.importers.import_paths`, committed);
- DuckDB `COPY` of the workspace's rows to JSONL and to Parquet; `studio export` (`export_split`,
  messages rows, `--include approved+pending`, val 0.1) to JSONL and to Parquet.

`--profile` runs cProfile on the import of the first size instead and prints the top entries.

`--export WS [--against TREE] [--rounds N]` times only `studio export` on an existing workspace
(`export_split(ws, "bench-export", include="approved+pending", force=True)`), each run in a fresh
interpreter (imports included in the process time), alternating with DuckDB's own COPY of the same
lines and, with `--against`, with the code of another checkout (e.g. `git archive a5c150a | tar -x
-C TREE`): the export's wall and CPU seconds, the process's wall seconds, the load average.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]


def _paragraphs(md: Path) -> list[str]:
    """Prose paragraphs of a markdown file (no tables, code or headings), markup kept as it is."""
    text = md.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    out = []
    for block in text.split("\n\n"):
        block = block.strip()
        if len(block) > 120 and not block.startswith(("#", "|", "-", "```")):
            block = " ".join(block.split())
            # at most ~400 characters, cut at a sentence end: a paragraph of an answer, not a page
            cut = [m.end() for m in re.finditer(r"[.!?] ", block) if m.end() <= 400]
            out.append(block[:cut[-1]].strip() if len(block) > 400 and cut else block[:400])
    return out


def _pools() -> dict[str, list[str]]:
    zh_ins, zh_out, en_ins, en_out, zh_inp, en_inp = [], [], [], [], [], []
    for r in json.loads((ROOT / "tests/data/llamafactory/alpaca_zh_demo.json").read_text(encoding="utf-8")):
        zh_ins.append(r["instruction"])
        zh_out.append(r["output"])
        if r.get("input"):
            zh_inp.append(r["input"])
    for r in json.loads((ROOT / "sample_data/alpaca_mixed.json").read_text(encoding="utf-8")):
        zh = bool(re.search(r"[\u4e00-\u9fff]", r["instruction"] + r["output"]))
        (zh_ins if zh else en_ins).append(r["instruction"])
        (zh_out if zh else en_out).append(r["output"])
        if r.get("input"):
            (zh_inp if zh else en_inp).append(r["input"])
    for name in ("glaive_toolcall_en_demo.json",):
        for r in json.loads((ROOT / "tests/data/llamafactory" / name).read_text(encoding="utf-8")):
            for t in r["conversations"]:
                if t["from"] == "human":
                    en_ins.append(t["value"])
                elif t["from"] == "gpt":
                    en_out.append(t["value"])
    prose = _paragraphs(ROOT / "README.md") + _paragraphs(ROOT / "docs/contracts.md")
    en_out += prose
    en_inp += [p[:200] for p in prose[::3]]
    return {"zh_ins": zh_ins, "zh_out": zh_out, "en_ins": en_ins, "en_out": en_out,
            "zh_inp": zh_inp or zh_out[:20], "en_inp": en_inp}


CODE = ('def load(path):\n    with open(path) as f:\n        return [json.loads(line) for line in f if line.strip()]\n',
        'print("tab\\there", \'quote\', r"C:\\Users\\data\\train.jsonl")\n',
        're.sub(r"\\s+", " ", text)  # collapse whitespace\n',
        'SELECT "name", count(*) FROM t WHERE path LIKE \'%\\\\%\' GROUP BY 1;\n')


def _edit(text: str, rng: random.Random) -> str:
    """A realistic edit: drop or repeat a word, change a number, swap two sentences, add a tail."""
    r = rng.random()
    if r < 0.25 and " " in text:
        words = text.split(" ")
        i = rng.randrange(len(words))
        return " ".join(words[:i] + words[i + 1:])
    if r < 0.45:
        return re.sub(r"\d+", lambda m: str(int(m.group()) + rng.randint(1, 9)), text, count=1) + f" ({rng.randint(2, 999)})"
    if r < 0.6:
        parts = re.split(r"(?<=[.。!?！？])\s*", text)
        if len(parts) > 2:
            i = rng.randrange(len(parts) - 1)
            parts[i], parts[i + 1] = parts[i + 1], parts[i]
            return " ".join(p for p in parts if p)
    zh = re.search(r"[\u4e00-\u9fff]", text) is not None
    return text + rng.choice(("", " 希望对你有帮助。", "\n\n如果还有问题，请告诉我。") if zh else
                             ("", " Hope this helps!", "\n\nLet me know if you need more detail."))


def generate(path: Path, rows: int, seed: int = 0) -> dict[str, float]:
    """Write `rows` alpaca JSON Lines to `path`; what they are like (share Chinese, mean answer)."""
    rng = random.Random(seed)
    pools = _pools()
    zh = answer_chars = 0
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(rows):
            chinese = rng.random() < 0.15
            lang = "zh" if chinese else "en"
            ins = _edit(rng.choice(pools[f"{lang}_ins"]), rng)
            out = ("\n\n" if rng.random() < 0.5 else " ").join(
                _edit(rng.choice(pools[f"{lang}_out"]), rng) for _ in range(rng.choice((1, 1, 2, 2, 3))))
            inp = _edit(rng.choice(pools[f"{lang}_inp"]), rng) if rng.random() < 0.3 else ""
            e = rng.random()
            if e < 0.08:
                out += "\n\n```python\n" + rng.choice(CODE) + "```"
            elif e < 0.085:
                out += " The escape \\u00e9 is é."       # a literal backslash-u in the text
            elif e < 0.087:
                out += " \x1b[1mbold\x1b[0m"            # a control character (JSON \u001b)
            zh += chinese
            answer_chars += len(out)
            f.write(json.dumps({"instruction": ins, "input": inp, "output": out}, ensure_ascii=False) + "\n")
    return {"zh_share": zh / rows, "mean_answer_chars": answer_chars / rows}


# -- measurements ----------------------------------------------------------------------------------
def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def read_json_memory(src: Path) -> float:
    con = duckdb.connect()
    s = timed(lambda: con.execute("CREATE TABLE t AS SELECT * FROM read_json(?)", [str(src)]))
    con.close()
    return s


def read_json_file(src: Path, db: Path) -> float:
    def run():
        con = duckdb.connect(str(db))
        con.execute("CREATE TABLE t AS SELECT * FROM read_json(?)", [str(src)])
        con.close()
    return timed(run)


def studio_import(src: Path, ws_dir: Path) -> float:
    from curation.importers import import_paths
    from curation.workspace import open_workspace

    def run():
        ws = open_workspace(ws_dir)
        report = import_paths(ws, [src])
        assert report.files[0].fast_path, "the fast path declined the file"
        ws.close()
    return timed(run)


def duckdb_copy(ws_dir: Path, out: Path, fmt: str) -> float:
    from curation.workspace import open_workspace

    ws = open_workspace(ws_dir)
    opts = "(FORMAT json)" if fmt == "jsonl" else "(FORMAT parquet, COMPRESSION zstd)"
    from curation.sql_json import messages_sql  # rows of the fast import store none: built from their turns

    s = timed(lambda: ws.con.execute(f"COPY (SELECT id, {messages_sql()} AS messages FROM samples ORDER BY id) TO '{out}' {opts}"))
    ws.close()
    return s


def studio_export(ws_dir: Path, name: str, target: str) -> float:
    from curation.export import export_split
    from curation.workspace import open_workspace

    ws = open_workspace(ws_dir)
    s = timed(lambda: export_split(ws, name, include="approved+pending", target=target))
    ws.close()
    return s


def measure(rows: int, tmp: Path) -> list[tuple[str, float, str]]:
    src = tmp / f"alpaca-{rows}.jsonl"
    shape = generate(src, rows)
    src.read_bytes()  # warm the page cache for every contender
    mem = read_json_memory(src)
    into_file = read_json_file(src, tmp / f"rj-{rows}.duckdb")
    ws = tmp / f"ws-{rows}"
    imp = studio_import(src, ws)
    copy_j = duckdb_copy(ws, tmp / f"copy-{rows}.jsonl", "jsonl")
    copy_p = duckdb_copy(ws, tmp / f"copy-{rows}.parquet", "parquet")
    exp_j = studio_export(ws, "j", "jsonl")
    exp_p = studio_export(ws, "p", "parquet")
    manifest_kb = (ws / "splits" / "j" / "manifest.json").stat().st_size / 1024
    mb = src.stat().st_size / 1e6
    print(f"\n{rows:,} rows, {mb:,.0f} MB JSONL, {shape['zh_share']:.1%} Chinese, mean answer "
          f"{shape['mean_answer_chars']:,.0f} chars; manifest.json {manifest_kb:,.1f} KB")
    return [
        ("DuckDB read_json, in memory", mem, ""),
        ("DuckDB read_json, into a DuckDB file", into_file, ""),
        ("studio import", imp, f"{mem / imp:.2f}x in-memory, {into_file / imp:.2f}x into-file"),
        ("DuckDB COPY samples to JSONL", copy_j, ""),
        ("studio export, JSONL", exp_j, f"{copy_j / exp_j:.2f}x COPY"),
        ("DuckDB COPY samples to Parquet", copy_p, ""),
        ("studio export, Parquet", exp_p, f"{copy_p / exp_p:.2f}x COPY"),
    ]


_EXPORT_RUN = """
import json, sys, time
from pathlib import Path
from curation.workspace import open_workspace
ws = open_workspace(Path(sys.argv[1]))
t, c = time.perf_counter(), time.process_time()
if sys.argv[2] == "copy":  # DuckDB by itself: the same messages lines, in id order, one file
    try:  # rows of the fast import store no messages since sql_json.messages_sql: built from their turns
        from curation.sql_json import messages_sql
        m = messages_sql()
    except ImportError:
        m = "CAST(messages AS VARCHAR)"
    ws.con.execute(
        "COPY (SELECT '{\\"messages\\": ' || " + m + " || '}' FROM samples ORDER BY id) TO ? "
        "(FORMAT csv, header false, quote '', escape '', delimiter '\\x01')", [str(Path(sys.argv[1]) / "copy.jsonl")])
    rows = ws.con.execute("SELECT count(*) FROM samples").fetchall()[0][0]
else:
    from curation.export import export_split
    m = export_split(ws, "bench-export", include="approved+pending", force=True)
    rows = sum(m.data["counts"].values())
print(json.dumps({"s": time.perf_counter() - t, "cpu": time.process_time() - c, "rows": rows}))
"""


def export_runs(ws_dir: Path, against: Path | None, rounds: int) -> None:
    """Alternate DuckDB's COPY, the export of `against` and this checkout's, each in a fresh process."""
    contenders = [("DuckDB COPY", ROOT, "copy")] + ([(f"export, {against.name}", against, "export")] if against else [])
    contenders.append(("export, this checkout", ROOT, "export"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; DuckDB {duckdb.__version__}; {ws_dir}")
    print("\n| run | what | seconds | rows/s | CPU s | process s | load 1 min |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in range(1, rounds + 1):
        for what, tree, mode in contenders:
            load = os.getloadavg()[0]
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", _EXPORT_RUN, str(ws_dir), mode], capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tree)
            process = time.perf_counter() - t
            if out.returncode:
                raise SystemExit(f"{what} failed:\n{out.stderr}")
            res = json.loads(out.stdout.splitlines()[-1])
            print(f"| {r} | {what} | {res['s']:.2f} | {res['rows'] / res['s']:,.0f} | {res['cpu']:.2f} | {process:.2f} | {load:.2f} |",
                  flush=True)
    (ws_dir / "copy.jsonl").unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000])
    ap.add_argument("--profile", action="store_true", help="cProfile the import of the first size instead")
    ap.add_argument("--export", type=Path, metavar="WS", help="time only the export of this workspace (a copy: it writes "
                    "splits/bench-export and copy.jsonl into it)")
    ap.add_argument("--against", type=Path, metavar="TREE", help="with --export: another checkout's tree to alternate with")
    ap.add_argument("--rounds", type=int, default=2, help="with --export: how many times each runs")
    args = ap.parse_args()
    if args.export:
        export_runs(args.export, args.against, args.rounds)
        return
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.profile:
            src = tmp / "alpaca.jsonl"
            generate(src, args.rows[0])
            prof = cProfile.Profile()
            prof.runcall(studio_import, src, tmp / "ws")
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
            return
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; DuckDB {duckdb.__version__}")
        for rows in args.rows:
            table = measure(rows, tmp)
            print("\n| what | seconds | rows/s | studio vs DuckDB |\n| --- | ---: | ---: | --- |")
            for what, s, ratio in table:
                print(f"| {what} | {s:.2f} | {rows / s:,.0f} | {ratio} |")
            for f in tmp.iterdir():
                shutil.rmtree(f) if f.is_dir() else f.unlink()


if __name__ == "__main__":
    main()
