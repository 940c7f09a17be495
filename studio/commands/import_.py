"""`studio import PATH...`: bring alpaca / sharegpt / messages / text rows from JSON, JSONL, CSV,
Parquet or `datasets.save_to_disk` folders into the workspace (curation.importers)."""
from __future__ import annotations

from ._common import add_command


def register(sub):
    p = add_command(sub, "import", "import data files into the workspace", json_flag=True,
                    epilog="the same file twice adds nothing; a file with invalid rows is not imported "
                           "unless --skip-invalid (then the invalid rows go to WORKSPACE/rejects/)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (JSON, JSONL, CSV, TSV, Parquet, save_to_disk)")
    p.add_argument("--format", metavar="F",
                   help="row format (alpaca, sharegpt, messages, text) or file type (json, jsonl, csv, parquet, hf); default: detected")
    p.add_argument("--map", metavar="FIELD=THEIRS,...", dest="mapping",
                   help="name the file's fields, e.g. instruction=question,output=answer")
    p.add_argument("--encoding", metavar="E", help="text encoding when not UTF-8/UTF-16 with BOM, e.g. gbk")
    p.add_argument("--skip-invalid", action="store_true",
                   help="import the valid rows and write invalid ones to WORKSPACE/rejects/")
    p.set_defaults(func=run)


def parse_mapping(text: str | None) -> dict[str, str]:
    from curation.errors import StudioError

    mapping: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        canonical, sep, theirs = part.partition("=")
        if not sep or not canonical.strip() or not theirs.strip():
            raise StudioError(f"--map: {part!r} is not FIELD=THEIRS (e.g. --map instruction=question,output=answer).")
        mapping[canonical.strip()] = theirs.strip()
    return mapping


def run(args) -> int:
    from curation.importers import import_paths

    from ._common import make_job, open_ws, out, out_json

    mapping = parse_mapping(args.mapping)
    job, progress = make_job("import", quiet=args.json)
    try:
        with open_ws(args, create=True) as ws:
            report = import_paths(ws, args.paths, format=args.format, mapping=mapping, encoding=args.encoding,
                                  skip_invalid=args.skip_invalid, job=job)
    finally:
        progress.finish()
    if args.json:
        out_json(report.as_dict())
        return 0
    for result in report.files:
        out(result.summary())
        for problem in result.problems[:5]:
            out(f"  {problem}")
        if len(result.problems) > 5:
            out(f"  ... and {len(result.problems) - 5:,} more in {result.rejects_file}")
    return 0
