"""`studio augment rewrite|answers|reverse|judge|resume|jobs`: LLM augmentation from the command line.

    studio augment rewrite 1-50 --n 3 --dry-run        # what it would send and cost; sends nothing
    studio augment answers --status approved --n 2 --max-cost 1.50 --reject-below 3
    studio augment resume                              # the last unfinished job, from where it stopped

Progress (requests, tokens, USD) goes to stderr. Ctrl-C stops sending, waits briefly for requests in
flight and keeps every answer received; `studio augment resume` carries on.

Exit status (EXIT_CODES, also in each operation's --help): 0 when the job ran to the end, even if
some requests failed: a summary line counts the failures by reason, and running the same command
again sends only those (failures are never cached), so a script that reruns until done needs no
special case, and a partial failure does not look like a broken provider. 4 when every request
failed (the server unreachable, every reply unusable): the job produced nothing. 3 when it was
stopped (Ctrl-C, --max-cost). 2 for a mistake in the command or the configuration.
"""
from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any

import click

from ._command import Args, argument, option, studio_command, studio_group
from ._common import CliProgress, open_ws, out, out_json

EXIT_ALL_FAILED = 4   # every request failed: nothing was produced
EXIT_STOPPED = 3      # stopped before the end (Ctrl-C or the budget); `studio augment resume` carries on
EXIT_CODES = (
    "exit status:\n"
    "  0  the job ran to the end; failed requests, if any, are counted by reason\n"
    "     in the summary, and the same command again sends only those\n"
    f"  {EXIT_STOPPED}  stopped early (Ctrl-C, --max-cost): `studio augment resume` carries on\n"
    f"  {EXIT_ALL_FAILED}  every request failed (server unreachable, unusable replies): nothing new\n"
    "  2  a mistake in the command or the provider configuration"
)
EXAMPLES = (
    "examples:\n"
    "  studio augment rewrite 1-50 --n 3 --dry-run\n"
    "  studio augment answers --status approved --n 2 --max-cost 1.50 --reject-below 3\n"
    "  studio augment judge --status pending --limit 100\n"
    "  studio augment resume"
)

OPS = {
    "rewrite": "rewrite instructions into N paraphrases that keep their meaning (new samples, same answers)",
    "answers": "write N alternative answers per sample (new samples, same instructions)",
    "reverse": "write the instruction that an answer or raw text answers (new samples)",
    "judge": "score samples 1-5 on the judge template's rubric, with a short reason",
}


def _default_n(op: str) -> int:
    from curation.augment.defaults import DEFAULT_N

    return DEFAULT_N[op]


def _run_options(fn: Callable, checks: bool = True) -> Callable:
    """The options of every operation that sends requests (`checks`: also --no-checks)."""
    opts = [
        (("--provider",), dict(metavar="NAME", help="provider from studio.yaml (default: the first; none: OPENAI_* env)")),
        (("--model",), dict(metavar="M", help="model (overrides the provider's)")),
        (("--concurrency",), dict(type=int, metavar="C", help="requests in flight (overrides the provider's)")),
        (("--max-cost",), dict(type=float, metavar="USD", help="stop before the job would spend more than this")),
        (("--dry-run",), dict(is_flag=True, help="estimate requests, tokens and cost; send nothing")),
    ]
    if checks:  # judge makes no new samples: nothing to check
        opts.append((("--no-checks",), dict(is_flag=True, help="skip duplicate and quality checks of the new samples")))
    for decls, kw in reversed(opts):
        fn = option(*decls, **kw)(fn)
    return fn


def operation(op: str, help_: str) -> click.Command:
    """`studio augment OP`: select samples, then send the requests (_run)."""
    generates = op != "judge"

    def handler(args: Args) -> int:
        return _run(args)

    fn: Callable = _run_options(handler, checks=generates)
    fn = option("--temperature", type=float, metavar="T", help="sampling temperature (default: the operation's own)")(fn)
    if generates:
        fn = option("--reject-below", type=float, metavar="S",
                    help="judge the new samples and reject those scoring below S (e.g. 3)")(fn)
        fn = option("--n", type=int, metavar="N", help=f"outputs per sample (default {_default_n(op)})")(fn)
    for decls, kw in reversed([
        (("ids",), dict(nargs=-1, required=False, metavar="IDS", help="sample ids or ranges (12 15 20-30)")),
        (("--status",), dict(type=click.Choice(("pending", "approved", "rejected", "all")),
                             help="only samples with this review status (all: rejected ones too)")),
        (("--lang",), dict(metavar="CODE", help="only samples in this language (zh, en, ...)")),
        (("--source",), dict(metavar="FILE", help="only samples imported from this file")),
        (("--limit",), dict(type=int, metavar="N", help="at most N samples")),
        (("--include-generated",), dict(is_flag=True, help="also samples augmentation produced")),
    ]):
        fn = (argument if not decls[0].startswith("-") else option)(*decls, **kw)(fn)
    description = (help_ + ". Without ids or filters: every sample not rejected, not a duplicate"
                   + ("" if op == "judge" else ", not itself generated") + ".")
    return studio_command(op, help_, json_flag=True, description=description, epilog=EXIT_CODES,
                          defaults={"op": op, "n": None, "reject_below": None, "no_checks": False})(fn)


