"""`serve` with several clients at once and a client that hangs up mid-stream (issue 16, item 2):
requests queue for the one model and each gets its own answer; a dropped stream stops its generation
(seen on the model's forward passes, not timed) and the next request is answered."""
from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time

import pytest

from tests._tiny_lora import build_base, make_run

pytest.importorskip("peft")

CHAT = [{"role": "user", "content": "hello world"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from training.inference import load_session
    from training.serve import make_server

    root = tmp_path_factory.mktemp("serve-many")
    base = build_base(root / "base-model")
    runs = [make_run(root / "runs", "run-a", base, seed=1), make_run(root / "runs", "run-b", base, seed=2)]
    srv = make_server(load_session(runs), port=0, log=open(os.devnull, "w"))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _ask(server, body: dict) -> tuple[int, str]:
    """(status, answer text) of one chat request; a stream must end with [DONE]."""
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=120)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    if not body.get("stream"):
        return resp.status, json.loads(raw)["choices"][0]["message"]["content"]
    events = [line[len(b"data: "):] for line in raw.split(b"\n") if line.startswith(b"data: ")]
    assert events[-1] == b"[DONE]", events[-3:]
    return resp.status, "".join(c["choices"][0]["delta"].get("content") or ""
                                for c in map(json.loads, events[:-1]) if c["choices"])


def _adapter(name: str) -> str | None:
    return None if name == "base-model" else name


def test_four_clients_at_once_each_get_their_own_answer(server):
    asks = [("base-model", False), ("run-a", False), ("run-a", True), ("run-b", True)]
    expected = {name: server.session.generate(CHAT, adapter=_adapter(name), max_new_tokens=8, temperature=0).text
                for name, _ in asks}
    barrier = threading.Barrier(len(asks))
    results: list = [None] * len(asks)

    def client(i: int, name: str, stream: bool) -> None:
        barrier.wait(timeout=60)
        results[i] = _ask(server, {"model": name, "messages": CHAT, "max_tokens": 8, "temperature": 0,
                                   "stream": stream})

    threads = [threading.Thread(target=client, args=(i, *ask)) for i, ask in enumerate(asks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert results == [(200, expected[name]) for name, _ in asks]


def _wait_for(condition, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout  # only so that a broken server cannot hang the test run
    while not condition() and time.monotonic() < end:
        time.sleep(0.01)


def test_a_client_that_hangs_up_mid_stream_stops_its_generation(server):
    session = server.session
    # This greedy answer would use the whole budget of 100 tokens: stopping early is the server's
    # doing. The stop flag reaches generate()'s StoppingCriteria, so it ends at the next token.
    chat = [{"role": "user", "content": "LoRA adds low-rank matrices"}]
    assert session.generate(chat, adapter="run-a", max_new_tokens=100, temperature=0).completion_tokens == 100
    after = session.generate(CHAT, adapter="run-a", max_new_tokens=3, temperature=0).text
    before = server.streams_abandoned
    steps: list[int] = []
    started = threading.Event()

    def step(module, args) -> None:  # the output layer runs once a generated token
        steps.append(1)
        if len(steps) == 1:  # the dropped stream's first pass: held until the server has seen the client leave
            started.set()
            _wait_for(lambda: server.streams_abandoned > before)

    hook = session.model.get_output_embeddings().register_forward_pre_hook(step)
    try:
        body = json.dumps({"model": "run-a", "messages": chat, "max_tokens": 100, "temperature": 0, "stream": True})
        with socket.create_connection(server.server_address[:2], timeout=60) as s:
            s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
            head = b""
            while b"data: {" not in head:  # the role chunk
                head += s.recv(65536) or pytest.fail(f"closed early: {head!r}")
            assert head.startswith(b"HTTP/1.1 200") and started.wait(60)
        # hung up: the next request waits for the model, which the dropped stream must give back
        status, text = _ask(server, {"model": "run-a", "messages": CHAT, "max_tokens": 3, "temperature": 0})
    finally:
        hook.remove()
    assert (status, text) == (200, after)
    assert server.streams_abandoned == before + 1
    assert len(steps) <= 5, len(steps)  # the dropped stream's token or two + 3, not its 100


def test_a_stream_s_cancel_event_ends_generation_at_the_next_token(server):
    """serve hands the request's stop flag to the session's stream: generate() ends at the next
    token even while nobody reads the stream (a flag checked between pieces could not)."""
    session = server.session
    chat = [{"role": "user", "content": "LoRA adds low-rank matrices"}]
    cancel = threading.Event()
    steps: list[int] = []

    def step(module, args) -> None:
        steps.append(1)
        if len(steps) == 2:  # the second token: cancelled from outside while the model is mid-step
            cancel.set()

    hook = session.model.get_output_embeddings().register_forward_pre_hook(step)
    try:
        stream = session.stream(chat, adapter="run-a", max_new_tokens=100, temperature=0, cancel=cancel)
        "".join(stream)
    finally:
        hook.remove()
    assert len(steps) == 2 and stream.completion.completion_tokens <= 2, (len(steps), stream.completion)
