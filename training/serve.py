"""An OpenAI-compatible chat-completions server: ONE base model, several LoRA adapters.

The seed's "multi-LoRA" idea (one base + N small adapters instead of N full models) as a server:
every run named on the command line is loaded as a PEFT adapter named after the run, onto one
shared base; a request's `model` picks the adapter, and the base's own name answers with the
adapters switched off. `GET /v1/models` lists them. So any OpenAI client (the studio's
augmentation client included) can compare base and fine-tunes by changing one string.

Plain stdlib HTTP (ThreadingHTTPServer): requests are parsed concurrently, generation runs one at a
time under the session's lock (switching adapters is model-wide state). Bound to 127.0.0.1 by
default: there is no authentication unless `api_key` is set.

Supported: `POST /v1/chat/completions` with `messages`, `model`, `max_tokens` /
`max_completion_tokens`, `temperature`, `top_p`, `stop`, `seed`, `n` (1 only), `stream` (SSE
`data:` chunks ending with `data: [DONE]`) and `stream_options.include_usage`; `GET /v1/models`,
`GET /v1/models/{id}`, `GET /health`. Errors are OpenAI-shaped JSON:
`{"error": {"message", "type", "param", "code"}}`.
"""
from __future__ import annotations

import hmac
import json
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .inference import BASE, ChatSession

DEFAULT_MAX_TOKENS = 256
MAX_BODY = 8 * 1024 * 1024  # bytes of a request body we accept


class ApiError(Exception):
    """An error answered as OpenAI-style JSON with this HTTP status."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class ModelServer(ThreadingHTTPServer):
    """The HTTP server around one ChatSession. `base_name` is the model id that means "no adapter"."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, session: ChatSession, host: str = "127.0.0.1", port: int = 8000, *,
                 base_name: str | None = None, api_key: str | None = None, log: Any = None):
        self.session = session
        self.base_name = base_name or default_base_name(session.base)
        if self.base_name in session.adapters:
            raise ValueError(f"a run is named like the base ({self.base_name!r}); rename the run folder")
        self.api_key = api_key
        self.log = log if log is not None else sys.stderr
        self.created = int(time.time())
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def model_names(self) -> list[str]:
        return [self.base_name] + self.session.adapters

    def adapter_for(self, model: Any) -> str | None:
        """The session adapter a request's `model` names (BASE for the base); 404 with the list otherwise."""
        if not isinstance(model, str) or not model:
            raise ApiError(400, f"`model` is required: one of {', '.join(self.model_names)}", param="model",
                           code="missing_model")
        if model == self.base_name:
            return BASE
        if model in self.session.adapters:
            return model
        raise ApiError(404, f"The model {model!r} does not exist here; available models: "
                            f"{', '.join(self.model_names)}", param="model", code="model_not_found")

    def model_card(self, name: str) -> dict:
        run = next((r for r in self.session.runs if r.name == name), None)
        card = {"id": name, "object": "model", "created": self.created, "owned_by": "studio"}
        card["root"] = self.session.base
        card["parent"] = None if run is None else self.base_name
        return card


def default_base_name(base: str) -> str:
    """The base's model id: a hub id or `tiny` as is, a local folder by its name."""
    from pathlib import Path

    path = Path(base).expanduser()
    return path.name if path.is_absolute() or base.startswith((".", "~")) else base


