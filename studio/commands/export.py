"""`studio export NAME`: freeze a train/validation split under WORKSPACE/splits/NAME (docs/contracts.md)."""
from __future__ import annotations

from ._common import add_command


def register(sub):
    p = add_command(sub, "export", "write a train/validation split for training (splits/NAME)", json_flag=True,
                    epilog="the same workspace and arguments always give byte-identical files")
    p.add_argument("name", metavar="NAME", help="split name, e.g. v1")
    p.add_argument("--val", type=float, default=0.1, help="validation fraction (default 0.1; 0 for none)")
    p.add_argument("--seed", type=int, default=42, help="seed of the train/validation assignment (default 42)")
    p.add_argument("--format", choices=("messages", "alpaca", "sharegpt"), default="messages",
                   help="line format (default messages)")
    p.add_argument("--include", choices=("approved", "approved+pending"), default="approved",
                   help="which samples (default approved; rejected samples and duplicates never)")
    p.add_argument("--force", action="store_true", help="replace an existing split of that name")
    p.set_defaults(func=run)


def run(args) -> int:
    from curation import export

    from ._common import open_ws, out, out_json

    with open_ws(args) as ws:
        m = export.export_split(ws, args.name, val=args.val, seed=args.seed, format=args.format,
                                include=args.include, force=args.force)
    if args.json:
        out_json({"path": str(m.path), "counts": m.counts, "format": m.data["format"],
                  "last_operation_id": m.data["last_operation_id"]})
    else:
        out(f"wrote split {args.name} to {m.path}: train {m.counts['train']:,}, val {m.counts['val']:,} "
            f"({m.data['format']}); manifest {m.path / 'manifest.json'}")
    return 0
