"""`studio --serve` (studio/serve_web.py) refuses what a foreign web page could send: a real
server on a free 127.0.0.1 port in a subprocess, a real aiohttp HTTP/WebSocket client.

Most tests serve a tiny fake app (a Python script that records its argv and environment, speaks
textual-serve's `__GANGLION__` prelude and sends one data packet) instead of the whole studio, so
an accepted WebSocket is cheap and every started process leaves a line in a file: a refusal must
leave none. One test runs the real `python -m studio.cli --serve` and checks the URL it prints.
Timeouts below only guard against hangs; nothing asserts on time.
"""
from __future__ import annotations

import json
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parent.parent
HANG_GUARD_S = 60
URL_RE = re.compile(r"http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_\-]+)")

FAKE_APP = r'''
import json, os, sys
with open(sys.argv[1], "a") as f:
    f.write(json.dumps({"argv": sys.argv, "env": dict(os.environ)}) + "\n")
out = sys.stdout.buffer
out.write(b"__GANGLION__\n")
payload = b"hello from the fake app"
out.write(b"D" + len(payload).to_bytes(4, "big") + payload)
out.flush()
for chunk in iter(lambda: sys.stdin.buffer.read1(65536), b""):
    if b'"quit"' in chunk:
        break
'''

LAUNCH = (
    "import sys\n"
    "from studio.serve_web import guarded_server\n"
    "server = guarded_server(sys.argv[1], port=int(sys.argv[2]))\n"
    "print(server.url, file=sys.stderr, flush=True)\n"
    "server.serve()\n"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A server subprocess: its port, the token it printed, and the file its apps write to."""

    def __init__(self, argv: list[str], log: Path, marker: Path | None = None) -> None:
        self.marker = marker
        with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.PIPE, start_new_session=True)
        self.stderr_lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.printed = self._wait_for_url()
        match = URL_RE.search(self.printed)
        self.port, self.token = int(match.group(1)), match.group(2)
        self._wait_until_listening()

    def _pump(self) -> None:
        for raw in self.proc.stderr:
            self.stderr_lines.put(raw.decode("utf-8", "replace"))

    def _wait_for_url(self) -> str:
        seen = []
        deadline = time.monotonic() + HANG_GUARD_S
        while time.monotonic() < deadline:
            try:
                line = self.stderr_lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            seen.append(line)
            if URL_RE.search(line):
                return "".join(seen)
        self.stop()
        raise AssertionError(f"the server printed no URL with a token; stderr so far: {''.join(seen)!r}")

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + HANG_GUARD_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError("the server never listened")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cookie_name(self) -> str:
        return f"studio_token_{self.port}"

    def started_apps(self) -> list[dict]:
        if self.marker is None or not self.marker.exists():
            return []
        return [json.loads(line) for line in self.marker.read_text().splitlines()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve_web")
    app = tmp / "fake_app.py"
    app.write_text(FAKE_APP)
    marker = tmp / "started.jsonl"
    command = shlex.join([sys.executable, str(app), str(marker)])
    server = Served([sys.executable, "-c", LAUNCH, command, str(_free_port())], tmp / "server.log", marker)
    yield server
    server.stop()


def _timeout() -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=HANG_GUARD_S)


async def _ws_status(server: Served, *, origin: str | None, cookie: str | None,
                     host: str | None = None, path: str = "/ws?width=80&height=24") -> int:
    """The handshake's status: 101 when accepted (then closed at once), else the refusal's."""
    headers = {}
    if cookie is not None:
        headers["Cookie"] = f"{server.cookie_name}={cookie}"
    if host is not None:
        headers["Host"] = host
    async with aiohttp.ClientSession(timeout=_timeout()) as session:
        try:
            async with session.ws_connect(f"{server.base}{path}", origin=origin, headers=headers) as ws:
                await ws.close()
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


async def _get(server: Served, path: str, **headers) -> tuple[int, aiohttp.ClientResponse, str]:
    async with aiohttp.ClientSession(timeout=_timeout()) as session, \
            session.get(f"{server.base}{path}", headers=headers, allow_redirects=False) as resp:
        return resp.status, resp, await resp.text()


# --- the page --------------------------------------------------------------------------------

async def test_page_without_token_is_refused(served):
    assert (await _get(served, "/"))[0] == 403


async def test_page_with_wrong_token_is_refused(served):
    assert (await _get(served, "/?token=wrong"))[0] == 403
    assert (await _get(served, f"/?token={served.token}x"))[0] == 403
    assert (await _get(served, "/?token=%C3%A9t%C3%A9"))[0] == 403  # non-ASCII: a 403, not a 500


async def test_page_with_token_sets_a_strict_httponly_cookie(served):
    status, resp, body = await _get(served, f"/?token={served.token}")
    assert status == 200
    cookie = resp.cookies[served.cookie_name]
    assert cookie.value == served.token
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert f'data-session-websocket-url="ws://127.0.0.1:{served.port}/ws"' in body


async def test_page_with_foreign_host_is_refused_even_with_token(served):
    # DNS rebinding: evil.example resolves to 127.0.0.1, the browser sends Host: evil.example:PORT.
    status, _, _ = await _get(served, f"/?token={served.token}", Host=f"evil.example:{served.port}")
    assert status == 403


async def test_page_on_localhost_redirects_to_127(served):
    status, resp, _ = await _get(served, f"/?token={served.token}", Host=f"localhost:{served.port}")
    assert status == 302
    assert resp.headers["Location"] == f"http://127.0.0.1:{served.port}/?token={served.token}"


async def test_static_assets_stay_open_but_downloads_need_the_cookie(served):
    assert (await _get(served, "/static/js/textual.js"))[0] == 200
    assert (await _get(served, "/static/js/textual.js", Host=f"evil.example:{served.port}"))[0] == 403
    assert (await _get(served, "/download/some-key"))[0] == 403
    cookie = f"{served.cookie_name}={served.token}"
    assert (await _get(served, "/download/some-key", Cookie=cookie))[0] == 404  # past the guard: no such download


# --- the WebSocket ---------------------------------------------------------------------------

async def test_websocket_without_token_is_refused_and_starts_nothing(served):
    before = len(served.started_apps())
    assert await _ws_status(served, origin=served.origin, cookie=None) == 403
    assert await _ws_status(served, origin=served.origin, cookie=None, path=f"/ws?token={served.token}") == 403
    assert len(served.started_apps()) == before


async def test_websocket_with_wrong_token_is_refused(served):
    before = len(served.started_apps())
    assert await _ws_status(served, origin=served.origin, cookie="wrong") == 403
    assert await _ws_status(served, origin=served.origin, cookie=served.token[:-1]) == 403
    assert len(served.started_apps()) == before


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1", "https://127.0.0.1:{port}", None])
async def test_websocket_with_foreign_or_no_origin_is_refused(served, origin):
    before = len(served.started_apps())
    origin = origin.format(port=served.port) if origin else None
    assert await _ws_status(served, origin=origin, cookie=served.token) == 403
    assert len(served.started_apps()) == before


async def test_websocket_with_foreign_host_is_refused(served):
    before = len(served.started_apps())
    status = await _ws_status(served, origin=served.origin, cookie=served.token, host=f"evil.example:{served.port}")
    assert status == 403
    assert len(served.started_apps()) == before


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
async def test_websocket_with_token_origin_and_host_drives_the_app(served, name):
    """The browser's path: open the printed URL (the page sets the cookie), then the WebSocket."""
    before = len(served.started_apps())
    jar = aiohttp.CookieJar(unsafe=True)  # aiohttp's jar ignores cookies from IP hosts unless unsafe
    async with aiohttp.ClientSession(timeout=_timeout(), cookie_jar=jar) as session:
        async with session.get(f"{served.base}/?token={served.token}") as page:
            assert page.status == 200
        headers = {"Host": f"{name}:{served.port}"}
        async with session.ws_connect(f"{served.base}/ws?width=80&height=24", origin=f"http://{name}:{served.port}",
                                      headers=headers) as ws:
            message = await ws.receive(timeout=HANG_GUARD_S)
            assert message.type == aiohttp.WSMsgType.BINARY
            assert message.data == b"hello from the fake app"
            await ws.close()
    started = served.started_apps()
    assert len(started) == before + 1
    # The token is on no command line and in no environment of the processes textual-serve starts.
    assert served.token not in json.dumps(started[-1])


# --- the real wiring -------------------------------------------------------------------------

async def test_studio_serve_prints_a_url_with_a_fresh_token_and_enforces_it(tmp_path):
    port = _free_port()
    argv = [sys.executable, "-m", "studio.cli", "--serve", "--port", str(port), "--workspace", str(tmp_path / "ws")]
    server = Served(argv, tmp_path / "server.log")
    try:
        assert server.port == port
        assert len(server.token) >= 43  # token_urlsafe(32)
        assert server.printed.count(server.token) == 1
        assert (await _get(server, "/"))[0] == 403
        assert (await _get(server, f"/?token={server.token}"))[0] == 200
        # Refused before any studio process starts (an accepted one would open the workspace).
        assert await _ws_status(server, origin="http://evil.example", cookie=server.token) == 403
        assert await _ws_status(server, origin=server.origin, cookie=None) == 403
        assert not (tmp_path / "ws").exists()
    finally:
        server.stop()
    second = Served(argv, tmp_path / "server2.log")
    try:
        assert second.token != server.token  # per launch
    finally:
        second.stop()