@studio_command("resume", "run a stopped or killed job again; answered requests are not resent", epilog=EXIT_CODES)
@argument("job", required=False, type=int, help="job id (default: the last unfinished augment job)")
@option("--max-cost", type=float, metavar="USD", help="a new budget for this run")
@option("--concurrency", type=int, metavar="C", help="requests in flight (default: the job's)")
@option("--json", is_flag=True, help="print the result as JSON")
def _resume_command(args: Args) -> int:
    return _resume(args)


@studio_command("jobs", "list augment jobs with their tokens and cost")
@option("--json", is_flag=True, help="print the jobs and the usage by provider as JSON")
def _jobs_command(args: Args) -> int:
    return _jobs(args)


@studio_group("augment", "augment samples with an LLM: rewrite, answers, reverse, judge",
              epilog=f"{EXAMPLES}\n\n{EXIT_CODES}", subcommand_metavar="OPERATION")
def command() -> None:
    """`studio augment OPERATION --help` says each operation's options."""


for _op, _help in OPS.items():
    command.add_command(operation(_op, _help))
command.add_command(_resume_command)
command.add_command(_jobs_command)


def _spec(args: Args) -> Any:
    from curation.augment.jobs import Spec

    from ._select import parse_ids

    return Spec(op=args.op, ids=parse_ids(args.ids) or None, status=args.status, lang=args.lang, source=args.source,
                limit=args.limit, include_generated=True if args.include_generated else None,
                n=args.n, provider=args.provider, model=args.model, concurrency=args.concurrency,
                max_cost=args.max_cost, reject_below=args.reject_below, temperature=args.temperature,
                checks=not args.no_checks)


# The spec fields curation.augment.spec_checks.spec_problems checks, with the flag that sets each.
FLAGS = {"lang": "--lang", "limit": "--limit", "n": "--n", "max_cost": "--max-cost", "reject_below": "--reject-below",
         "temperature": "--temperature", "concurrency": "--concurrency"}


def check_spec(spec: Any) -> None:
    """Raise a StudioError (exit 2) naming the first flag spec_problems finds wrong."""
    from curation.augment.spec_checks import spec_problems
    from curation.errors import StudioError

    problems = spec_problems(spec)
    if problems:
        field, problem = next(iter(problems.items()))
        raise StudioError(f"{FLAGS[field]} {getattr(spec, field)}: {problem}.")


def _print_estimate(est: Any, provider: str, model: str) -> None:
    out(f"dry run: {est.requests:,} requests ({est.cached:,} answered in the cache, {est.to_send:,} to send)"
        + (f", {est.skipped:,} samples skipped (operation does not apply)" if est.skipped else ""))
    out(f"  provider {provider}, model {model}")
    if est.gate_requests:
        out(f"  includes ~{est.gate_requests:,} judge requests for the new samples (--reject-below)")
    out(f"  tokens: ~{est.input_tokens:,} in, ~{est.output_tokens:,} out expected (at most {est.output_tokens_max:,})")
    if est.priced:
        out(f"  cost: ~${est.usd:.4f} expected, at most ${est.usd_max:.4f}")
    else:
        out("  cost: unknown (the provider has no prices; set --input-price/--output-price with `studio providers add`)")
    out(f"  tokens counted by {est.tokenizer}")


def _with_cancel_on_sigint(job: Any, fn: Any) -> Any:
    """First Ctrl-C: cancel the job gracefully (answers so far are kept). Second: interrupt."""
    if not hasattr(signal, "SIGINT") or sys.platform == "win32":
        return fn()

    def handler(signum: int, frame: Any) -> None:
        if job.cancelled:
            raise KeyboardInterrupt
        sys.stderr.write("\nstudio: stopping after the requests in flight (Ctrl-C again to quit now)\n")
        job.cancel()

    old = signal.signal(signal.SIGINT, handler)
    try:
        return fn()
    finally:
        signal.signal(signal.SIGINT, old)


def _failure_summary(failures: dict[str, int]) -> str:
    """`connection 3, unparsable 1`: reasons, most frequent first."""
    return ", ".join(f"{k} {v:,}" for k, v in sorted(failures.items(), key=lambda kv: (-kv[1], kv[0])))


def exit_status(result: Any) -> int:
    """0: ran to the end (some requests may have failed); EXIT_STOPPED: stopped early;
    EXIT_ALL_FAILED: every request failed, nothing was produced. See EXIT_CODES."""
    if result.state != "done":
        return EXIT_STOPPED
    if result.requests and result.failed >= result.requests:
        return EXIT_ALL_FAILED
    return 0