def _text_content(content: Any, index: int) -> str:
    """A message's content as text: a string, or the text parts of a content-part list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise ApiError(400, f"messages[{index}].content: only text parts are supported",
                               param=f"messages[{index}].content")
        return "".join(parts)
    raise ApiError(400, f"messages[{index}].content must be a string or a list of text parts",
                   param=f"messages[{index}].content")


def parse_chat_request(body: dict) -> dict:
    """Validate an OpenAI chat-completions body; returns the generation arguments."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "`messages` must be a non-empty list of {role, content}", param="messages")
    chat = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant"):
            raise ApiError(400, f"messages[{i}].role must be system, user or assistant", param=f"messages[{i}].role")
        role = "system" if m["role"] == "developer" else m["role"]
        if m.get("content") is None and role != "assistant":  # OpenAI allows null only for an assistant turn
            raise ApiError(400, f"messages[{i}].content must be a string or a list of text parts, got null",
                           param=f"messages[{i}].content")
        chat.append({"role": role, "content": _text_content(m.get("content"), i)})
    n = body.get("n", 1)
    if n not in (1, None):
        raise ApiError(400, "only n=1 is supported", param="n")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens")) or DEFAULT_MAX_TOKENS
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ApiError(400, "max_tokens must be a positive integer", param="max_tokens")
    temperature = body.get("temperature", 1.0)
    top_p = body.get("top_p", 1.0)
    for name, value, hi in (("temperature", temperature, 2.0), ("top_p", top_p, 1.0)):
        if value is not None and (not isinstance(value, (int, float)) or not 0 <= value <= hi):
            raise ApiError(400, f"{name} must be a number from 0 to {hi}", param=name)
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop)):
        raise ApiError(400, "stop must be a string or a list of non-empty strings", param="stop")
    seed = body.get("seed")
    if seed is not None and not isinstance(seed, int):
        raise ApiError(400, "seed must be an integer", param="seed")
    return {"messages": chat, "max_new_tokens": max_tokens,
            "temperature": 1.0 if temperature is None else float(temperature),
            "top_p": 1.0 if top_p is None else float(top_p), "stop": stop or None, "seed": seed}


