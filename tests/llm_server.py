"""A real OpenAI-compatible HTTP server on 127.0.0.1 for the augmentation tests and benchmark.

It speaks `POST /v1/chat/completions` and `GET /v1/models` over real sockets (stdlib
ThreadingHTTPServer, HTTP/1.1 keep-alive), answers with deterministic content derived from the
request and a `usage` block, and can misbehave on purpose:

- `latency`: seconds every answer waits before it is sent;
- `fail_next(kind, count, **kw)`: the next `count` requests get a fault, where kind is
  `429` (with `retry_after` seconds or `retry_after_ms`), `500`, `timeout` (sleep `sleep` s, past
  the client's timeout), `invalid_json`, `empty`, `no_choices`, `refusal`;
- a marker in the last user message, `#fault=KIND#`, gives that request the fault every time;
  `#score=N#` makes a judge reply score N;
- `pause_after(m)`: answer m requests, then hold every later one unanswered (and uncounted) until
  `release()`, after which held ones are dropped: the kill -9 test uses it to stop at a known point.

`counts` maps sha256(request body) to how many times that exact body was received (a request is
counted when its body is read, before any fault or latency); `arrivals` holds (monotonic time,
body hash) pairs. Everything is guarded by one lock.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULT_MARK = re.compile(r"#fault=(\w+)#")
SCORE_MARK = re.compile(r"#score=(\d)#")
COUNT_HINT = re.compile(r"exactly (\d+)|恰好\s*(\d+)")


class FakeLLM:
    def __init__(self, latency: float = 0.0, model: str = "fake-model"):
        self.latency = latency
        self.model = model
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.arrivals: list[tuple[float, str]] = []
        self.bodies: dict[str, dict[str, Any]] = {}
        self.auth_headers: set[str] = set()
        self.answered = 0
        self.dropped = 0
        self._faults: deque[tuple[str, dict[str, Any]]] = deque()
        self._pause_after: int | None = None
        self._released = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control ------------------------------------------------------------------------------
    def fail_next(self, kind: str, count: int = 1, **kw: Any) -> None:
        with self.lock:
            for _ in range(count):
                self._faults.append((kind, kw))

    def pause_after(self, m: int) -> None:
        with self.lock:
            self._pause_after = m
            self._released.clear()

    def release(self) -> None:
        with self.lock:
            self._pause_after = None
        self._released.set()

    def total_requests(self) -> int:
        with self.lock:
            return sum(self.counts.values())

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> "FakeLLM":
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.request_queue_size = 256
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> "FakeLLM":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- content ------------------------------------------------------------------------------
    def reply_content(self, req: dict[str, Any], digest: str) -> str:
        """Deterministic content for a request: JSON when the request asks for a JSON object."""
        msgs = req.get("messages") or []
        last = next((m.get("content", "") for m in reversed(msgs) if m.get("role") == "user"), "")
        prompt = "\n".join(str(m.get("content", "")) for m in msgs)
        tag = digest[:8]
        wants_json = (req.get("response_format") or {}).get("type") == "json_object"
        if wants_json and '"paraphrases"' in prompt:
            m = COUNT_HINT.search(prompt)
            n = int(next(g for g in m.groups() if g)) if m else 3
            return json.dumps({"paraphrases": [f"Paraphrase {i + 1} ({tag}) of the request" for i in range(n)]})
        if wants_json and '"score"' in prompt:
            m = SCORE_MARK.search(last)
            score = int(m.group(1)) if m else int(digest[:2], 16) % 5 + 1
            return json.dumps({"score": score, "reason": f"fake judge {tag}"})
        return f"Fake answer {tag}: {len(last)} chars asked."


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add 40 ms to every reply.
    disable_nagle_algorithm = True
    server_fake: FakeLLM

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None, ctype: str = "application/json") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            fake = self.server_fake
            self._send(200, json.dumps({"object": "list", "data": [{"id": fake.model, "object": "model", "owned_by": "fake"}]}).encode())
        else:
            self._send(404, b'{"error": {"message": "not found"}}')

    def do_POST(self) -> None:
        fake = self.server_fake
        length = int(self.headers.get("Content-Length") or 0)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self.rfile.read(length)
            self._send(404, b'{"error": {"message": "not found"}}')
            return
        with fake.lock:
            paused = fake._pause_after is not None and fake.answered >= fake._pause_after
        if paused:
            # Held before the body is read: not received as far as the counts go.
            fake._released.wait()
            with fake.lock:
                fake.dropped += 1
            self.close_connection = True
            return
        raw = self.rfile.read(length)
        digest = hashlib.sha256(raw).hexdigest()
        try:
            req = json.loads(raw)
        except ValueError:
            self._send(400, b'{"error": {"message": "request body is not JSON"}}')
            return
        last = next((m.get("content", "") for m in reversed(req.get("messages") or []) if m.get("role") == "user"), "")
        with fake.lock:
            fake.counts[digest] += 1
            fake.arrivals.append((time.monotonic(), digest))
            fake.bodies[digest] = req
            fake.auth_headers.add(self.headers.get("Authorization", ""))
            fault = fake._faults.popleft() if fake._faults else None
        if fault is None:
            m = FAULT_MARK.search(str(last))
            if m:
                fault = (m.group(1), {})
        if fake.latency:
            time.sleep(fake.latency)
        kind, kw = fault if fault else ("", {})
        if kind == "429":
            headers = {}
            if "retry_after" in kw:
                headers["Retry-After"] = str(kw["retry_after"])
            if "retry_after_ms" in kw:
                headers["retry-after-ms"] = str(kw["retry_after_ms"])
            self._send(429, b'{"error": {"message": "rate limited", "type": "rate_limit"}}', headers)
            return
        if kind == "500":
            self._send(500, b'{"error": {"message": "internal error"}}')
            return
        if kind == "timeout":
            time.sleep(kw.get("sleep", 3.0))
            self._send(200, b"{}")
            return
        if kind == "invalid_json":
            self._send(200, b'{"id": "x", "choices": [ this is not json')
            self._count_answer()
            return
        content: str | None = fake.reply_content(req, digest)
        refusal = None
        finish = "stop"
        if kind == "empty":
            content = ""
        elif kind == "refusal":
            content, refusal = None, "I can't help with that."
        prompt_tokens = max(1, len(raw) // 4)
        completion_tokens = max(1, len(content or refusal or "") // 4)
        body: dict[str, Any] = {
            "id": f"chatcmpl-{digest[:12]}",
            "object": "chat.completion",
            "created": 0,
            "model": req.get("model", fake.model),
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }
        if kind != "no_choices":
            body["choices"] = [{"index": 0, "finish_reason": finish,
                                "message": {"role": "assistant", "content": content, "refusal": refusal}}]
        self._send(200, json.dumps(body).encode())
        self._count_answer()

    def _count_answer(self) -> None:
        with self.server_fake.lock:
            self.server_fake.answered += 1


def start(latency: float = 0.0) -> FakeLLM:
    return FakeLLM(latency=latency).start()


if __name__ == "__main__":  # `python -m tests.llm_server --latency 0.2`: serve in its own process
    import argparse
    import sys

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.0)
    a = ap.parse_args()
    server = FakeLLM(latency=a.latency).start()
    print(server.base_url, flush=True)
    try:
        sys.stdin.read()  # serve until stdin closes (the parent exits or closes the pipe)
    finally:
        server.stop()
