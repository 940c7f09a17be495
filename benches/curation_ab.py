"""Does the studio's curation make a real model better? Raw data vs curated data, same training.

    # everything on one machine (prepare needs the curation package and duckdb; run needs only training)
    .venv/bin/python benches/curation_ab.py all --out /tmp/ab

    # or in phases: prepare here, run on a GPU box (only the training package and OUT are needed), report anywhere
    .venv/bin/python benches/curation_ab.py prepare --out /tmp/ab
    python benches/curation_ab.py run --out /tmp/ab --device cuda [--steps 150 --seeds 1,2,3]
    .venv/bin/python benches/curation_ab.py report --out /tmp/ab

    # a device call (no network there; the model travels as the registry's GGUF in two parts, as in
    # benches/gpu/real_model_gpu.py): copy what `run` reads into an ignored folder that travels
    mkdir -p .gpu/curation-ab && cp -r /tmp/ab/prepare.json /tmp/ab/heldout.jsonl /tmp/ab/splits .gpu/curation-ab/
    #   call 1, carry [".gpu/m/part-aa"]:  mkdir -p /tmp/m && cp .gpu/m/part-aa /tmp/m/
    #   call 2, carry [".gpu/whl", ".gpu/m/part-ab", ".gpu/curation-ab"]:
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl && \\
      PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 timeout 560 python3 benches/curation_ab.py run \\
      --out .gpu/curation-ab --device cuda --model-parts /tmp/m/part-aa,.gpu/m/part-ab --copy-to $OUT
    #   then here: copy the returned results.json into /tmp/ab and run the report phase

    # the smoke test's size (tests/test_curation_ab_bench.py), CPU, about 20 s
    .venv/bin/python benches/curation_ab.py all --out /tmp/ab-smoke --pool 60 --heldout 12 --steps 2 --seeds 1 \\
        --limit 4 --device cpu --set train.micro_batch_size=1 --set train.grad_accum=1 --set data.max_length=128

1. `prepare` (CPU, curation + duckdb): builds the data (benches/_ab_data.py: six templated task
   families with one checkable number each, a clean pool of --pool rows, a held-out set of
   --heldout items that shares no operands with any training row, and a raw file = pool + planted
   duplicates, refusals, truncated answers, wrong-language answers and wrong answers, each row's
   junk type in junk.json). Imports raw.json into a fresh workspace (OUT/workspace), exports split
   `raw` (every row, no curation), then curates with the studio's own pipeline: `find_duplicates`
   (threshold 0.8; non-keepers leave every split), `run_quality` with the built-in rules, a bulk
   reject of every flagged sample (what `studio reject --flag '*'` does), and exports split
   `curated`. Both splits use --val 0: the eval is the held-out set. Prints and saves
   (prepare.json) the catch table: per junk type, how many were planted, caught (left out of
   `curated`) and kept, and by what. No LLM judge runs (the bench configures no provider), so
   wrong answers in the right format are expected to get through; the table says so.
   Writes OUT/{raw.json, heldout.jsonl, junk.json, prepare.json, splits/raw, splits/curated, workspace/}.
2. `run` (training package only; no duckdb, no curation): for seed in --seeds, for arm in raw,
   curated: `create_run` + `execute` (the path of `studio train --foreground`) with the preset
   (default smollm2-cpu: LoRA r16/a32 on q/k/v/o, lr 5e-4, 8 packed sequences of 256 tokens a
   step) and the SAME fixed `train.max_steps` for both arms (not epochs: the curated split is
   smaller), `train.seed` = the seed; then the adapter answers the held-out set (`run_eval`,
   greedy, scorer `numeric`: the last number in the answer), and the mean NLL of the reference
   answers is measured teacher-forced (a second, lower-noise signal: greedy accuracy does not see
   probability a model moved to refusals or other languages while the right answer stays on
   top). The base answers it once. Results go
   to OUT/results.json after every run (a call cut off keeps what finished; a second `run`
   skips what is done with the same settings). Runs are in OUT/runs/ARM-sSEED-NNNst.
3. `report`: a markdown table (accuracy mean ± sd over seeds, each seed, answer NLL, the base,
   training seconds and tokens/s per arm, eval items/s), accuracy per task family, the catch
   table, and PASS when curated mean - raw mean (accuracy) > max(sd raw, sd curated) (the
   seed-to-seed spread), else FAIL. The NLL difference is printed beside it, not part of the verdict.

Calibration (this repo's 2-core CPU, shared with other jobs, LoRA at ~110 tokens/s; default data):
the base, SmolLM2-135M-Instruct, answers 22.8% of the 180 held-out items (greedy, 48 new tokens):
add 16.7%, sub 6.7%, convert 0% (it multiplies km by 100), count 0%, larger 50%, next 63.3%.
30 steps, seed 1 (56k tokens, 0.55 epoch of curated, ~520 s each): curated 65.6% (add 80%, sub
16.7%, convert 96.7%, count 6.7%, larger 93.3%, next 100%), raw 60.0% (add 56.7%, sub 10%, convert
90%, count 13.3%, larger 93.3%, next 96.7%); answer NLL base 0.797, raw 0.145, curated 0.114
nats/token. One seed each: no verdict. A step is ~1,850 tokens (8 packed sequences of 256), so an
epoch is ~55 steps of `curated` and ~69 of `raw`; the default 150 steps are ~2.2 epochs of raw and
~2.8 of curated. On an H100 such a run trains at ~5,800 tokens/s (the small steps are bound by
kernel launches) in ~50-65 s, and count, flat at 30 steps, reaches 63-69%.
benches/results/curation_ab.md has the H100 run (5 seeds) of these defaults.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ARMS = ("raw", "curated")
SCORER = "numeric"
DEFAULT_STEPS = 150
DEFAULT_PRESET = "smollm2-cpu"


# =========================================================================== helpers

def _write_json(path: Path, data: Any, copy_to: str | None = None) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    if copy_to:  # e.g. a device call's $OUT, so a call cut off still brings back what finished
        Path(copy_to).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(copy_to) / path.name)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _say(msg: str) -> None:
    print(msg, flush=True)


# =========================================================================== prepare

def _catch_table(labels: list[dict[str, Any]], fate: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per junk type: planted, caught (left out of `curated`), kept, and what caught them.

    Duplicates count by group (the original pool row and its copies): the planted rows are the
    copies; the group may keep one row, so a copy kept in place of its original is no junk kept;
    `kept` is the rows a group keeps beyond one. A group that keeps none lost its clean item too,
    which the `clean` row counts as removed."""
    from collections import Counter

    def by(rows: list[int]) -> dict[str, int]:
        c: Counter = Counter()
        for r in rows:
            for why in fate[r]["why"]:
                c[why] += 1
        return dict(c.most_common())

    out = []
    groups: dict[int, list[int]] = {}
    for lab in labels:
        if "dup_group" in lab:
            groups.setdefault(lab["dup_group"], []).append(lab["row"])
    clean = [lab["row"] for lab in labels if lab["type"] == "clean" and "dup_group" not in lab]
    clean_removed = [r for r in clean if not fate[r]["kept"]]
    lost_groups = [g for g, rows in groups.items() if not any(fate[r]["kept"] for r in rows)]
    n_clean = len(clean) + len(groups)
    out.append({"type": "clean", "planted": n_clean, "caught": len(clean_removed) + len(lost_groups),
                "kept": n_clean - len(clean_removed) - len(lost_groups), "caught_by": by(clean_removed),
                "note": "clean rows removed are false positives"})
    copies = sum(len(rows) - 1 for rows in groups.values())
    kept_extra = sum(max(0, sum(fate[r]["kept"] for r in rows) - 1) for rows in groups.values())
    dup_removed = [r for rows in groups.values() for r in rows if not fate[r]["kept"]]
    out.append({"type": "duplicate", "planted": copies, "caught": copies - kept_extra, "kept": kept_extra,
                "caught_by": by(dup_removed), "note": f"{len(groups)} items copied; one row of each may stay"})
    from benches._ab_data import JUNK_TYPES

    notes = {"refusal": "", "truncated": "", "wrong_language": "", "wrong_answer": "no rule can see a wrong number"}
    for t in JUNK_TYPES[1:]:
        rows = [lab["row"] for lab in labels if lab["type"] == t]
        removed = [r for r in rows if not fate[r]["kept"]]
        note = notes[t]
        if t == "wrong_language":
            zh = [lab["row"] for lab in labels if lab["type"] == t and lab.get("language") == "zh"]
            fr = [r for r in rows if r not in set(zh)]
            note = (f"zh {sum(not fate[r]['kept'] for r in zh)}/{len(zh)} caught, "
                    f"fr {sum(not fate[r]['kept'] for r in fr)}/{len(fr)} caught (same script as English)")
        out.append({"type": t, "planted": len(rows), "caught": len(removed), "kept": len(rows) - len(removed),
                    "caught_by": by(removed), "note": note})
    return out


