"""Selecting samples on the command line: ids and ranges (`12 15 20-30`) and filter flags
(`--status pending --flag answer_too_short`), shared by approve, reject and any bulk command."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from curation.errors import StudioError

from ._command import Args, option


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


FILTERS = "select by filter (combined with AND; with ids, only the ids that match)"


def filter_options(fn: Callable) -> Callable:
    """The filter flags, in their own section of the help (read by `filter_from_args`)."""
    for decls, kw in reversed([
        (("--status",), dict(type=click.Choice(("pending", "approved", "rejected")), help="samples with this review status")),
        (("--flag",), dict(metavar="RULE", help="samples a quality rule flagged ('*': any rule)")),
        (("--cluster",), dict(type=int, metavar="ID", help="members of a duplicate cluster")),
        (("--source",), dict(metavar="FILE", help="samples imported from this file (as `studio stats` names it)")),
        (("--lang",), dict(metavar="CODE", help="zh, en, ja, ko, other")),
        (("--min-score",), dict(type=float, metavar="X", help="judge score at least X (`studio augment judge` scores 1-5)")),
        (("--max-score",), dict(type=float, metavar="X", help="judge score at most X")),
        (("--search",), dict(metavar="TEXT", help="case-insensitive text in instruction, answer or raw text")),
        (("--duplicates",), dict(type=click.Choice(("include", "exclude", "only")), default="include",
                                 help="samples marked duplicate of a cluster's keeper: include them (default), exclude "
                                      "them, or only them")),
    ]):
        fn = option(*decls, section=FILTERS, **kw)(fn)
    return fn


def filter_from_args(args: Args) -> Any:
    """A browse.Filter from the flags, or None when no filter flag was given."""
    from curation.browse import Filter

    kw = dict(status=args.status, flag=args.flag, cluster_id=args.cluster, source=args.source, lang=args.lang,
              min_score=args.min_score, max_score=args.max_score, search=args.search, duplicates=args.duplicates)
    if all(v is None for k, v in kw.items() if k != "duplicates") and args.duplicates == "include":
        return None
    return Filter(**kw)


def selected_ids(con: Any, args: Args) -> list[int]:
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