def _report(result: Any, as_json: bool) -> int:
    code = exit_status(result)
    if as_json:
        out_json(result.as_dict())
    else:
        verb = {"done": "finished", "cancelled": "stopped"}.get(result.state, result.state)
        why = {"budget": " (the next request could pass --max-cost)", "cancelled": " (cancelled)"}.get(result.stop_reason or "", "")
        out(f"augment {result.op} job {result.job_id} {verb}{why}: {result.requests:,} requests, {result.sent:,} sent, "
            f"{result.cached:,} from the cache, {result.failed:,} failed")
        out(f"  {result.prompt_tokens + result.completion_tokens:,} tokens ({result.prompt_tokens:,} in, "
            f"{result.completion_tokens:,} out), ${result.usd:.4f} ({result.provider}, {result.model})")
        landing = getattr(result, "landing", None) or {}
        if result.new_sample_ids:
            ids = result.new_sample_ids
            span = f"ids {ids[0]}-{ids[-1]}" if len(ids) > 1 else f"id {ids[0]}"
            if landing.get("summary"):
                # what landed, and what was dropped and why (curation.augment.jobs._landing)
                out(f"  {landing['summary']}")
                dropped = sum(landing.get("dropped", {}).values())
                out(f"  new samples: {span}" + (f"; the {dropped:,} dropped stay in the workspace marked as duplicates "
                                               f"of what they repeat, out of every split (undo restores them)"
                                               if dropped else ""))
            else:
                out(f"  {len(ids):,} new pending samples: {span}" if len(ids) > 1 else f"  1 new pending sample: {span}")
        if result.judged:
            out(f"  {result.judged:,} samples judged")
        if result.rejected_ids:
            out(f"  {len(result.rejected_ids):,} generated samples rejected by the judge gate")
        if result.failures and code != EXIT_ALL_FAILED:
            out(f"  {result.failed:,} of {result.requests:,} requests failed: {_failure_summary(result.failures)}; "
                f"the same command again sends only those")
        for name, state in sorted(result.checks.items()):
            if state == "missing":
                out(f"  {name} check not available in this install: run it later on the new samples")
            elif state.startswith("failed"):
                out(f"  {name} check of the new samples {state}; run it again with `studio {name}`")
        if result.state != "done":
            out(f"  resume with: studio augment resume {result.job_id}")
    if code == EXIT_ALL_FAILED:
        # On stderr, like any error, so a script that keeps stdout still sees why it stopped.
        print(f"studio: augment {result.op} job {result.job_id}: every request failed "
              f"({_failure_summary(result.failures)}); nothing was produced. `studio augment jobs` and the "
              f"provider's settings (`studio providers list`) help find out why.", file=sys.stderr)
    return code


def _run(args: Args) -> int:
    from curation.augment import jobs

    spec = _spec(args)
    check_spec(spec)
    with open_ws(args) as ws:
        if args.dry_run:
            est = jobs.estimate(ws, spec)
            from curation.augment.providers import resolve

            p = resolve(ws.read_config(), spec.provider, spec.model, spec.concurrency)
            if args.json:
                out_json({"dry_run": True, "provider": p.name, "model": p.model, **est.as_dict()})
            else:
                _print_estimate(est, p.name, str(p.model))
            return 0
        progress = CliProgress(f"augment {spec.op}", quiet=args.json)
        job = jobs.AugmentJob(kind=f"augment:{spec.op}", on_progress=progress)
        try:
            result = _with_cancel_on_sigint(job, lambda: jobs.run(ws, spec, job))
        finally:
            progress.finish()
        return _report(result, args.json)


def _resume(args: Args) -> int:
    from curation.augment import jobs

    with open_ws(args) as ws:
        progress = CliProgress("augment resume", quiet=args.json)
        job = jobs.AugmentJob(kind="augment:resume", on_progress=progress)
        try:
            result = _with_cancel_on_sigint(job, lambda: jobs.resume(ws, args.job, job, max_cost=args.max_cost,
                                                                     concurrency=args.concurrency))
        finally:
            progress.finish()
        return _report(result, args.json)


def _jobs(args: Args) -> int:
    from curation.augment import jobs

    with open_ws(args) as ws:
        rows = jobs.list_jobs(ws)
        usage = jobs.usage_by_provider(ws)
    if args.json:
        out_json({"jobs": rows, "by_provider": usage})
        return 0
    if not rows:
        out("no augment jobs yet")
    for r in rows:
        out(f"job {r['id']} {r['kind']} {r['state']}: {r['done']}/{r['total']}  {int(r['tokens']):,} tokens  ${float(r['usd']):.4f}")
        if (r.get("landing") or {}).get("summary"):
            out(f"  {r['landing']['summary']}")
    for u in usage:
        out(f"{u['provider']} ({u['model']}): {int(u['requests']):,} requests, {int(u['prompt_tokens']) + int(u['completion_tokens']):,} tokens, ${float(u['usd']):.4f}")
    return 0