class _Handler(BaseHTTPRequestHandler):
    server: ModelServer
    protocol_version = "HTTP/1.1"
    server_version = "studio-serve"

    # -- plumbing

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        # One line a request; never bodies (they may hold private data) nor headers (keys).
        try:
            self.server.log.write(f"{self.address_string()} {format % args}\n")
            self.server.log.flush()
        except (OSError, ValueError):
            pass

    def _send_json(self, status: int, data: dict) -> None:
        raw = json.dumps(data, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, err: ApiError) -> None:
        self._send_json(err.status, err.body())

    def _check_key(self) -> None:
        if not self.server.api_key:
            return
        given = self.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        # constant time: the comparison must not tell a caller how much of the key it guessed
        if not hmac.compare_digest(given, f"Bearer {self.server.api_key}".encode("utf-8", "surrogateescape")):
            raise ApiError(401, "invalid or missing API key (Authorization: Bearer ...)", type="authentication_error",
                           code="invalid_api_key")

    def _read_json(self) -> dict:
        header = self.headers.get("Content-Length")
        try:
            length = int(header) if header is not None else 0
        except ValueError:
            length = -1
        if length < 0 or (header is not None and not header.strip().isdigit()):
            # `abc` raised ValueError (a traceback and no answer); `-1` read until the client hung up
            raise ApiError(400, f"Content-Length must be a non-negative integer, got {header!r}")
        if length > MAX_BODY:
            raise ApiError(413, f"request body over {MAX_BODY} bytes")
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object")
        return body

    # -- routes

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        try:
            self._check_key()
            path = self.path.split("?")[0].rstrip("/")
            if path in ("/health", "/v1/health"):
                self._send_json(200, {"status": "ok", "models": self.server.model_names})
            elif path == "/v1/models":
                self._send_json(200, {"object": "list",
                                      "data": [self.server.model_card(n) for n in self.server.model_names]})
            elif path.startswith("/v1/models/"):
                name = path[len("/v1/models/"):]
                self.server.adapter_for(name)
                self._send_json(200, self.server.model_card(name))
            else:
                raise ApiError(404, f"no route GET {path}; try /v1/models", code="not_found")
        except ApiError as err:
            self._error(err)

    def do_POST(self) -> None:  # noqa: N802
        try:
            self._check_key()
            path = self.path.split("?")[0].rstrip("/")
            if path != "/v1/chat/completions":
                raise ApiError(404, f"no route POST {path}; this server answers /v1/chat/completions",
                               code="not_found")
            body = self._read_json()
            adapter = self.server.adapter_for(body.get("model"))
            gen = parse_chat_request(body)
            self._check_context(gen)
        except ApiError as err:
            self._error(err)
            return
        model = body["model"]
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(model, adapter, gen, include_usage)
        else:
            self._complete(model, adapter, gen)

    def _check_context(self, gen: dict) -> None:
        session = self.server.session
        limit = getattr(getattr(session.model, "config", None), "max_position_embeddings", None)
        if not limit:
            return
        prompt = session.prompt_ids(gen["messages"])[0].shape[1]
        if prompt >= limit:
            raise ApiError(400, f"the prompt is {prompt} tokens; this model's context is {limit}",
                           param="messages", code="context_length_exceeded")
        gen["max_new_tokens"] = min(gen["max_new_tokens"], limit - prompt)

    def _complete(self, model: str, adapter: str | None, gen: dict) -> None:
        messages = gen.pop("messages")
        try:
            done = self.server.session.generate(messages, adapter=adapter, **gen)
        except Exception as exc:  # a generation failure is the server's problem, answered as JSON
            self._error(ApiError(500, f"generation failed: {type(exc).__name__}: {exc}", type="server_error"))
            return
        self._send_json(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "system_fingerprint": None,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": done.text, "refusal": None},
                         "logprobs": None, "finish_reason": done.finish_reason}],
            "usage": _usage(done),
        })

    def _stream(self, model: str, adapter: str | None, gen: dict, include_usage: bool) -> None:
        messages = gen.pop("messages")
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        def chunk(delta: dict, finish: str | None = None, **extra: Any) -> dict:
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "system_fingerprint": None,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")  # the stream ends when the connection closes
        self.end_headers()
        self.close_connection = True
        stream = self.server.session.stream(messages, adapter=adapter, **gen)
        try:
            self._event(chunk({"role": "assistant", "content": ""}))
            for piece in stream:
                if piece:
                    self._event(chunk({"content": piece}))
            self._event(chunk({}, stream.completion.finish_reason))
            if include_usage:
                last = chunk({})
                last["choices"] = []
                last["usage"] = _usage(stream.completion)
                self._event(last)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            stream.close()  # the client went away: stop generating
        except Exception as exc:  # headers are sent: report in-band, as OpenAI does
            stream.close()
            try:
                self._event(ApiError(500, f"generation failed: {type(exc).__name__}: {exc}", type="server_error").body())
            except OSError:
                pass

    def _event(self, data: dict) -> None:
        self.wfile.write(b"data: " + json.dumps(data, ensure_ascii=False).encode("utf-8") + b"\n\n")
        self.wfile.flush()


def _usage(done: Any) -> dict:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens}


def make_server(session: ChatSession, host: str = "127.0.0.1", port: int = 8000, **kw: Any) -> ModelServer:
    """A server ready for `serve_forever()` (port 0 picks a free port: see `.url`)."""
    return ModelServer(session, host, port, **kw)


def main(argv: list[str] | None = None) -> int:
    """`python -m training.serve RUN_DIR... [--host H] [--port P]`: the same server on a GPU box that
    has only this package (no studio); set STUDIO_SERVE_API_KEY to require a key."""
    import argparse
    import os

    from .errors import TrainingError
    from .inference import load_session

    ap = argparse.ArgumentParser(prog="python -m training.serve", description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run directories (their adapters must share one base)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--base-name")
    ap.add_argument("--device")
    args = ap.parse_args(argv)
    api_key = os.environ.get("STUDIO_SERVE_API_KEY") or None
    try:
        if args.host not in ("127.0.0.1", "localhost", "::1") and not api_key:
            raise TrainingError(f"--host {args.host} exposes the model to the network; set STUDIO_SERVE_API_KEY first")
        server = make_server(load_session(args.runs, device=args.device), args.host, args.port,
                             base_name=args.base_name, api_key=api_key)
    except (TrainingError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"serving {', '.join(server.model_names)} at {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
