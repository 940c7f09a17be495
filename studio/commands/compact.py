"""`studio compact [--keep-backup] [--json]`: rewrite the workspace's DuckDB file without the space
deleted rows and killed imports left in it (DuckDB never gives it back by itself); every row is
checked before the new file replaces the old (curation.check.compact)."""
from __future__ import annotations

from ._command import Args, option, studio_command


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


@studio_command("compact",
                "shrink the workspace's DuckDB file: copy everything into a fresh file, check it, "
                "switch", json_flag=True,
                epilog="it needs free space about the size of the data; nothing changes unless every table matches")
@option("--keep-backup", is_flag=True,
        help="keep the file as it was before, as studio.duckdb.bak (default: removed once the copy matches)")
def command(args: Args) -> int:
    from curation.check import compact

    from ._common import open_ws, out, out_json

    ws = open_ws(args)
    result = compact(ws, keep_backup=args.keep_backup)
    if args.json:
        out_json(result)
        return 0
    rows = sum(result["tables"].values())
    out(f"compacted {result['workspace']}/studio.duckdb: {_mb(result['before_bytes'])} -> {_mb(result['after_bytes'])} "
        f"({len(result['tables'])} tables, {rows:,} rows, each table's rows and content hash checked)"
        + (f"; the old file is kept as {result['backup']}" if result["backup"] else ""))
    return 0
