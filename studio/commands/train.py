"""`studio train SPLIT`: plan, start, resume a training run (WORKSPACE/runs/RUN_ID, docs/contracts.md).

SPLIT is a split name under WORKSPACE/splits/ or a path (split directory or data file). The config
is layered: defaults (the seed's recipe) < --preset < --config FILE < --set KEY=VALUE < --base /
--method / --oom-retry. The run starts detached (it survives the terminal closing) unless
--foreground; --host starts it on a GPU box over SSH. Training never opens the workspace database:
this command only resolves paths. The flags become a `training.launch.RunRequest`; planning, checks
and the start are training.launch's (the Train screen calls the same functions). The trainer's
errors (TrainingError) are said by cli.main.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from curation.errors import StudioError

from ._command import Args, argument, option, studio_command
from ._common import out, out_json, workspace_path
from ._remote import host_options


def _preset_help() -> str:
    from training.presets import names

    return f"named preset: {', '.join(names())} (training/presets)"


def config_options(fn: Callable) -> Callable:
    """The options that build a training config (read by `build_config`); `studio sweep` shares them."""
    for decls, kw in reversed([
        (("--config",), dict(metavar="FILE", help="YAML config (partial; a run's config.yaml reproduces it)")),
        (("--preset",), dict(metavar="NAME", help=_preset_help())),
        (("--set", "sets"), dict(multiple=True, metavar="KEY=VALUE",
                                 help="override one config key, e.g. --set lora.r=8 (repeatable; the keys are "
                                      "listed under Config keys)")),
        (("--base",), dict(metavar="MODEL", help="hub id, local model folder, or tiny")),
        (("--method",), dict(type=click.Choice(("lora", "qlora", "full")))),
    ]):
        fn = option(*decls, **kw)(fn)
    return fn


def config_keys_section() -> list[tuple[str, list[tuple[str, str]]]]:
    """The help section listing every `--set` key, from training/config.py's fields (read when the
    help is shown, so listing the commands imports no pydantic)."""
    from training.config_fields import set_help_rows

    return [("Config keys (--set KEY=VALUE; training/config.py documents each)", set_help_rows())]


def resolve_split(args: Args) -> Path:
    from training.launch import resolve_split as resolve

    return resolve(args.split, workspace_path(args) / "splits")


def run_request(args: Args, split: Path):
    """The training.launch.RunRequest the flags stand for (--set values read as YAML here, at the edge)."""
    from training.config import parse_override
    from training.launch import RunRequest, reproduce_line

    host = None
    if args.host:
        from ._remote import host_spec

        host = host_spec(args)
    return RunRequest(split=split, base=args.base, method=args.method, preset=args.preset,
                      config_file=Path(args.config) if args.config else None,
                      overrides=dict(parse_override(s) for s in args.sets),
                      oom_retry=bool(args.oom_retry), name=args.name, host=host,
                      reproduce=reproduce_line(args.split, workspace=args.workspace))


def build_config(args: Args, split: Path):
    from training.launch import run_config

    return run_config(run_request(args, split))


def runs_dir(args: Args) -> Path:
    return workspace_path(args) / "runs"


@studio_command("train", "plan or start a LoRA/QLoRA/full fine-tuning run on a split", json_flag=True,
                epilog="examples: studio train v1 --plan --gpu-mem 24 | studio train v1 --preset tiny-demo | "
                       "studio train v1 --method qlora --set lora.r=8 --set train.epochs=2 | "
                       "studio train --resume RUN",
                help_sections=config_keys_section)
@argument("split", required=False, metavar="SPLIT", help="split name in WORKSPACE/splits, or a path")
@config_options
@option("--plan", is_flag=True, help="print memory, lengths, EOS check and steps; start nothing")
@option("--gpu-mem", type=float, metavar="GB", help="with --plan: which method fits this much GPU memory")
@option("--params", type=float, metavar="B", help="with --plan: model size in billions when its config is "
        "unavailable offline")
@option("--shape", metavar="K=V,...", help="with --plan: model shape when its config is unavailable, e.g. "
        "hidden_size=4096,intermediate_size=14336,num_hidden_layers=32,num_attention_heads=32,vocab_size=128256")
@option("--foreground", is_flag=True, help="train in this process instead of detached")
@option("--follow", is_flag=True, help="after a detached start, print metrics until it ends "
        "(Ctrl-C stops following, not the run)")
@option("--resume", metavar="RUN", help="continue RUN from its last checkpoint")
@option("--name", metavar="NAME", help="run id (default: time-base-method)")
@option("--oom-retry", is_flag=True, help="on CUDA out-of-memory, start again with the next "
        "remedy (smaller batch, shorter length, gradient checkpointing, QLoRA)")
@option("--host", metavar="HOST", help="start the run on this SSH host (~/.ssh/config alias or user@host)")
@option("--detach", is_flag=True, help="with --host: do not follow the remote run")
@option("--force", is_flag=True, help="start even a run this machine cannot train in reasonable time "
        "or memory (a 7B base on a CPU); without it such a run is refused with the reason")
@host_options
def command(args: Args) -> int:
    from training.quiet import quiet_libraries

    quiet_libraries(verbose=args.verbose)  # before anything imports transformers

    from training import launch, runs

    if args.resume:
        run_dir = runs.find_run(runs_dir(args), args.resume)
        if args.foreground:
            st = in_foreground(args, run_dir, lambda: runs.resume(run_dir, foreground=True))
            return report_final(args, run_dir, st)
        pid = runs.resume(run_dir)
        return report_started(args, run_dir, pid, resumed=True)

    request = run_request(args, resolve_split(args))
    if args.plan:
        return print_plan(args, request)
    force = bool(args.force)
    if request.host is not None:
        from ._remote import launch_and_follow

        return launch_and_follow(request, runs_dir(args), detach=args.detach, force=force)
    if args.foreground:
        run_dir = launch.new_run(request, runs_dir(args), force=force)
        out(f"training {run_dir.name} in the foreground (Ctrl-C cancels; resume with studio train --resume {run_dir.name})")
        try:
            st = in_foreground(args, run_dir, lambda: runs.run_foreground(run_dir))
        except KeyboardInterrupt:
            st = runs.write_status(run_dir, state=runs.RunState.CANCELLED)
        return report_final(args, run_dir, st)
    started = launch.start_run(request, runs_dir(args), force=force)
    return report_started(args, started.run_dir, started.pid)


def in_foreground(args: Args, run_dir: Path, train):
    """train() in this terminal: the libraries' logs go to the run's train.log, and each logged step
    prints as one line from metrics.jsonl (the Trainer's own dict print is off: training/quiet.py)."""
    import threading

    from training.metrics import metric_points, read_metrics
    from training.quiet import quiet_libraries

    quiet_libraries(verbose=args.verbose, log_file=run_dir / "train.log")

    def key(r: dict) -> tuple:  # a resumed run's steps after its checkpoint come again, with a later time
        return r["step"], "eval_loss" in r, r.get("time")

    seen = {key(r) for r in metric_points(read_metrics(run_dir)[0])}  # a resume's earlier lines
    offset = 0

    def print_new() -> None:
        nonlocal offset
        recs, offset = read_metrics(run_dir, offset)
        for r in metric_points(recs):
            if key(r) not in seen:
                seen.add(key(r))
                out(format_point(r))

    def follow() -> None:
        while not stop.wait(0.5):
            print_new()

    stop = threading.Event()
    thread = threading.Thread(target=follow, name="metrics-lines", daemon=True)
    if not args.json:
        thread.start()
    try:
        return train()
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
            print_new()


def print_plan(args: Args, request) -> int:
    from training.launch import plan_run
    from training.plan import format_plan

    shape = None
    if args.shape:
        try:
            shape = {k.strip(): int(v) for k, v in (kv.split("=", 1) for kv in args.shape.split(",") if kv.strip())}
        except ValueError:
            raise StudioError(f"--shape {args.shape!r}: expected KEY=INTEGER pairs separated by commas") from None
    plan = plan_run(request, gpu_mem_gb=args.gpu_mem, params_b=args.params, shape=shape).plan
    if args.json:
        out_json(plan)
    else:
        out(format_plan(plan))
    return 1 if (plan.get("eos") and not plan["eos"]["ok"]) or plan.get("problems") else 0


def report_started(args: Args, run_dir: Path, pid: int, resumed: bool = False) -> int:
    verb = "resumed" if resumed else "started"
    if args.json and not args.follow:
        out_json({"run": run_dir.name, "path": str(run_dir), "pid": pid, "state": "queued"})
        return 0
    out(f"{verb} {run_dir.name} (pid {pid}), detached: it goes on if this terminal closes")
    out(f"  log {run_dir / 'train.log'}; metrics {run_dir / 'metrics.jsonl'}")
    out(f"  watch: studio runs | cancel: studio cancel {run_dir.name}")
    if args.follow:
        return follow(run_dir)
    return 0


def follow(run_dir: Path) -> int:
    import time

    from training.metrics import metric_points, read_metrics
    from training.runs import RunState, effective_status

    from ._common import CliProgress

    # on a terminal, a bar under the step lines: steps/total, rate, time left; elsewhere the step lines alone
    bar = CliProgress("train", plain_lines=False)
    offset = 0
    try:
        while True:
            recs, offset = read_metrics(run_dir, offset)
            for r in metric_points(recs):
                out(format_point(r))
            st = effective_status(run_dir)
            if st.state.is_final:
                recs, offset = read_metrics(run_dir, offset)
                for r in metric_points(recs):
                    out(format_point(r))
                if bar.drawing and st.step is not None:
                    bar.update(st.step, st.max_steps or None)  # where it ended
                bar.finish()
                out(f"{run_dir.name}: {st.state}" + (f": {st.error}" if st.error else ""))
                return 0 if st.state == RunState.DONE else 1
            if st.state == RunState.RUNNING and st.step is not None:
                bar.update(st.step, st.max_steps or None)
            time.sleep(0.5)
    except KeyboardInterrupt:
        bar.finish()
        out(f"stopped following; {run_dir.name} goes on")
        return 130
    finally:
        bar.finish()


def format_point(r: dict) -> str:
    parts = [f"step {r['step']}"]
    for key, label, fmt in (("loss", "loss", ".4f"), ("eval_loss", "eval_loss", ".4f"), ("learning_rate", "lr", ".2e"),
                            ("grad_norm", "grad", ".3f"), ("tokens_per_s", "tok/s", ",.0f"), ("mfu", "mfu", ".1%")):
        v = r.get(key)
        if isinstance(v, (int, float)):
            parts.append(f"{label} {v:{fmt}}")
    return "  ".join(parts)


def report_final(args: Args, run_dir: Path, st) -> int:
    """The end of a foreground run (`st`: its training.rundir.RunStatus)."""
    if args.json:
        out_json({"run": run_dir.name, "path": str(run_dir), **st.to_json()})
    else:
        line = f"{run_dir.name}: {st.state} at step {st.step}/{st.max_steps}"
        if st.eval_loss is not None:
            line += f", eval_loss {st.eval_loss:.4f}"
        out(line)
        if st.error:
            out(f"  error: {st.error}")
        for i, r in enumerate(st.remedy or [], 1):
            out(f"  remedy {i}: {r['name']}: {r['why']} (--set " + " --set ".join(f"{k}={v}" for k, v in r["set"].items()) + ")")
        if st.next_run:
            out(f"  retrying as {st.next_run} with the first remedy applied")
    if st.state == "done":
        return 0
    from curation.errors import DiskFull

    # the run's own "disk full:" error (training.runs): the same exit status as any command's full disk
    return DiskFull.exit_code if (st.error or "").startswith("disk full:") else 1

