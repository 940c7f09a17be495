"""Selecting samples on the command line: ids and ranges (`12 15 20-30`) and filter flags
(`--status pending --flag answer_too_short`), shared by approve, reject and any bulk command."""
from __future__ import annotations

import argparse
from typing import Any

from curation.errors import StudioError


def parse_ids(tokens: list[str]) -> list[int]:
    """`["12", "15", "20-23", "7,8"]` -> [7, 8, 12, 15, 20, 21, 22, 23]."""
    out: set[int] = set()
    for token in tokens:
        for part in token.split(","):
            part = part.strip()
            if not part:
                continue
            lo, sep, hi = part.partition("-")
            try:
                if sep:
                    a, b = int(lo), int(hi)
                    if a > b:
                        raise StudioError(f"id range {part!r} runs backwards: write {b}-{a}.")
                    if b - a > 10_000_000:
                        raise StudioError(f"id range {part!r} is too wide.")
                    out.update(range(a, b + 1))
                else:
                    out.add(int(part))
            except ValueError:
                raise StudioError(f"{part!r} is not a sample id or a range like 10-20.") from None
    return sorted(out)


def add_filter_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("select by filter (combined with AND; with ids, only the ids that match)")
    g.add_argument("--status", choices=("pending", "approved", "rejected"), help="samples with this review status")
    g.add_argument("--flag", metavar="RULE", help="samples a quality rule flagged ('*': any rule)")
    g.add_argument("--cluster", type=int, metavar="ID", help="members of a duplicate cluster")
    g.add_argument("--source", metavar="FILE", help="samples imported from this file (as `studio stats` names it)")
    g.add_argument("--lang", metavar="CODE", help="zh, en, ja, ko, other")
    g.add_argument("--min-score", type=float, metavar="X", help="judge score at least X (`studio augment judge` scores 1-5)")
    g.add_argument("--max-score", type=float, metavar="X", help="judge score at most X")
    g.add_argument("--search", metavar="TEXT", help="case-insensitive text in instruction, answer or raw text")
    g.add_argument("--duplicates", choices=("include", "exclude", "only"), default="include",
                   help="samples marked duplicate of a cluster's keeper: include them (default), exclude them, or only them")


def filter_from_args(args: argparse.Namespace) -> Any:
    """A browse.Filter from the flags, or None when no filter flag was given."""
    from curation.browse import Filter

    kw = dict(status=args.status, flag=args.flag, cluster_id=args.cluster, source=args.source, lang=args.lang,
              min_score=args.min_score, max_score=args.max_score, search=args.search, duplicates=args.duplicates)
    if all(v is None for k, v in kw.items() if k != "duplicates") and args.duplicates == "include":
        return None
    return Filter(**kw)


def selected_ids(con: Any, args: argparse.Namespace) -> list[int]:
    from curation import browse

    ids = parse_ids(args.ids)
    flt = filter_from_args(args)
    if flt is None:
        if not ids:
            raise StudioError("name the samples: ids like 12 15 20-30, or filter flags like --status pending --flag RULE.")
        return ids
    matching = browse.ids(con, flt)
    if ids:
        wanted = set(ids)
        matching = [i for i in matching if i in wanted]
    if not matching:
        raise StudioError("no sample matches that selection; nothing was changed.")
    return matching
