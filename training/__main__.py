"""`python -m training run RUN_DIR [--resume]`: train a run directory in this process.

This is the command `training.runs.launch` detaches and the SSH helper starts on a GPU box; it
needs only this package and the split directory named in RUN_DIR/config.yaml.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path


def _term_before_training(signum, frame):  # replaced by execute's own handler once it runs
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    # A cancel can come during the seconds of imports before `execute` installs its handler; the
    # default SIGTERM would end the process without a word and the run would read as failed.
    signal.signal(signal.SIGTERM, _term_before_training)
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train RUN_DIR (config.yaml) here, writing status.json and metrics.jsonl")
    p.add_argument("run_dir")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    args = parser.parse_args(argv)

    from .quiet import quiet_libraries

    # before torch and transformers are imported; the libraries' logs go to the run's log (for a
    # detached run that is this process's stderr too), STUDIO_VERBOSE=1 leaves them alone
    quiet_libraries(log_file=Path(args.run_dir) / "train.log")

    from .errors import TrainingError
    from .extras import require_train
    from .rundir import RunState, read_status, utc_now, write_status
    from .runs import execute

    try:
        require_train()  # a GPU box set up by hand: say which pip command, not an ImportError
        status = execute(args.run_dir, resume=args.resume)
    except TrainingError as exc:
        print(f"training: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # cancelled before execute took over SIGTERM
        if not read_status(args.run_dir).state.is_final:
            write_status(args.run_dir, state=RunState.CANCELLED, finished_at=utc_now())
        print(f"run {Path(args.run_dir).name}: cancelled before training started", file=sys.stderr)
        return 0
    return 0 if status.state in (RunState.DONE, RunState.CANCELLED) else 1


if __name__ == "__main__":
    sys.exit(main())