def format_catch_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| rows | planted | caught | kept | caught by | note |", "| --- | ---: | ---: | ---: | --- | --- |"]
    for r in rows:
        by = ", ".join(f"{k} {v}" for k, v in r["caught_by"].items()) or "-"
        lines.append(f"| {r['type']} | {r['planted']} | {r['caught']} | {r['kept']} | {by} | {r['note']} |")
    return "\n".join(lines)


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    from benches._ab_data import build
    from curation import browse, review
    from curation.dedup import DedupParams, find_duplicates
    from curation.export import export_split
    from curation.importers import import_paths
    from curation.quality import run_quality
    from curation.workspace import open_workspace

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = build(pool=args.pool, heldout=args.heldout, junk_frac=args.junk_frac, seed=args.data_seed)
    raw_path = out / "raw.json"
    raw_path.write_text(json.dumps(data.raw, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    with open(out / "heldout.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(it.row(), ensure_ascii=False) + "\n" for it in data.heldout)
    _write_json(out / "junk.json", {"settings": data.settings, "counts": data.counts(), "rows": data.labels})
    _say(f"data: {len(data.pool)} clean pool rows, {len(data.raw)} raw rows, {len(data.heldout)} held-out items "
         f"({', '.join(f'{k} {v}' for k, v in data.counts().items())})")

    ws_dir = out / "workspace"
    if ws_dir.exists():
        shutil.rmtree(ws_dir)  # the bench's own workspace: rebuilt from raw.json each time
    splits = out / "splits"
    ws = open_workspace(ws_dir)
    try:
        imp = import_paths(ws, [raw_path])
        n_imported = ws.count()
        raw_split = export_split(ws, "raw", val=0.0, include="approved+pending", force=True)
        dd = find_duplicates(ws, DedupParams(threshold=args.dedup_threshold))
        qr = run_quality(ws)
        flagged = browse.ids(ws.con, browse.Filter(flag="*"))
        if flagged:
            review.reject(ws, flagged, reason="quality flag (benches/curation_ab.py: bulk reject --flag '*')")
        cur_split = export_split(ws, "curated", val=0.0, include="approved+pending", force=True)
        # each imported row's fate: kept in `curated`, or why not
        rows = ws.con.execute(
            "SELECT s.id, s.source_row, s.status, s.duplicate_of, "
            "list(f.rule_id ORDER BY f.rule_id) FILTER (WHERE f.rule_id IS NOT NULL) "
            "FROM samples s LEFT JOIN quality_flags f ON f.sample_id = s.id GROUP BY ALL ORDER BY s.source_row").fetchall()
        kept_ids = set(cur_split.sample_ids("train"))
        first_row = min(r[1] for r in rows)
        fate: dict[int, dict[str, Any]] = {}
        for sid, srow, status, dup_of, rules in rows:
            why = (["dedup"] if dup_of is not None else []) + (list(rules or []) if status == "rejected" else [])
            fate[int(srow) - first_row] = {"sample_id": int(sid), "kept": sid in kept_ids, "why": why}
        # the import keeps each row's position; check it against the texts so the table cannot drift
        probe = ws.con.execute("SELECT source_row, instruction FROM samples ORDER BY source_row LIMIT 3").fetchall()
        for srow, ins in probe:
            assert ins == data.raw[int(srow) - first_row]["instruction"], "source_row does not map to raw.json rows"
    finally:
        ws.close()
    if splits.exists():
        shutil.rmtree(splits)
    splits.mkdir()
    for name, m in (("raw", raw_split), ("curated", cur_split)):
        shutil.copytree(m.path, splits / name)
    table = _catch_table(data.labels, fate)
    result = {
        "settings": {**data.settings, "dedup_threshold": args.dedup_threshold, "rules": "curation/rules/default.yaml"},
        "counts": data.counts(),
        "import": {"rows": n_imported, "files": len(imp.files)},
        "dedup": {k: dd.as_dict()[k] for k in ("clusters", "exact_clusters", "near_clusters", "duplicates")},
        "quality": {"flagged_samples": qr.flagged_samples, "by_rule": qr.by_rule, "rejected": len(flagged)},
        "judge": "not run: no provider is configured for this bench (an LLM judge, `studio augment judge`, "
                 "is the tool for wrong answers in the right format)",
        "splits": {"raw": {"path": "splits/raw", "train": raw_split.counts["train"]},
                   "curated": {"path": "splits/curated", "train": cur_split.counts["train"]}},
        "heldout": {"path": "heldout.jsonl", "n": len(data.heldout), "families": [it.family for it in data.heldout]},
        "catch": table,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    _write_json(out / "prepare.json", result)
    _say(f"dedup: {dd.clusters} clusters ({dd.exact_clusters} exact, {dd.near_clusters} near), "
         f"{dd.duplicates} rows marked duplicate")
    _say(f"quality: {qr.flagged_samples} samples flagged ({', '.join(f'{k} {v}' for k, v in qr.by_rule.items()) or 'none'}), "
         f"all rejected")
    _say(f"splits: raw {raw_split.counts['train']} rows, curated {cur_split.counts['train']} rows (val 0)")
    _say("\n" + format_catch_table(table))
    _say(f"\nLLM judge: {result['judge']}")
    return result


# =========================================================================== run

def _config(args: argparse.Namespace, split: Path, seed: int):
    from training.config import load_config

    overrides = [f"data.split={split}", f"train.max_steps={args.steps}", f"train.seed={seed}",
                 "train.save_steps=1000000", "train.eval_steps=1000000", f"train.logging_steps={max(1, min(10, args.steps))}"]
    if args.lr is not None:
        overrides.append(f"train.learning_rate={args.lr}")
    if args.base:
        overrides.append(f"base={args.base}")
    return load_config(preset=args.preset, overrides=overrides + list(args.set or []))


def _machine(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def _per_family(result, families: list[str]) -> dict[str, dict[str, float]]:
    out: dict[str, list[int]] = {}
    for row, fam in zip(result.items, families):
        for ans in row["answers"].values():
            out.setdefault(fam, [0, 0])
            out[fam][0] += int(bool(ans.get("correct")))
            out[fam][1] += 1
    return {f: {"correct": c, "n": n, "accuracy": round(c / n, 4) if n else 0.0} for f, (c, n) in sorted(out.items())}


def _eval(args, prep: dict[str, Any], out: Path, spec, *, base: str | None, out_dir: Path | None) -> dict[str, Any]:
    from training.evaluate import load_items, run_eval

    items = load_items(out / prep["heldout"]["path"], limit=args.limit)
    families = prep["heldout"]["families"][:len(items)]
    t0 = time.perf_counter()
    res = run_eval(out / prep["heldout"]["path"], [spec], scorer=SCORER, items=items, max_new_tokens=args.max_new_tokens,
                   batch_size=args.batch_size, device=args.device_resolved, base=base, out_dir=out_dir,
                   eval_id="heldout")
    wall = time.perf_counter() - t0
    m = res.models[0]
    nll = _answer_nll(spec, items, base=base, device=args.device_resolved, batch_size=args.batch_size)
    return {"n": m.n, "correct": m.correct, "accuracy": round(m.accuracy, 4), "items_per_s": round(m.items_per_s, 3),
            "generate_s": round(m.seconds, 2), "wall_s": round(wall, 2), **nll, "per_family": _per_family(res, families),
            "examples": [{"prompt": r["messages"][-1]["content"], "reference": r["reference"],
                          "answer": r["answers"][m.name]["text"], "correct": r["answers"][m.name].get("correct")}
                         for r in res.items[:6]]}


def _answer_nll(spec, items, *, base: str | None, device: str, batch_size: int) -> dict[str, float]:
    """Mean negative log-likelihood (nats per answer token) of the held-out reference answers, teacher
    forced through the training chat template: how much probability the model puts on the right
    answer in the taught format. Greedy accuracy ignores mass a model moved to refusals, other
    languages or cut-off answers as long as the right answer stays on top; this does not."""
    import torch

    from training.data import tokenise_sample
    from training.loading import load_model, load_tokenizer, pick_precision

    if spec.kind == "adapter":
        from training.inference import load_session

        session = load_session([spec.path], device=device)
        model, tok = session.model, session.tokenizer
    else:
        from training.models import resolve_base

        path = resolve_base(base, fetch=True)
        model, tok = load_model(path, precision=pick_precision("auto", device), device=device), load_tokenizer(path)
    model.eval()
    total, count = 0.0, 0
    seqs = [tokenise_sample(tok, {"messages": it.messages + [{"role": "assistant", "content": it.reference}]})
            for it in items]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    for start in range(0, len(seqs), max(1, batch_size)):
        batch = seqs[start:start + batch_size]
        width = max(len(t.input_ids) for t in batch)
        ids = torch.tensor([t.input_ids + [pad] * (width - len(t.input_ids)) for t in batch], device=device)
        labels = torch.tensor([t.labels + [-100] * (width - len(t.labels)) for t in batch], device=device)
        mask = torch.tensor([[1] * len(t.input_ids) + [0] * (width - len(t.input_ids)) for t in batch], device=device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        target = labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                ignore_index=-100, reduction="sum")
        total += float(nll)
        count += int((target != -100).sum())
    del model
    return {"answer_nll": round(total / max(count, 1), 4), "answer_tokens": count}


def _train_stats(run_dir: Path) -> dict[str, Any]:
    from training.metrics import read_metrics

    rows, _ = read_metrics(run_dir)
    steps = [r for r in rows if "event" not in r]
    tps = [r["tokens_per_s"] for r in steps if r.get("tokens_per_s")]
    loss = [r["loss"] for r in steps if r.get("loss") is not None]
    seen = [r["tokens_seen"] for r in steps if r.get("tokens_seen")]
    return {"final_loss": round(loss[-1], 4) if loss else None, "first_loss": round(loss[0], 4) if loss else None,
            "tokens_per_s": round(statistics.median(tps), 1) if tps else None,
            "tokens_seen": int(seen[-1]) if seen else None,
            "epoch": next((r.get("epoch") for r in reversed(steps) if r.get("epoch") is not None), None)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch loads: the trainer and the eval see no GPU
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from training.evaluate import ModelSpec
    from training.loading import pick_device
    from training.runs import create_run, execute, read_status

    out = Path(args.out)
    prep_path = out / "prepare.json"
    if not prep_path.is_file():
        raise SystemExit(f"{prep_path} missing: run the prepare phase first (curation_ab.py prepare --out {out})")
    prep = _read_json(prep_path)
    if args.model_parts:  # a GPU box without network: the registry's GGUF, carried in parts, into the store
        from benches.gpu.real_model_gpu import MODEL, build_store
        from training.models import ModelUnavailable, resolve_base

        try:
            _say(f"model store: {resolve_base(MODEL, fetch=False)} (already there)")
        except ModelUnavailable:
            _say(f"model store: {build_store([p for p in args.model_parts.split(',') if p], out)}")
    args.device_resolved = pick_device(None if args.device == "auto" else args.device)
    seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    arms = [a for a in str(args.arms).split(",") if a.strip()]
    if set(arms) - set(ARMS):
        raise SystemExit(f"--arms {args.arms}: use raw, curated or both")
    res_path = out / "results.json"
    results = _read_json(res_path) if res_path.is_file() else {}
    settings = {"steps": args.steps, "preset": args.preset, "lr": args.lr, "base": args.base, "set": list(args.set or []),
                "limit": args.limit, "max_new_tokens": args.max_new_tokens, "scorer": SCORER}
    base_settings = {k: settings[k] for k in ("base", "limit", "max_new_tokens", "scorer")}
    if results.get("settings") != settings:
        if results.get("runs"):
            _say(f"results.json was made with other settings ({results.get('settings')}); its runs are set aside")
        keep_base = results.get("base") if results.get("base_settings") == base_settings else None
        results = {"settings": settings, "runs": {}, "base": keep_base}
    results["base_settings"] = base_settings
    results["machine"] = _machine(args.device_resolved)
    results["device"] = args.device_resolved
    runs_dir = out / "runs"
    runs_dir.mkdir(exist_ok=True)
    cfg0 = _config(args, out / prep["splits"]["raw"]["path"], seeds[0] if seeds else 1)
    results["config"] = {"base": cfg0.base, "method": cfg0.method, "learning_rate": cfg0.train.learning_rate,
                         "micro_batch_size": cfg0.train.micro_batch_size, "grad_accum": cfg0.train.grad_accum,
                         "max_length": cfg0.data.max_length, "packing": cfg0.data.packing, "lora_r": cfg0.lora.r}
    _say(f"run: {args.steps} steps a run, seeds {seeds}, arms {', '.join(arms)}, on {results['machine']}")

    if results.get("base") is None and not args.skip_base:
        _say("eval: base")
        results["base"] = _eval(args, prep, out, ModelSpec("base", "base"), base=cfg0.base,
                                out_dir=out / "base-eval")
        _write_json(res_path, results, args.copy_to)
        _say(f"  base: {results['base']['accuracy']:.1%} of {results['base']['n']}")

    for seed in seeds:
        for arm in arms:
            key = f"{arm}-s{seed}"
            if (results["runs"].get(key) or {}).get("state") == "done":
                _say(f"{key}: done earlier, skipped")
                continue
            name = f"{arm}-s{seed}-{args.steps}st"
            run_dir = runs_dir / name
            if run_dir.exists():
                shutil.rmtree(run_dir)  # an unfinished run of an earlier call: start it again
            cfg = _config(args, out / prep["splits"][arm]["path"], seed)
            run_dir = create_run(runs_dir, cfg, name=name,
                                 reproduce=f"studio train {prep['splits'][arm]['path']} --config {{config}}")
            _say(f"train: {name} ({prep['splits'][arm]['train']} rows)")
            t0 = time.perf_counter()
            status = execute(run_dir)
            train_s = time.perf_counter() - t0
            entry: dict[str, Any] = {"arm": arm, "seed": seed, "run": name, "state": str(status.state),
                                     "machine": results["machine"],
                                     "train_s": round(train_s, 2), "rows": prep["splits"][arm]["train"],
                                     **_train_stats(run_dir)}
            if status.state != "done":
                entry["error"] = status.error or read_status(run_dir).error
                results["runs"][key] = {**entry, "state": "failed"}
                _write_json(res_path, results, args.copy_to)
                raise SystemExit(f"{name}: training ended {status.state}: {entry['error']} (see {run_dir}/train.log)")
            _say(f"  trained in {train_s:.1f}s, loss {entry['first_loss']} -> {entry['final_loss']}, "
                 f"{entry['tokens_per_s']} tokens/s; eval")
            entry["eval"] = _eval(args, prep, out, ModelSpec(name, "adapter", str(run_dir)), base=None,
                                  out_dir=run_dir / "evals" / "heldout")
            results["runs"][key] = entry
            _write_json(res_path, results, args.copy_to)
            _say(f"  {key}: {entry['eval']['accuracy']:.1%} of {entry['eval']['n']} "
                 f"({entry['eval']['items_per_s']:.1f} items/s)")
    return results


# =========================================================================== report

def _mean_sd(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return math.nan, math.nan
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def report(args: argparse.Namespace) -> str:
    out = Path(args.out)
    prep = _read_json(out / "prepare.json")
    res_path = out / "results.json"
    lines: list[str] = []
    s = prep["settings"]
    lines.append(f"## Curation A/B: raw vs curated, pool {s['pool']} clean rows + planted junk, "
                 f"held-out {prep['heldout']['n']} items")
    lines.append("")
    if not res_path.is_file():
        lines.append("(no results.json yet: run the `run` phase)")
    else:
        res = _read_json(res_path)
        st, cfg = res["settings"], res.get("config", {})
        lines.append(f"Machine: {res.get('machine')}. Base {cfg.get('base')}, {cfg.get('method')} r{cfg.get('lora_r')}, "
                     f"{st['steps']} steps for both arms (lr {cfg.get('learning_rate')}, "
                     f"{cfg.get('micro_batch_size')}x{cfg.get('grad_accum')} packed sequences of {cfg.get('max_length')} "
                     f"tokens), scorer {st['scorer']}, greedy, {st['max_new_tokens']} new tokens"
                     + (f", overrides {st['set']}" if st.get("set") else "") + ".")
        lines.append("")
        lines.append("| arm | rows | accuracy (mean ± sd) | per seed | answer NLL (mean ± sd) | train s (mean) | tokens/s "
                     "| final loss | eval items/s |")
        lines.append("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
        base = res.get("base")
        if base:
            nll = f"{base['answer_nll']:.3f}" if base.get("answer_nll") is not None else "-"
            lines.append(f"| base | - | {base['accuracy']:.1%} | - | {nll} | - | - | - | {base['items_per_s']:.1f} |")
        nll_stats: dict[str, tuple[float, float]] = {}
        stats: dict[str, tuple[float, float]] = {}
        arm_runs: dict[str, list[dict[str, Any]]] = {}
        for arm in ARMS:
            runs = sorted((r for r in res["runs"].values() if r["arm"] == arm and r.get("state") == "done" and "eval" in r),
                          key=lambda r: r["seed"])
            arm_runs[arm] = runs
            if not runs:
                lines.append(f"| {arm} | - | (no finished run) | | | | | | |")
                continue
            accs = [r["eval"]["accuracy"] for r in runs]
            m, sd = _mean_sd(accs)
            stats[arm] = (m, sd)
            per = ", ".join(f"s{r['seed']} {r['eval']['accuracy']:.1%}" for r in runs)
            tps = [r["tokens_per_s"] for r in runs if r.get("tokens_per_s")]
            loss = [r["final_loss"] for r in runs if r.get("final_loss") is not None]
            tps_cell = f"{statistics.fmean(tps):,.0f}" if tps else "-"
            loss_cell = f"{statistics.fmean(loss):.3f}" if loss else "-"
            nlls = [r["eval"]["answer_nll"] for r in runs if r["eval"].get("answer_nll") is not None]
            nll_cell = "-"
            if nlls:
                nll_stats[arm] = _mean_sd(nlls)
                nll_cell = f"{nll_stats[arm][0]:.3f} ± {nll_stats[arm][1]:.3f}"
            lines.append(f"| {arm} | {runs[0]['rows']} | {m:.1%} ± {sd:.1%} | {per} | {nll_cell} | "
                         f"{statistics.fmean(r['train_s'] for r in runs):.1f} | {tps_cell} | {loss_cell} | "
                         f"{statistics.fmean(r['eval']['items_per_s'] for r in runs):.1f} |")
        machines = sorted({r.get("machine") for rs in arm_runs.values() for r in rs if r.get("machine")})
        if len(machines) > 1:
            lines.append(f"Note: the runs ran on different machines ({'; '.join(machines)}): compare times with care.")
        lines.append("")
        if "raw" in stats and "curated" in stats:
            (mr, sr), (mc, sc) = stats["raw"], stats["curated"]
            diff, spread = mc - mr, max(sr, sc)
            n_seeds = min(len(arm_runs["raw"]), len(arm_runs["curated"]))
            verdict = "PASS" if diff > spread else "FAIL"
            lines.append(f"**{verdict}**: curated - raw = {diff:+.1%} (curated {mc:.1%}, raw {mr:.1%}) vs the seed-to-seed "
                         f"spread max(sd raw {sr:.1%}, sd curated {sc:.1%}) = {spread:.1%}, over {n_seeds} seed(s)"
                         + (" (one seed: no spread measured, so this is no evidence)" if n_seeds < 2 else "") + ".")
            if "raw" in nll_stats and "curated" in nll_stats:
                (nr, nsr), (nc, nsc) = nll_stats["raw"], nll_stats["curated"]
                lines.append("")
                lines.append(f"Answer NLL (nats per token of the reference answer, teacher-forced; lower is better; "
                             f"not part of the verdict): curated - raw = {nc - nr:+.3f} (spread {max(nsr, nsc):.3f}).")
            lines.append("")
        # per family
        evaluated = [base] + [r["eval"] for rs in arm_runs.values() for r in rs]
        fams = sorted({f for e in evaluated if e for f in e.get("per_family", {})})
        lines.append("Accuracy by task family (mean over seeds):")
        lines.append("")
        lines.append("| family | n | base | raw | curated |")
        lines.append("| --- | ---: | ---: | ---: | ---: |")
        for fam in fams:
            n = (base or {}).get("per_family", {}).get(fam, {}).get("n")
            cells = [f"{base['per_family'][fam]['accuracy']:.1%}" if base and fam in base["per_family"] else "-"]
            for arm in ARMS:
                accs = [r["eval"]["per_family"][fam]["accuracy"] for r in arm_runs.get(arm, []) if fam in r["eval"]["per_family"]]
                if accs and n is None:
                    n = arm_runs[arm][0]["eval"]["per_family"][fam]["n"]
                cells.append(f"{statistics.fmean(accs):.1%}" if accs else "-")
            lines.append(f"| {fam} | {n if n is not None else '-'} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("Planted junk and what the studio's curation caught (dedup 0.8 + built-in quality rules, flagged rows rejected):")
    lines.append("")
    lines.append(format_catch_table(prep["catch"]))
    lines.append("")
    lines.append(f"Splits: raw {prep['splits']['raw']['train']} rows, curated {prep['splits']['curated']['train']} rows. "
                 f"LLM judge: {prep['judge']}.")
    text = "\n".join(lines)
    print(text, flush=True)
    (out / "report.md").write_text(text + "\n", encoding="utf-8")
    if getattr(args, "copy_to", None):
        Path(args.copy_to).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "report.md", Path(args.copy_to) / "report.md")
    return text


# =========================================================================== CLI

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Phases: prepare (curation, CPU), run (training only), report, all (the three).")
    p.add_argument("phase", choices=("prepare", "run", "report", "all"))
    p.add_argument("--out", required=True, help="folder for every output (created)")
    g = p.add_argument_group("prepare")
    g.add_argument("--pool", type=int, default=1500, help="clean training rows (default 1500)")
    g.add_argument("--heldout", type=int, default=180, help="held-out eval items (default 180, 30 a family)")
    g.add_argument("--junk-frac", type=float, default=0.075,
                   help="rows of each non-duplicate junk type, as a fraction of the pool (default 0.075)")
    g.add_argument("--data-seed", type=int, default=0)
    g.add_argument("--dedup-threshold", type=float, default=0.8)
    g = p.add_argument_group("run")
    g.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"train.max_steps for both arms (default {DEFAULT_STEPS})")
    g.add_argument("--seeds", default="1,2,3", help="train.seed values, comma-separated (default 1,2,3)")
    g.add_argument("--arms", default="raw,curated", help="which arms to train (default raw,curated)")
    g.add_argument("--lr", type=float, default=None, help="learning rate (default: the preset's)")
    g.add_argument("--preset", default=DEFAULT_PRESET, help=f"training preset (default {DEFAULT_PRESET})")
    g.add_argument("--base", default=None, help="base model (default: the preset's, smollm2-135m-instruct); a folder works")
    g.add_argument("--set", action="append", metavar="KEY=VALUE", help="extra config override, as studio train --set")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    g.add_argument("--limit", type=int, default=None, help="eval only the first N held-out items")
    g.add_argument("--max-new-tokens", type=int, default=48)
    g.add_argument("--batch-size", type=int, default=16, help="eval batch size")
    g.add_argument("--skip-base", action="store_true", help="do not evaluate the base")
    g.add_argument("--model-parts", default="", metavar="P1,P2",
                   help="GPU box without network: the registry's GGUF in parts, joined and converted into the "
                        "model store first (benches/gpu/real_model_gpu.py's build_store)")
    g.add_argument("--copy-to", default=None, metavar="DIR",
                   help="also copy results.json (after every run) and report.md there, e.g. $OUT on a device call")
    args = p.parse_args(argv)
    if args.phase in ("prepare", "all"):
        prepare(args)
    if args.phase in ("run", "all"):
        run(args)
    if args.phase in ("report", "all"):
        report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
