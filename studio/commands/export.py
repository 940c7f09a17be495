"""`studio export NAME [--format F] [--target T] [--dry-run]`: freeze a train/validation split under
WORKSPACE/splits/NAME (docs/contracts.md). Chat rows and raw-text rows go to separate files (the
summary says where the raw text went); `--target` picks JSONL, Parquet or `save_to_disk` folders;
`--format openai` checks every row against OpenAI's fine-tuning format."""
from __future__ import annotations

import click

from ._command import Args, argument, option, studio_command


def dry_run(ws, args) -> dict:
    """What `studio export` would write, and the same refusals, without writing."""
    from curation import export
    from curation.errors import StudioError

    target = args.target
    export._check_name(args.name)
    export._check_args(args.val, args.format, args.include, target)
    split_dir = ws.splits_dir / args.name
    if split_dir.exists() and not args.force:
        raise StudioError(f"split {args.name!r} already exists at {split_dir}. Pass --force to replace it, or choose another name.")
    counts = export.preview_counts(ws.con, val=args.val, seed=args.seed, include=args.include)
    if not counts["rows"]:
        hint = ("approve samples first or pass --include approved+pending" if args.include == "approved"
                else "import samples and leave some not rejected")
        raise StudioError(f"no samples to export into {args.name!r} with --include {args.include}: {hint}.")
    return {"dry_run": True, "name": args.name, "path": str(split_dir), "format": args.format, "target": target, **counts}


@studio_command("export", "write a train/validation split for training (splits/NAME)", json_flag=True,
                epilog="the same workspace and arguments always give byte-identical files; raw-text samples go "
                       "to train.text.* / val.text.*, beside the chat rows")
@argument("name", metavar="NAME", help="split name, e.g. v1")
@option("--val", type=float, default=0.1, help="validation fraction (default 0.1; 0 for none)")
@option("--seed", type=int, default=42, help="seed of the train/validation assignment (default 42)")
@option("--format", type=click.Choice(("messages", "alpaca", "sharegpt", "openai")), default="messages",
        help="row shape (default messages); openai: messages rows checked against OpenAI's fine-tuning "
             "format, refused with one line per problem")
@option("--target", type=click.Choice(("jsonl", "parquet", "hf")), default="jsonl",
        help="file type (default jsonl); parquet; hf: datasets save_to_disk folders (needs datasets)")
@option("--include", type=click.Choice(("approved", "approved+pending")), default="approved",
        help="which samples (default approved; rejected samples and duplicates never)")
@option("--skip-invalid", is_flag=True,
        help="leave out the rows the format can't hold (OpenAI's rules with --format openai; tool use in "
             "alpaca) instead of writing nothing")
@option("--force", is_flag=True, help="replace an existing split of that name")
@option("--dry-run", is_flag=True,
        help="print the counts the split would have and write nothing (works while the studio is open)")
def command(args: Args) -> int:
    from curation import export

    from ._common import open_ws, out, out_json

    if args.dry_run:
        with open_ws(args) as ws:
            plan = dry_run(ws, args)
        if args.json:
            out_json(plan)
        else:
            ex = plan["excluded"]
            out(f"dry run: split {args.name} would hold train {plan['train']:,}, val {plan['val']:,} "
                f"({args.format}, {plan['target']}, {args.include}, seed {args.seed}); left out: {ex['rejected']:,} rejected, "
                f"{ex['duplicates']:,} duplicates, {ex['pending']:,} pending. Nothing written.")
        return 0
    with open_ws(args) as ws:
        m = export.export_split(ws, args.name, val=args.val, seed=args.seed, format=args.format,
                                include=args.include, force=args.force, target=args.target,
                                skip_invalid=args.skip_invalid)
    if args.json:
        out_json({"path": str(m.path), "counts": m.counts, "format": m.data["format"], "target": m.data["target"],
                  "text_rows": m.text_rows, "skipped": len(m.data.get("skipped") or []), "notes": m.notes(),
                  "last_operation_id": m.data["last_operation_id"]})
    else:
        out(f"wrote split {args.name} to {m.path}: train {m.counts['train']:,}, val {m.counts['val']:,} "
            f"({m.data['format']}, {m.data['target']}); manifest {m.path / 'manifest.json'}, how to train it: "
            f"{m.path / 'README.md'}")
        for note in m.notes():
            out(note)
    return 0
