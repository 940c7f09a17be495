"""`studio merge RUN`: fold a run's adapter into its base and save one plain model folder.

The base is reloaded in 16/32-bit (never 4-bit, QLoRA runs included: a 4-bit merge drifts), the
merged model's logits are checked against base + adapter on a probe chat, and the difference is
printed. The folder loads with plain transformers, vLLM or llama.cpp's converter: no PEFT needed.
"""
from __future__ import annotations

from pathlib import Path

import click

from ._command import Args, argument, option, studio_command
from ._common import out, out_json, workspace_path


@studio_command("merge", "merge a run's LoRA adapter into its base model (16/32-bit) and save it", json_flag=True,
                epilog="example: studio merge RUN --out ./my-model --dtype bf16")
@argument("run", metavar="RUN", help="run id (or a unique prefix, or a path)")
@option("--out", type=click.Path(path_type=Path), metavar="DIR", help="output folder (default: RUN_DIR/merged)")
@option("--dtype", type=click.Choice(("bf16", "fp16", "fp32")),
        help="weights of the merged model (default: the base's own dtype, fp32 when it has none)")
@option("--device", metavar="DEV", help="where to merge: cpu, cuda (default: cuda when present)")
@option("--force", is_flag=True, help="replace the output folder if it exists")
def command(args: Args) -> int:
    from training.quiet import quiet_libraries

    quiet_libraries(verbose=args.verbose)  # before anything imports transformers

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
