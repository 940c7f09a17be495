"""`studio dedup`: find exact and near duplicates, group them into clusters, pick keepers.

Non-keepers get duplicate_of = keeper and leave every split; nothing is deleted. One undoable
operation (`studio undo`). Ctrl-C cancels and leaves the workspace as it was."""
from __future__ import annotations

import click

from ._command import Args, option, studio_command
from ._common import make_job, open_ws, out, out_json


@studio_command("dedup", "find exact and near duplicates and choose a keeper for each cluster", json_flag=True)
@option("--threshold", type=float, default=0.8, help="Jaccard similarity for near duplicates (default 0.8)")
@option("--fields", type=click.Choice(("sample", "instruction", "answer")), default="sample",
        help="what to compare: the whole sample (system and all turns, default), the instruction or the answer")
@option("--num-perm", type=int, default=128, help="MinHash permutations (default 128)")
@option("--shingle", type=int, default=3, help="shingle size: CJK characters / words (default 3)")
@option("--no-verify", "verify", is_flag=True, flag_value=False, default=True,
        help="keep LSH candidates without checking their exact Jaccard (faster, a few false positives)")
@option("--incremental", is_flag=True,
        help="only check samples not hashed yet against the stored signatures (after an import)")
@option("--limit", type=int, default=None, help="with --json: list at most this many clusters")
@option("--quiet", "-q", is_flag=True, help="no progress on stderr")
def command(args: Args) -> int:
    from curation import dedup
    from curation.errors import Cancelled

    job, progress = make_job("dedup", quiet=args.quiet or args.json)
    with open_ws(args) as ws:
        try:
            params = dedup.DedupParams(args.threshold, args.fields, args.num_perm, args.shingle, args.verify)
            if args.incremental:
                report = dedup.check_incremental(ws, job=job, params=params)
            else:
                report = dedup.find_duplicates(ws, params, job=job)
        except KeyboardInterrupt:
            progress.finish()
            raise Cancelled("dedup cancelled; the workspace is unchanged") from None
        finally:
            progress.finish()
        if args.json:
            out_json({"report": report.as_dict(), "clusters": dedup.list_clusters(ws.con, limit=args.limit)})
            return 0
        kind = "incremental check" if report.incremental else "dedup"
        out(f"{kind}: {report.samples:,} samples, {report.signatures_computed:,} hashed "
            f"({report.signatures_reused:,} signatures reused), {report.candidate_pairs:,} candidate pairs, "
            f"{report.verified_pairs:,} at or above {args.threshold}"
            + (f"; {report.chains_split:,} chains split so that every member reaches {args.threshold} to its keeper"
               if report.chains_split else ""))
        out(f"{report.clusters:,} clusters ({report.exact_clusters:,} exact, {report.near_clusters:,} near), "
            f"{report.duplicates:,} samples marked duplicate"
            + (f", {report.joined_existing:,} joined existing clusters" if report.incremental else "")
            + f" in {report.seconds:.1f}s "
            + ("(nothing changed: no operation recorded)" if report.op_id is None
               else f"(operation {report.op_id}; `studio undo` reverts it)"))
    return 0
