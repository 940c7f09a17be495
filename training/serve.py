"""An OpenAI-compatible chat-completions server: ONE base model, several LoRA adapters.

The seed's "multi-LoRA" idea (one base + N small adapters instead of N full models) as a server:
every run named on the command line is loaded as a PEFT adapter named after the run, onto one
shared base; a request's `model` picks the adapter, and the base's own name answers with the
adapters switched off. `GET /v1/models` lists them. So any OpenAI client (the studio's
augmentation client included) can compare base and fine-tunes by changing one string.

HTTP is aiohttp.web (framing, keep-alive, chunked bodies, Content-Length checks, the body size
limit). One asyncio loop parses and answers requests concurrently; generation is blocking torch code,
so it runs on ONE worker thread (a single-thread executor): requests queue there in arrival order
and the model answers one at a time (switching adapters is model-wide state). A streamed answer
comes from that thread piece by piece through an asyncio.Queue (`call_soon_threadsafe`). When the
client goes away, aiohttp cancels the handler (`handler_cancellation`), which sets the request's stop
flag; the session's stream takes that flag as its `cancel`, so its StoppingCriteria ends generate()
at the next token; then the next request starts. (A client that
half-closes its socket after the request counts as gone: aiohttp closes on EOF.)
Bound to 127.0.0.1 by default: there is no authentication unless `api_key` is set.

Supported: `POST /v1/chat/completions` with `messages`, `model`, `max_tokens` /
`max_completion_tokens`, `temperature`, `top_p`, `stop`, `seed`, `n` (1 only), `stream` (SSE
`data:` chunks ending with `data: [DONE]`) and `stream_options.include_usage`; `GET /v1/models`,
`GET /v1/models/{id}`, `GET /health`. Errors are OpenAI-shaped JSON:
`{"error": {"message", "type", "param", "code"}}`, malformed HTTP included.
"""
from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .errors import TrainingError
from .inference import BASE, ChatSession

DEFAULT_MAX_TOKENS = 256
MAX_BODY = 8 * 1024 * 1024  # bytes of a request body we accept
SHUTDOWN_GRACE_S = 5.0  # how long shutdown waits for requests in flight (streams stop at once)
STOPPED = "stopped"  # how a stream's generation ends when its client left or the server stops


