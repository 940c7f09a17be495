"""`studio train SPLIT`: plan, start, resume a training run (WORKSPACE/runs/RUN_ID, docs/contracts.md).

SPLIT is a split name under WORKSPACE/splits/ or a path (split directory or data file). The config
is layered: defaults (the seed's recipe) < --preset < --config FILE < --set KEY=VALUE < --base /
--method / --oom-retry. The run starts detached (it survives the terminal closing) unless
--foreground; --host starts it on a GPU box over SSH. Training never opens the workspace database:
this command only resolves paths.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from curation.errors import NotFound, StudioError

from ._common import add_command, out, out_json, workspace_path


def add_config_options(p) -> None:
    """The options that build a training config (read by `build_config`); `studio sweep` shares them."""
    p.add_argument("--config", metavar="FILE", help="YAML config (partial; a run's config.yaml reproduces it)")
    p.add_argument("--preset", metavar="NAME", help="named preset: seed, fast, lean, tiny-demo (training/presets)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set lora.r=8 (repeatable)")
    p.add_argument("--base", metavar="MODEL", help="hub id, local model folder, or tiny")
    p.add_argument("--method", choices=("lora", "qlora", "full"))


def register(sub) -> None:
    p = add_command(sub, "train", "plan or start a LoRA/QLoRA/full fine-tuning run on a split", json_flag=True,
                    epilog="examples: studio train v1 --plan --gpu-mem 24 | studio train v1 --preset tiny-demo | "
                           "studio train v1 --method qlora --set lora.r=8 --set train.epochs=2 | "
                           "studio train --resume RUN")
    p.add_argument("split", nargs="?", metavar="SPLIT", help="split name in WORKSPACE/splits, or a path")
    add_config_options(p)
    p.add_argument("--plan", action="store_true", help="print memory, lengths, EOS check and steps; start nothing")
    p.add_argument("--gpu-mem", type=float, metavar="GB", help="with --plan: which method fits this much GPU memory")
    p.add_argument("--params", type=float, metavar="B", help="with --plan: model size in billions when its config "
                   "is unavailable offline")
    p.add_argument("--shape", metavar="K=V,...", help="with --plan: model shape when its config is unavailable, e.g. "
                   "hidden_size=4096,intermediate_size=14336,num_hidden_layers=32,num_attention_heads=32,vocab_size=128256")
    p.add_argument("--foreground", action="store_true", help="train in this process instead of detached")
    p.add_argument("--follow", action="store_true", help="after a detached start, print metrics until it ends "
                   "(Ctrl-C stops following, not the run)")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint")
    p.add_argument("--name", metavar="NAME", help="run id (default: time-base-method)")
    p.add_argument("--oom-retry", action="store_true", help="on CUDA out-of-memory, start again with the next "
                   "remedy (smaller batch, shorter length, gradient checkpointing, QLoRA)")
    p.add_argument("--host", metavar="HOST", help="start the run on this SSH host (~/.ssh/config alias or user@host)")
    p.add_argument("--detach", action="store_true", help="with --host: do not follow the remote run")
    p.add_argument("--force", action="store_true", help="start even a run this machine cannot train in reasonable time "
                   "or memory (a 7B base on a CPU); without it such a run is refused with the reason")
    try:
        from ._remote import add_host_options

        add_host_options(p)
    except ImportError:  # pragma: no cover - the SSH helper is absent
        pass
    p.set_defaults(func=run)


def call(fn):
    """fn() with the trainer's user errors shown as the studio's (training cannot import curation)."""
    from training.errors import RunNotFound, TrainingError

    try:
        return fn()
    except RunNotFound as exc:
        raise NotFound(str(exc)) from None
    except TrainingError as exc:
        raise StudioError(str(exc)) from None


def resolve_split(args: argparse.Namespace) -> Path:
    ref = args.split
    if ref is None:
        raise StudioError("name a split: studio train SPLIT (a name in WORKSPACE/splits or a path)")
    p = Path(ref)
    if p.exists():
        return p.resolve()
    ws_split = workspace_path(args) / "splits" / ref
    if ws_split.is_dir():
        return ws_split.resolve()
    raise NotFound(f"split {ref!r} not found: neither a path nor {ws_split}; create one with: studio export {ref}")


def build_config(args: argparse.Namespace, split: Path):
    from training.config import load_config

    overrides = list(args.sets) + [f"data.split={split}"]
    if args.base:
        overrides.append(f"base={args.base}")
    if args.method:
        overrides.append(f"method={args.method}")
    if args.oom_retry:
        overrides.append("oom_retry=true")
    return call(lambda: load_config(args.config, preset=args.preset, overrides=overrides))


def runs_dir(args: argparse.Namespace) -> Path:
    return workspace_path(args) / "runs"


def reproduce_line(args: argparse.Namespace) -> str:
    ws = f" -w {shlex.quote(str(args.workspace))}" if getattr(args, "workspace", None) else ""
    return f"studio{ws} train {shlex.quote(args.split)} --config {{config}}"


def run(args: argparse.Namespace) -> int:
    from training.quiet import quiet_libraries

    quiet_libraries(verbose=getattr(args, "verbose", False))  # before anything imports transformers

    from training import runs

    if args.resume:
        run_dir = call(lambda: runs.find_run(runs_dir(args), args.resume))
        if args.foreground:
            st = in_foreground(args, run_dir, lambda: runs.resume(run_dir, foreground=True))
            return report_final(args, run_dir, st)
        pid = call(lambda: runs.resume(run_dir))
        return report_started(args, run_dir, pid, resumed=True)

    split = resolve_split(args)
    cfg = build_config(args, split)
    if args.plan:
        return print_plan(args, cfg)
    if not args.host and not getattr(args, "force", False):
        refuse_unworkable(cfg)  # before preflight: it is cheaper and says more
    preflight(cfg, local=not args.host)
    rdir = runs_dir(args)
    run_dir = call(lambda: runs.create_run(rdir, cfg, name=args.name, reproduce=reproduce_line(args),
                                           host=args.host))
    if args.host:
        try:
            from ._remote import launch_and_follow
        except ImportError:
            raise StudioError("remote launch is not available in this build (training.remote is missing)") from None
        return launch_and_follow(args, run_dir, detach=args.detach)
    if args.foreground:
        out(f"training {run_dir.name} in the foreground (Ctrl-C cancels; resume with studio train --resume {run_dir.name})")
        try:
            st = in_foreground(args, run_dir, lambda: runs.run_foreground(run_dir))
        except KeyboardInterrupt:
            st = runs.write_status(run_dir, state="cancelled")
        return report_final(args, run_dir, st)
    pid = call(lambda: runs.launch(run_dir))
    return report_started(args, run_dir, pid)


def in_foreground(args: argparse.Namespace, run_dir: Path, train) -> dict:
    """train() in this terminal: the libraries' logs go to the run's train.log, and each logged step
    prints as one line from metrics.jsonl (the Trainer's own dict print is off: training/quiet.py)."""
    import threading

    from training.metrics import metric_points, read_metrics
    from training.quiet import quiet_libraries

    quiet_libraries(verbose=getattr(args, "verbose", False), log_file=run_dir / "train.log")

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
        return call(train)
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
            print_new()


def preflight(cfg, *, local: bool = True) -> None:
    """Refuse a run that cannot train before its directory and process exist (training.plan.preflight:
    LoRA targets the base lacks, a missing attention package here, an empty split, samples all longer
    than max_length), with the reason as the plan gives it."""
    from training.plan import preflight as check

    call(lambda: check(cfg, local=local))


def refuse_unworkable(cfg) -> None:
    """Refuse, in one line, a run this machine cannot train (training.plan.launch_refusal: a base above
    1.5B parameters on a CPU, more memory than the machine or card has); `--force` skips it. A small
    base skips the device check (and torch's import); an unknown shape cannot be judged here."""
    from training.errors import ConfigError
    from training.plan import CPU_MAX_PARAMS_B, launch_refusal, local_device, memory_plan

    try:
        plan = memory_plan(cfg)
    except ConfigError:
        return
    if plan["params_b"] <= CPU_MAX_PARAMS_B and plan["memory_gb"][cfg.method]["total_gb"] <= 4:
        return
    reason = launch_refusal(plan, local_device())
    if reason:
        raise StudioError(f"refused: {reason} (--force starts it anyway)")


def print_plan(args: argparse.Namespace, cfg) -> int:
    from training.plan import format_plan, make_plan

    shape = None
    if args.shape:
        try:
            shape = {k.strip(): int(v) for k, v in (kv.split("=", 1) for kv in args.shape.split(",") if kv.strip())}
        except ValueError:
            raise StudioError(f"--shape {args.shape!r}: expected KEY=INTEGER pairs separated by commas") from None
    plan = call(lambda: make_plan(cfg, gpu_mem_gb=args.gpu_mem, params_b=args.params, shape_overrides=shape))
    if args.json:
        out_json(plan)
    else:
        out(format_plan(plan))
    return 1 if (plan.get("eos") and not plan["eos"]["ok"]) or plan.get("problems") else 0


def report_started(args: argparse.Namespace, run_dir: Path, pid: int, resumed: bool = False) -> int:
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
    from training.runs import FINAL_STATES, effective_status

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
            if st.get("state") in FINAL_STATES:
                recs, offset = read_metrics(run_dir, offset)
                for r in metric_points(recs):
                    out(format_point(r))
                if bar.drawing and isinstance(st.get("step"), int):
                    bar.update(st["step"], st.get("max_steps") or None)  # where it ended
                bar.finish()
                out(f"{run_dir.name}: {st['state']}" + (f": {st['error']}" if st.get("error") else ""))
                return 0 if st["state"] == "done" else 1
            if st.get("state") == "running" and isinstance(st.get("step"), int):
                bar.update(st["step"], st.get("max_steps") or None)
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


def report_final(args: argparse.Namespace, run_dir: Path, st: dict) -> int:
    if args.json:
        out_json({"run": run_dir.name, "path": str(run_dir), **st})
    else:
        line = f"{run_dir.name}: {st.get('state')} at step {st.get('step')}/{st.get('max_steps')}"
        if st.get("eval_loss") is not None:
            line += f", eval_loss {st['eval_loss']:.4f}"
        out(line)
        if st.get("error"):
            out(f"  error: {st['error']}")
        for i, r in enumerate(st.get("remedy") or [], 1):
            out(f"  remedy {i}: {r['name']}: {r['why']} (--set " + " --set ".join(f"{k}={v}" for k, v in r["set"].items()) + ")")
        if st.get("next_run"):
            out(f"  retrying as {st['next_run']} with the first remedy applied")
    if st.get("state") == "done":
        return 0
    from curation.errors import DiskFull

    # the run's own "disk full:" error (training.runs): the same exit status as any command's full disk
    return DiskFull.exit_code if str(st.get("error") or "").startswith("disk full:") else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(2)
