"""`studio --serve`: the same studio in a browser, through textual-serve, bound to 127.0.0.1.

textual-serve starts one studio process per WebSocket (each browser tab runs the Textual app with
its web driver). DuckDB lets one process hold the workspace, so a second tab shows the "workspace
is open in process N" screen rather than a second, conflicting session.

What is protected, and how (`GuardedServer`, an aiohttp middleware added to the app textual-serve
builds; textual-serve 1.1.3 itself checks nothing: any Origin, any Host, no secret):

- Bound to 127.0.0.1 only: other machines cannot connect. Reach it from elsewhere through an SSH
  tunnel (`ssh -L 8566:127.0.0.1:8566 host`, then open the printed URL on the near side).
- A secret made per launch (`secrets.token_urlsafe(32)`), printed once on stderr as
  `http://127.0.0.1:PORT/?token=...`, like Jupyter. The page (`/`) needs it as `?token=`; its
  response then sets it as a cookie (`studio_token_PORT`, HttpOnly, SameSite=Strict, Path=/), and
  the WebSocket (`/ws`) and file downloads (`/download/...`) need that cookie. A cookie because
  textual-serve's page builds the WebSocket URL from the server's address and its JS appends
  `?width=..&height=..` to it, so a token query parameter cannot ride along; the browser sends the
  cookie with the WebSocket handshake by itself. Tokens are compared with `hmac.compare_digest`.
  The page at `localhost:PORT` redirects to `127.0.0.1:PORT` (the cookie is per host name and the
  page's WebSocket URL names 127.0.0.1). `Referrer-Policy: no-referrer` on the page keeps the
  token out of Referer headers; aiohttp's access log shows it as `<token>`.
- Host must be `127.0.0.1:PORT` or `localhost:PORT` on every request (defeats DNS rebinding).
  An Origin header, where sent, must be `http://127.0.0.1:PORT` or `http://localhost:PORT`; the
  WebSocket must send one. So a page from another site (or another port on this machine) cannot
  open the WebSocket, even though browsers do not apply the same-origin policy to WebSockets.
- Every refusal is a 403 raised before textual-serve's handler runs, so it never starts a studio.
- Static assets (`/static/...`: textual-serve's JS, CSS, fonts, a background image) stay open:
  they are the package's public files and hold no data of yours.

What is not protected: anyone who can read the token can drive the studio as you, and drive it
from any program on this machine that can reach 127.0.0.1 (Origin and Host are headers a
non-browser client chooses). The token is in this terminal, in the browser's history and in the
memory of this process; it is not on the command line or in the environment of the studio
processes textual-serve starts, so `ps` does not show it. Other local users can connect to the
port but are refused without the token. Traffic is plain HTTP on the loopback interface.
"""
from __future__ import annotations

import hmac
import logging
import secrets
import shlex
import sys
from pathlib import Path

from curation.errors import StudioError

HOST = "127.0.0.1"
HOST_NAMES = ("127.0.0.1", "localhost")

log = logging.getLogger("studio.serve_web")


def serve_command(workspace: Path) -> str:
    """The command textual-serve runs for each browser tab (it holds no token)."""
    return shlex.join([sys.executable, "-m", "studio.cli", "--workspace", str(Path(workspace).resolve())])


def _same(given: str | None, token: str) -> bool:
    # compare_digest on str rejects non-ASCII with a TypeError: compare bytes.
    return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogatepass"), token.encode("utf-8"))


class _RedactToken(logging.Filter):
    """aiohttp's access log prints each request line, `GET /?token=...` included."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and self.token in record.msg:
            record.msg = record.msg.replace(self.token, "<token>")
        return True


def _server_class():
    try:
        from textual_serve.server import Server
    except ImportError:
        raise StudioError("--serve needs the textual-serve package: pip install textual-serve") from None
    from aiohttp import web

    class GuardedServer(Server):
        """textual-serve's Server on 127.0.0.1 with a per-launch token and Host/Origin checks."""

        def __init__(self, command: str, *, port: int, token: str | None = None, title: str | None = None) -> None:
            super().__init__(command, host=HOST, port=port, title=title)
            self.token = token or secrets.token_urlsafe(32)
            self.cookie_name = f"studio_token_{port}"
            hosts = [f"{name}:{port}" for name in HOST_NAMES] + (list(HOST_NAMES) if port == 80 else [])
            self.allowed_hosts = frozenset(hosts)
            self.allowed_origins = frozenset(f"http://{h}" for h in hosts)
            self._guard = self._make_guard()

        @property
        def url(self) -> str:
            return f"{self.public_url}/?token={self.token}"

        def _make_guard(self):
            @web.middleware
            async def guard(request: web.Request, handler):
                host = (request.headers.get("Host") or "").lower()
                origin = request.headers.get("Origin")
                route = request.match_info.route.name
                if host not in self.allowed_hosts:
                    return self._refuse(request, f"Host {host or '(none)'!r} is not this server")
                if origin is not None and origin.lower() not in self.allowed_origins:
                    return self._refuse(request, f"Origin {origin!r} is not this server")
                if route == "static":
                    return await handler(request)
                if route == "websocket" and origin is None:
                    return self._refuse(request, "a WebSocket without an Origin header")
                if route == "index":
                    if not _same(request.query.get("token"), self.token):
                        return self._refuse(request, "the page without the right ?token=")
                    if host != f"{HOST}:{self.port}" and host != HOST:
                        # The cookie is per host name and the page's WebSocket URL names 127.0.0.1.
                        raise web.HTTPFound(f"{self.public_url}{request.rel_url}")
                    response = await handler(request)
                    response.set_cookie(self.cookie_name, self.token, path="/", httponly=True, samesite="Strict")
                    response.headers["Referrer-Policy"] = "no-referrer"
                    response.headers["Cache-Control"] = "no-store"
                    return response
                # /ws, /download/{key} and anything else: the cookie the page set.
                if not _same(request.cookies.get(self.cookie_name), self.token):
                    return self._refuse(request, "no valid token cookie (open the printed URL first)")
                return await handler(request)

            return guard

        def _refuse(self, request: web.Request, why: str) -> web.Response:
            log.warning("studio --serve refused %s %s: %s", request.method, request.path, why)
            return web.Response(status=403, text=f"studio --serve: refused: {why}\n")

        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            app.middlewares.append(self._guard)
            return app

        async def on_startup(self, app: web.Application) -> None:
            # Fail closed: if a textual-serve release stops building its app through _make_app,
            # refuse to serve rather than serve unguarded.
            if self._guard not in app.middlewares:
                raise StudioError("studio --serve: textual-serve built its app without the token guard; not serving.")
            # textual-serve's own startup prints a logo and the URL without the token; ours is printed once.

        def initialize_logging(self) -> None:
            super().initialize_logging()
            logging.getLogger("aiohttp.access").addFilter(_RedactToken(self.token))

    return GuardedServer


def guarded_server(command: str, *, port: int, token: str | None = None, title: str | None = None):
    """A textual-serve Server running `command` per WebSocket, guarded as the module docstring says."""
    if not 0 < port < 65536:
        raise StudioError(f"--port {port}: use a port between 1 and 65535.")
    return _server_class()(command, port=port, token=token, title=title)


def serve_in_browser(workspace: Path, port: int = 8566) -> int:
    server = guarded_server(serve_command(workspace), port=port, title="THE STUDIO")
    print(f"studio: serving {workspace} to a browser on this machine; open\n    {server.url}\n"
          "(the token in it is the only key: keep it to yourself; Ctrl+C stops)", file=sys.stderr, flush=True)
    server.serve()
    return 0