class ApiError(Exception):
    """An error answered as OpenAI-style JSON with this HTTP status."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _web():
    try:
        from aiohttp import web
    except ImportError:  # a GPU box set up for training only
        raise TrainingError("serving needs aiohttp: pip install 'aiohttp>=3.9'") from None
    return web


class ModelServer:
    """The HTTP server around one ChatSession. `base_name` is the model id that means "no adapter".

    Binds at construction (an OSError if the port is taken); `serve_forever()` runs the event loop
    in the calling thread until `shutdown()` (from another thread) or Ctrl-C; then `server_close()`.
    """

    def __init__(self, session: ChatSession, host: str = "127.0.0.1", port: int = 8000, *,
                 base_name: str | None = None, api_key: str | None = None, log: Any = None):
        _web()
        self.session = session
        self.base_name = base_name or default_base_name(session.base)
        if self.base_name in session.adapters:
            raise ValueError(f"a run is named like the base ({self.base_name!r}); rename the run folder")
        self.api_key = api_key
        self.log = log if log is not None else sys.stderr
        self.created = int(time.time())
        self.streams_abandoned = 0  # streams whose client left before the end: their generation was stopped
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server((host, port), family=family, backlog=128)  # SO_REUSEADDR on POSIX
        self.server_address = self.socket.getsockname()
        self._generator = ThreadPoolExecutor(max_workers=1, thread_name_prefix="serve-generate")
        self._stops: set[threading.Event] = set()  # stop flags of the streams in flight
        self._loop: asyncio.AbstractEventLoop | None = None
        self._quit: asyncio.Event | None = None
        self._shutdown_asked = threading.Event()
        self._running = threading.Event()
        self._done = threading.Event()

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

    # -- lifecycle (the socketserver names, which the CLI and the tests use)

    def serve_forever(self) -> None:
        self._running.set()
        try:
            asyncio.run(self._serve())
        finally:
            self._done.set()

    def shutdown(self) -> None:
        """Stop `serve_forever` (running in another thread) and wait until it has returned."""
        self._shutdown_asked.set()
        loop, quit_ = self._loop, self._quit
        if loop is not None and quit_ is not None:
            try:
                loop.call_soon_threadsafe(quit_.set)
            except RuntimeError:  # the loop has already closed
                pass
        if self._running.is_set():
            self._done.wait()

    def server_close(self) -> None:
        self.socket.close()
        self._generator.shutdown(wait=False, cancel_futures=True)

    async def _serve(self) -> None:
        web = _web()
        loop = asyncio.get_running_loop()
        self._quit = asyncio.Event()
        self._loop = loop
        if self._shutdown_asked.is_set():
            return
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._middleware()])
        routes = [("GET", "/health", self._health), ("GET", "/v1/health", self._health),
                  ("GET", "/v1/models", self._models), ("GET", "/v1/models/{name:.+}", self._model),
                  ("POST", "/v1/chat/completions", self._chat)]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
            if "{" not in path:
                app.router.add_route(method, path + "/", handler)
        # handler_cancellation: a client that hangs up cancels its handler, which stops its generation
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
        await runner.setup()
        protocol = _protocol_class(web)
        logger = _line_logger(self)
        server = await loop.create_server(lambda: protocol(runner.server, loop=loop, access_log=None, logger=logger),
                                          sock=self.socket)
        try:
            await self._quit.wait()
        finally:
            server.close()
            for stop in list(self._stops):
                stop.set()
            await runner.cleanup()

    # -- HTTP plumbing

    def _middleware(self):
        web = _web()

        @web.middleware
        async def errors_auth_and_log(request, handler):
            try:
                self._check_key(request)
                response = await handler(request)
            except ApiError as err:
                response = _json_response(err.status, err.body())
            except web.HTTPException as exc:  # routing (404, 405) and the body limit (413)
                response = _json_response(exc.status, _http_error(request, exc).body())
                if "Allow" in exc.headers:
                    response.headers["Allow"] = exc.headers["Allow"]
            if response.status == 413:
                response.force_close()  # no keep-alive after a body we refused to read
            # One line a request; never bodies (they may hold private data) nor headers (keys).
            self._log_line(f'{request.remote} "{request.method} {request.path}" {response.status}')
            return response

        return errors_auth_and_log

    def _log_line(self, line: str) -> None:
        try:
            self.log.write(line + "\n")
            self.log.flush()
        except (OSError, ValueError):
            pass

    def _check_key(self, request: Any) -> None:
        if not self.api_key:
            return
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        # constant time: the comparison must not tell a caller how much of the key it guessed
        if not hmac.compare_digest(given, f"Bearer {self.api_key}".encode("utf-8", "surrogateescape")):
            raise ApiError(401, "invalid or missing API key (Authorization: Bearer ...)", type="authentication_error",
                           code="invalid_api_key")

    async def _read_json(self, request: Any) -> dict:
        # aiohttp has already refused a malformed Content-Length (400) before the handler runs
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise ApiError(413, f"request body over {MAX_BODY} bytes")
        try:
            raw = await request.read()  # a chunked body over MAX_BODY raises 413 (client_max_size)
        except _web().RequestPayloadError as exc:  # e.g. a Content-Encoding the body does not match
            raise ApiError(400, f"request body could not be read: {_first_line(exc)}") from None
        try:
            body = json.loads(raw or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object")
        return body

    # -- routes

    async def _health(self, request: Any) -> Any:
        return _json_response(200, {"status": "ok", "models": self.model_names})

    async def _models(self, request: Any) -> Any:
        return _json_response(200, {"object": "list", "data": [self.model_card(n) for n in self.model_names]})

    async def _model(self, request: Any) -> Any:
        name = request.match_info["name"].rstrip("/")
        self.adapter_for(name)
        return _json_response(200, self.model_card(name))

    async def _chat(self, request: Any) -> Any:
        body = await self._read_json(request)
        adapter = self.adapter_for(body.get("model"))
        gen = parse_chat_request(body)
        # tokenising the prompt can take a moment on a long chat: off the loop, but not behind the model
        await asyncio.get_running_loop().run_in_executor(None, self._check_context, gen)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._stream(request, body["model"], adapter, gen, include_usage)
        return await self._complete(body["model"], adapter, gen)

    def _check_context(self, gen: dict) -> None:
        session = self.session
        limit = getattr(getattr(session.model, "config", None), "max_position_embeddings", None)
        if not limit:
            return
        prompt = session.prompt_ids(gen["messages"])[0].shape[1]
        if prompt >= limit:
            raise ApiError(400, f"the prompt is {prompt} tokens; this model's context is {limit}",
                           param="messages", code="context_length_exceeded")
        gen["max_new_tokens"] = min(gen["max_new_tokens"], limit - prompt)

    async def _complete(self, model: str, adapter: str | None, gen: dict) -> Any:
        messages = gen.pop("messages")
        loop = asyncio.get_running_loop()
        try:
            # a client that leaves while this waits its turn cancels the future: it never runs
            done = await loop.run_in_executor(
                self._generator, functools.partial(self.session.generate, messages, adapter=adapter, **gen))
        except Exception as exc:  # a generation failure is the server's problem, answered as JSON
            raise ApiError(500, f"generation failed: {type(exc).__name__}: {exc}", type="server_error") from None
        return _json_response(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "system_fingerprint": None,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": done.text, "refusal": None},
                         "logprobs": None, "finish_reason": done.finish_reason}],
            "usage": _usage(done),
        })

    async def _stream(self, request: Any, model: str, adapter: str | None, gen: dict, include_usage: bool) -> Any:
        web = _web()
        messages = gen.pop("messages")
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        def chunk(delta: dict, finish: str | None = None, **extra: Any) -> dict:
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "system_fingerprint": None,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}

        def hand_over(kind: str, value: Any = None) -> None:  # worker thread -> loop
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:  # the loop is gone (server stopped): nobody listens any more
                stop.set()

        def generate() -> None:  # on the generation thread; always ends with exactly one "end" item
            if stop.is_set():  # the client left while this request waited its turn
                hand_over("end", STOPPED)
                return
            stream = None
            try:
                stream = self.session.stream(messages, adapter=adapter, cancel=stop, **gen)  # stops per token
                for piece in stream:
                    if stop.is_set():
                        hand_over("end", STOPPED)
                        return
                    if piece:
                        hand_over("piece", piece)
                hand_over("end", stream.completion)
            except Exception as exc:
                hand_over("end", exc)
            finally:
                if stream is not None:  # `stop` already ended generate() at the token after it was set
                    stream.close()

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                               "Cache-Control": "no-cache"})
        self._stops.add(stop)
        try:
            await response.prepare(request)
            await _event(response, chunk({"role": "assistant", "content": ""}))
            worker = loop.run_in_executor(self._generator, generate)
            while True:
                kind, value = await queue.get()
                if kind == "piece":
                    await _event(response, chunk({"content": value}))
                    continue
                if isinstance(value, Exception):  # headers are sent: report in-band, as OpenAI does
                    err = ApiError(500, f"generation failed: {type(value).__name__}: {value}", type="server_error")
                    await _event(response, err.body())
                elif value is not STOPPED:  # a Completion; a stopped stream ends without [DONE]
                    await _event(response, chunk({}, value.finish_reason))
                    if include_usage:
                        last = chunk({})
                        last["choices"] = []
                        last["usage"] = _usage(value)
                        await _event(response, last)
                    await response.write(b"data: [DONE]\n\n")
                break
            await worker
            await response.write_eof()
            return response
        except (asyncio.CancelledError, ConnectionError):  # the client went away (or the server stops)
            if not stop.is_set():
                stop.set()
                self.streams_abandoned += 1
                self._log_line(f'{request.remote} "{request.method} {request.path}" stream stopped: client gone')
            raise
        finally:
            stop.set()
            self._stops.discard(stop)


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


def _json_response(status: int, data: dict) -> Any:
    return _web().json_response(data, status=status, dumps=functools.partial(json.dumps, ensure_ascii=False))


async def _event(response: Any, data: dict) -> None:
    await response.write(b"data: " + json.dumps(data, ensure_ascii=False).encode("utf-8") + b"\n\n")


def _http_error(request: Any, exc: Any) -> ApiError:
    """aiohttp's own HTTP errors (routing, body size) as OpenAI-shaped ones."""
    if exc.status == 404:
        return ApiError(404, f"no route {request.method} {request.path}; this server answers GET /v1/models and "
                             "POST /v1/chat/completions", code="not_found")
    if exc.status == 405:
        return ApiError(405, f"{request.method} is not allowed on {request.path}", code="method_not_allowed")
    if exc.status == 413:
        return ApiError(413, f"request body over {MAX_BODY} bytes")
    return ApiError(exc.status, exc.reason)


