"""`studio import PATH...`: bring alpaca / sharegpt / messages / text rows from JSON, JSONL, CSV,
Parquet or `datasets.save_to_disk` folders into the workspace (curation.importers).

Output: a line per file on stdout (warnings, such as source ids repeated within a file, indented
under it); a file left out with --skip-invalid gets one `studio: error:` line on stderr, a link
passed over in a folder one `studio: warning:` line. The exit status is in EPILOG."""
from __future__ import annotations

from ._command import Args, argument, option, studio_command

EPILOG = """the same file twice adds nothing; a file with invalid rows is not imported unless --skip-invalid (then the invalid rows go to WORKSPACE/rejects/)
a folder imports the data files in it and its subfolders (hidden ones skipped), tagging each with split:train/test/validation from its name, as a hub dataset folder lays them out; a folder named like a file (x.jsonl) is written with a trailing slash: x.jsonl/
gzip, zstd, bz2 and xz files import as they are (told by their first bytes, whatever their name)
exit status:
  0  every file was imported (or was already in the workspace)
  1  with --skip-invalid: some files were not imported (each named on stderr: unreadable, of no known format, or no valid row); the others were
  2  nothing was imported: the error says what, where and what to do"""

EXIT_SOME_FILES_FAILED = 1


def _err(text: str) -> None:
    """One line on stderr (the app's reply stream when it runs this command for another process)."""
    from curation.safe_text import visible

    from . import _common

    stream = _common.stderr()
    print(visible(text, single_line=True), file=stream)


@studio_command("import", "import data files into the workspace", json_flag=True, epilog=EPILOG)
@argument("paths", nargs=-1, required=True, metavar="PATH",
          help="files or folders (JSON, JSONL, CSV, TSV, Parquet, save_to_disk)")
@option("--format", metavar="F",
        help="row format (alpaca, sharegpt, messages, text) or file type (json, jsonl, csv, parquet, hf); default: "
             "detected")
@option("--map", "mapping", metavar="FIELD=THEIRS,...",
        help="name the file's fields, e.g. instruction=question,output=answer")
@option("--encoding", metavar="E", help="text encoding when not UTF-8/UTF-16 with BOM, e.g. gbk")
@option("--skip-invalid", is_flag=True,
        help="import the valid rows and write invalid ones to WORKSPACE/rejects/; "
             "leave out files that cannot be imported and import the others (exit status 1)")
@option("--quiet", "-q", is_flag=True, help="no progress on stderr")
def command(args: Args) -> int:
    from curation.importers import import_paths
    from curation.importers.mapping import parse_mapping

    from ._common import make_job, open_ws, out, out_json

    mapping = parse_mapping(args.mapping)
    job, progress = make_job("import", quiet=args.quiet or args.json)
    try:
        with open_ws(args, create=True) as ws:
            report = import_paths(ws, args.paths, format=args.format, mapping=mapping, encoding=args.encoding,
                                  skip_invalid=args.skip_invalid, job=job)
    finally:
        progress.finish()
    status = EXIT_SOME_FILES_FAILED if report.failed else 0
    if args.json:
        out_json(report.as_dict())
        return status
    for warning in report.warnings:
        _err(f"studio: warning: {warning}")
    for result in report.files:
        if result.failed:
            continue
        out(result.summary())
        for problem in result.problems[:5]:
            out(f"  {problem}")
        if len(result.problems) > 5:
            out(f"  ... and {len(result.problems) - 5:,} more in {result.rejects_file}")
    for result in report.failed:
        _err(f"studio: error: {result.summary()}")
    return status
