"""`studio pipeline FILE`: train a two-stage pipeline (continued pretraining, then SFT) from one YAML.

The file format and why stage 2 starts from stage 1's MERGED model are in training/pipeline.py.
Stage splits may be split names of this workspace or paths (relative to the file). The stages run
one after another in this process; each is an ordinary run, linked by pipeline.json.
"""
from __future__ import annotations

import shlex
from pathlib import Path

import click

from ._command import Args, argument, option, studio_command
from ._common import out, out_json, workspace_path


@studio_command("pipeline", "train a two-stage pipeline (continued pretraining -> SFT) from one YAML file",
                json_flag=True, epilog="example: studio pipeline domain.yaml (format: training/pipeline.py)")
@argument("file", type=click.Path(path_type=Path), metavar="FILE", help="pipeline YAML: name, base, stages: [...]")
@option("--merge-dtype", type=click.Choice(("bf16", "fp16", "fp32")),
        help="dtype of the merged model between stages (default: the base's own)")
@option("--check", is_flag=True, help="validate the file and print the stages; train nothing")
def command(args: Args) -> int:
    from training.quiet import quiet_libraries

    quiet_libraries(verbose=args.verbose)  # before anything imports transformers

    from training.pipeline import load_pipeline, run_pipeline, stage_config

    splits = workspace_path(args) / "splits"

    def resolve(ref: str) -> str:
        p = Path(ref)
        if not p.is_absolute() and not p.exists() and (splits / ref).is_dir():
            return str((splits / ref).resolve())
        return str(p if p.is_absolute() else (args.file.parent / p).resolve())

    pipeline = load_pipeline(args.file, resolve_split=resolve)
    if args.check:
        rows = []
        for i, stage in enumerate(pipeline.stages):
            cfg = stage_config(pipeline, i, base_override="(stage before, merged)" if i else None)
            rows.append({"stage": i + 1, "run": pipeline.run_id(i), "split": stage.split, "kind": cfg.data.kind,
                         "base": cfg.base, "method": cfg.method, "rank": cfg.lora.r, "replay": stage.replay})
        if args.json:
            out_json(rows)
        else:
            for r in rows:
                out(f"stage {r['stage']} {r['run']}: {r['kind']} on {r['split']}, {r['method']} r={r['rank']}, "
                    f"base {r['base']}" + (f", replay {r['replay']}" if r["replay"] else ""))
        return 0
    ws = f" -w {shlex.quote(str(args.workspace))}" if args.workspace else ""

    def progress(i, run_dir, status) -> None:
        if not args.json:
            ev = status.eval_loss
            out(f"stage {i + 1} {run_dir.name}: {status.state}"
                + (f", eval_loss {ev:.4f}" if isinstance(ev, float) else ""))

    import contextlib
    import sys

    # The trainer prints its own progress on stdout; with --json stdout must hold only the JSON.
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        rows = run_pipeline(pipeline, workspace_path(args) / "runs", execute=None,
                            reproduce=f"studio{ws} pipeline {shlex.quote(str(args.file))}",
                            merge_dtype=args.merge_dtype, on_stage=progress)
    if args.json:
        out_json({"pipeline": pipeline.name, "stages": rows})
    else:
        for r in rows:
            if r.get("merged"):
                out(f"  merged {r['run']} into {r['merged']} (max logit diff {r['merge_max_abs_diff']:.2g}); "
                    f"the next stage trains a new adapter on it")
            if r.get("stopped"):
                out(f"  {r['stopped']}")
    return 0 if rows and all(r["state"] == "done" for r in rows) and len(rows) == len(pipeline.stages) else 1
