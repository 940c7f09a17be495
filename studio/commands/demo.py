"""`studio demo`: build a demo workspace from sample_data/ (import, duplicates, quality flags, a
first split named `demo`) and open the studio on it. The README's first command runs this; a workspace that already holds
samples is opened as it is, so a second run starts at once and keeps what you did."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from ._command import Args, option, studio_command
from ._common import make_job, workspace_path

DEMO_FILES = ("alpaca_mixed.json", "sharegpt_chat.jsonl", "raw_text.jsonl")


def sample_data_dir() -> Path:
    return Path(__file__).resolve().parent.parent.parent / "sample_data"


def build_demo(ws, data: Path, *, quiet: bool = False) -> dict:
    """Import the sample files, find duplicates and flag quality problems; returns what happened."""
    from curation.dedup import DedupParams, find_duplicates
    from curation.errors import StudioError
    from curation.export import export_split
    from curation.importers import import_paths
    from curation.quality import run_quality

    files = [data / name for name in DEMO_FILES if (data / name).exists()]
    if not files:
        raise StudioError(f"no sample files in {data} (expected {', '.join(DEMO_FILES)}); pass --data DIR")
    job, progress = make_job("import", quiet=quiet)
    try:
        report = import_paths(ws, files, job=job)
    finally:
        progress.finish()  # a live bar is stopped (the cursor shown again) on an error too
    job, progress = make_job("dedup", quiet=quiet)
    try:
        dedup = find_duplicates(ws, DedupParams(), job=job)
    finally:
        progress.finish()
    job, progress = make_job("quality", quiet=quiet)
    try:
        quality = run_quality(ws, job=job)
    finally:
        progress.finish()
    # A first split, so the Train screen can start a tiny-demo run at once; review and export
    # your own (`studio export v1`) once you have approved samples.
    split = export_split(ws, "demo", include="approved+pending")
    return {"import": report, "dedup": dedup, "quality": quality, "split": split}


@studio_command("demo", "build a demo workspace from sample_data/ and open the studio on it")
@option("--data", type=click.Path(path_type=Path), default=None,
        help="folder with the sample files (default: the project's sample_data/)")
@option("--no-open", is_flag=True, help="build the workspace, do not open the studio")
def command(args: Args) -> int:
    from ..cli import run_app
    from ._common import open_ws

    path = workspace_path(args)
    ws = open_ws(args, create=True)
    try:
        if ws.count() == 0:
            print(f"studio: building the demo workspace {path} from sample_data/ ...", file=sys.stderr)
            build_demo(ws, args.data or sample_data_dir())
        total = ws.count()
    finally:
        ws.close()  # DuckDB's file lock: the app opens the workspace itself
    print(f"studio: {path} holds {total:,} samples", file=sys.stderr)
    if args.no_open:
        return 0
    return run_app(path, serve=args.serve)
