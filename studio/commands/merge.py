"""`studio merge RUN`: fold a run's adapter into its base and save one plain model folder.

The base is reloaded in 16/32-bit (never 4-bit, QLoRA runs included: a 4-bit merge drifts), the
merged model's logits are checked against base + adapter on a probe chat, and the difference is
printed. The folder loads with plain transformers, vLLM or llama.cpp's converter: no PEFT needed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_command, out, out_json, workspace_path


def register(sub) -> None:
    p = add_command(sub, "merge", "merge a run's LoRA adapter into its base model (16/32-bit) and save it",
                    json_flag=True, epilog="example: studio merge RUN --out ./my-model --dtype bf16")
    p.add_argument("run", metavar="RUN", help="run id (or a unique prefix, or a path)")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: RUN_DIR/merged)")
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"),
                   help="weights of the merged model (default: the base's own dtype, fp32 when it has none)")
    p.add_argument("--device", metavar="DEV", help="where to merge: cpu, cuda (default: cuda when present)")
    p.add_argument("--force", action="store_true", help="replace the output folder if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from training.quiet import quiet_libraries

    quiet_libraries(verbose=getattr(args, "verbose", False))  # before anything imports transformers

    from training import runs
    from training.merge import merge_run

    run_dir = runs.find_run(workspace_path(args) / "runs", args.run)
    result = merge_run(run_dir, args.out, dtype=args.dtype, device=args.device, overwrite=args.force)
    if args.json:
        out_json({"run": run_dir.name, **result.to_dict()})
    else:
        out(f"merged {run_dir.name} into {result.out_dir} ({result.dtype})")
        out(f"  check: max |logit difference| merged vs base+adapter = {result.max_abs_diff:.3g} "
            f"(tolerance {result.tolerance:.3g}; the adapter itself moves logits by up to {result.adapter_effect:.3g})")
        if not result.ok:
            out("  WARNING: the merged model does not match the adapter; try --dtype fp32 and compare")
    return 0 if result.ok else 1
