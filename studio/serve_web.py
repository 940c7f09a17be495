"""`studio --serve`: the same studio in a browser, through textual-serve, bound to 127.0.0.1.

textual-serve starts one studio process per browser tab (each runs the Textual app with its web
driver). DuckDB lets one process hold the workspace, so a second tab shows the "workspace is
open in process N" screen rather than a second, conflicting session. Only this machine can
connect: reach it from elsewhere through an SSH tunnel (`ssh -L 8566:127.0.0.1:8566 host`).
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from curation.errors import StudioError

HOST = "127.0.0.1"


def serve_command(workspace: Path) -> str:
    """The command textual-serve runs for each browser tab."""
    return shlex.join([sys.executable, "-m", "studio.cli", "--workspace", str(Path(workspace).resolve())])


def serve_in_browser(workspace: Path, port: int = 8566) -> int:
    try:
        from textual_serve.server import Server
    except ImportError:
        raise StudioError("--serve needs the textual-serve package: pip install textual-serve") from None
    if not 0 < port < 65536:
        raise StudioError(f"--port {port}: use a port between 1 and 65535.")
    print(f"studio: serving {workspace} at http://{HOST}:{port} (this machine only; Ctrl+C stops)", file=sys.stderr)
    Server(serve_command(workspace), host=HOST, port=port, title="THE STUDIO").serve()
    return 0
