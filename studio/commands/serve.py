"""`studio serve RUN...`: an OpenAI-compatible API over one base model and the runs' adapters.

`model` in a request picks the adapter (named after the run); the base's name answers without
adapter. Point any OpenAI client at http://127.0.0.1:8000/v1. Bound to 127.0.0.1 by default; set
STUDIO_SERVE_API_KEY to require `Authorization: Bearer <key>` (needed before using --host 0.0.0.0).
"""
from __future__ import annotations

import os
import sys

from ._command import Args, argument, option, studio_command
from ._common import out, workspace_path


@studio_command("serve", "serve runs' adapters on one base as an OpenAI-compatible chat API",
                epilog="example: studio serve run-a run-b --port 8000; then "
                       "OpenAI(base_url='http://127.0.0.1:8000/v1', "
                       "api_key='x').chat.completions.create(model='run-a', ...)")
@argument("runs", nargs=-1, required=True, metavar="RUN",
          help="runs whose adapters to serve (they must share one base)")
@option("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
@option("--port", type=int, default=8000, help="port (default 8000)")
@option("--base-name", metavar="NAME", help="model id that answers without adapter (default: the base's name)")
@option("--device", metavar="DEV", help="cpu, cuda, cuda:1 (default: cuda when present)")
def command(args: Args) -> int:
    from curation.errors import StudioError
    from training import runs
    from training.inference import load_session
    from training.quiet import quiet_libraries
    from training.serve import make_server

    quiet_libraries(verbose=args.verbose)  # before anything imports transformers
    api_key = os.environ.get("STUDIO_SERVE_API_KEY") or None
    if args.host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        raise StudioError(f"--host {args.host} would let anyone who reaches this port use the model; "
                          f"set STUDIO_SERVE_API_KEY first (clients then send it as their api_key)")
    run_dirs = [runs.find_run(workspace_path(args) / "runs", r) for r in args.runs]
    session = load_session(run_dirs, device=args.device)
    try:
        server = make_server(session, args.host, args.port, base_name=args.base_name, api_key=api_key)
    except OSError as exc:
        raise StudioError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}); pick another --port") from None
    except ValueError as exc:
        raise StudioError(str(exc)) from None
    out(f"serving {', '.join(server.model_names)} at {server.url}")
    out(f"  models: GET {server.url}/models; chat: POST {server.url}/chat/completions (model = a name above)")
    if session.runs[0].untrained_base:
        out("  note: the tiny base is untrained: its answers mean nothing")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        out("stopped")
    finally:
        server.server_close()
    return 0
