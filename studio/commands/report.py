"""`studio report RUN [--open]`: write RUN/report.html again, now (training/report.py).

A run writes its report when it ends; this rewrites it on demand, so it picks up what came later
(an eval's results) or shows a run still going. The page needs nothing but the file: curves as
inline SVG, no script, nothing fetched, so it opens offline and can be mailed or archived.
"""
from __future__ import annotations

from ._command import Args, argument, option, studio_command
from ._common import out, out_json, workspace_path


@studio_command("report",
                "write a run's report.html (curves, memory, evals, split, config) and print "
                "its path", json_flag=True, epilog="examples: studio report RUN | studio report RUN --open")
@argument("run", metavar="RUN", help="run id (or a unique prefix, or a path)")
@option("--open", is_flag=True, help="open the page in the web browser afterwards")
def command(args: Args) -> int:
    from training.quiet import quiet_libraries

    quiet_libraries(verbose=args.verbose)  # the memory estimate may read a base's config

    from training import runs
    from training.report import write_report

    run_dir = runs.find_run(workspace_path(args) / "runs", args.run)
    path = write_report(run_dir)
    if args.json:
        out_json({"run": run_dir.name, "report": str(path)})
    else:
        out(f"{run_dir.name}: report {path}")
    if args.open:
        import webbrowser

        if not webbrowser.open(path.resolve().as_uri()):
            out(f"no web browser found here; open {path} yourself")
    return 0
