"""`serve` against malformed requests sent byte by byte on a real socket: each gets an OpenAI-shaped
4xx at once, never a traceback, a hang or a 200 (issue 16, item 2). aiohttp refuses a bad
Content-Length itself; the server answers that refusal as OpenAI-shaped JSON too."""
from __future__ import annotations

import json
import os
import socket
import threading

import pytest

from tests._tiny_lora import build_base, make_run

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from training.inference import load_session
    from training.serve import make_server

    root = tmp_path_factory.mktemp("serve-bad")
    run = make_run(root / "runs", "run-a", build_base(root / "base"), seed=1)
    srv = make_server(load_session(run), port=0, api_key="s3cret", log=open(os.devnull, "w"))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _send(server, head: str, body: bytes = b"", timeout: float = 10.0) -> tuple[int, dict]:
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(head.encode("latin-1") + b"\r\n" + body)
        s.shutdown(socket.SHUT_WR) if not body else None
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                headers, _, rest = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in headers.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), None)
                if length is not None and len(rest) >= length:
                    break
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.partition(b"\r\n\r\n")[2] or b"{}")


def _post(length: str, key: str = "s3cret", content_type: str = "application/json") -> str:
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n")


GOOD = json.dumps({"model": "run-a", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).encode()


@pytest.mark.parametrize("length", ["abc", "-1", "+5", ""])
def test_a_bad_content_length_gets_400_at_once(server, length):
    status, body = _send(server, _post(length), GOOD, timeout=10)
    assert status == 400 and "Content-Length" in body["error"]["message"]


def test_a_null_user_content_is_refused(server):
    bad = json.dumps({"model": "run-a", "messages": [{"role": "user", "content": None}]}).encode()
    status, body = _send(server, _post(str(len(bad))), bad, timeout=10)
    assert status == 400 and body["error"]["param"] == "messages[0].content", body


def test_the_key_is_checked_and_a_good_request_still_answers(server):
    assert _send(server, _post(str(len(GOOD)), key="s3creX"), GOOD)[0] == 401
    status, body = _send(server, _post(str(len(GOOD))), GOOD, timeout=60)
    assert status == 200 and body["choices"][0]["message"]["role"] == "assistant"


@pytest.mark.parametrize("bad", [b'{"model": "run-a", "messages": [', b"\xff\xfe{}", b"[1, 2]"])
def test_a_body_that_is_not_a_json_object_gets_400(server, bad):
    status, body = _send(server, _post(str(len(bad))), bad, timeout=10)
    assert status == 400 and "JSON" in body["error"]["message"], body


def test_the_content_type_is_not_checked_the_body_is_read_as_json(server):
    # as before the move: `curl -d` sends form-urlencoded; the body still has to be a JSON object
    status, body = _send(server, _post(str(len(GOOD)), content_type="application/x-www-form-urlencoded"), GOOD,
                         timeout=60)
    assert status == 200 and body["choices"][0]["message"]["role"] == "assistant"
    status, body = _send(server, _post("9", content_type="text/plain"), b"model=x&y", timeout=10)
    assert status == 400 and "not valid JSON" in body["error"]["message"]


def test_an_oversized_body_gets_413(server):
    from training.serve import MAX_BODY

    # declared too big: refused before a byte of the body is read
    status, body = _send(server, _post(str(MAX_BODY + 1)), b"{", timeout=10)
    assert status == 413 and str(MAX_BODY) in body["error"]["message"]
    # chunked, so no length up front: refused once the body passes the limit
    head = _post("0").replace("Content-Length: 0", "Transfer-Encoding: chunked")
    big = b"%x\r\n" % (MAX_BODY + 1) + b" " * (MAX_BODY + 1) + b"\r\n0\r\n\r\n"
    status, body = _send(server, head, big, timeout=30)
    assert status == 413, body