@functools.cache
def _protocol_class(web: Any) -> type:
    class JsonErrors(web.RequestHandler):
        """aiohttp's connection handler, answering what never reaches the app (a bad Content-Length,
        a malformed request line: aiohttp's 400) and unhandled failures (500) as OpenAI-shaped JSON."""

        def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                         message: str | None = None) -> Any:
            super().handle_error(request, status, exc, message)  # logs; raises if an answer had begun
            if status >= 500:
                err = ApiError(status, "internal server error", type="server_error")
            else:  # e.g. "Invalid character in Content-Length:\n\n  b'Content-Length: abc'..."
                err = ApiError(status, f"malformed HTTP request: {_first_line(exc or Exception(message or ''))}")
            response = _json_response(status, err.body())
            response.force_close()
            return response

    return JsonErrors


def _first_line(exc: BaseException) -> str:
    """The reason in one of aiohttp's HTTP errors, whose str() starts with "400, message:"."""
    text = str(getattr(exc, "message", None) or exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().endswith("message:")]
    return (lines or [type(exc).__name__])[0].rstrip(":")


def _line_logger(server: ModelServer) -> logging.Logger:
    """aiohttp's error logger for this server: one line a problem in `server.log`, no traceback."""

    class OneLine(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            line = record.getMessage()
            exc = record.exc_info[1] if record.exc_info else None
            if exc is not None:
                line += f": {type(exc).__name__}: {_first_line(exc)}"
            server._log_line(line)

    logger = logging.Logger("training.serve.http", logging.INFO)  # noqa: LOG001 - unregistered: one per server
    logger.addHandler(OneLine())
    logger.propagate = False
    return logger


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
        _web()  # before loading a model: say at once when aiohttp is missing
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
