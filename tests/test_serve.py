"""`serve`: a real HTTP server on 127.0.0.1 holding one base and two adapters, used through the
official `openai` client: `model=` switches adapters, streaming works, errors are OpenAI-shaped."""
from __future__ import annotations

import http.client
import json
import threading

import pytest

from tests._tiny_lora import build_base, make_run

pytest.importorskip("peft")
openai = pytest.importorskip("openai")

CHAT = [{"role": "user", "content": "hello world"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from training.inference import load_session
    from training.serve import make_server

    root = tmp_path_factory.mktemp("serve")
    base = build_base(root / "base-model")
    runs = [make_run(root / "runs", "run-a", base, seed=1), make_run(root / "runs", "run-b", base, seed=2)]
    srv = make_server(load_session(runs), port=0, log=open("/dev/null", "w"))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.url, api_key="x", max_retries=0, timeout=60)


def _raw(server, method, path, body=None):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, json.loads(data)


def test_binds_loopback_and_lists_base_and_adapters(server, client):
    assert server.server_address[0] == "127.0.0.1"
    assert [m.id for m in client.models.list()] == ["base-model", "run-a", "run-b"]
    assert client.models.retrieve("run-b").id == "run-b"


def test_model_switches_adapter_and_matches_the_session(server, client):
    answers = {}
    for name in ("base-model", "run-a", "run-b"):
        resp = client.chat.completions.create(model=name, messages=CHAT, max_tokens=12, temperature=0)
        choice = resp.choices[0]
        assert resp.model == name and choice.message.role == "assistant"
        assert choice.finish_reason in ("stop", "length")
        adapter = None if name == "base-model" else name
        expected = server.session.generate(CHAT, adapter=adapter, max_new_tokens=12, temperature=0)
        assert choice.message.content == expected.text
        assert resp.usage.prompt_tokens == expected.prompt_tokens
        assert resp.usage.completion_tokens == expected.completion_tokens
        assert resp.usage.total_tokens == expected.prompt_tokens + expected.completion_tokens
        answers[name] = choice.message.content
    assert len(set(answers.values())) == 3, answers


def test_max_tokens_gives_finish_reason_length(client):
    resp = client.chat.completions.create(model="run-a", messages=CHAT, max_tokens=2, temperature=0)
    assert resp.usage.completion_tokens <= 2
    if resp.usage.completion_tokens == 2:
        assert resp.choices[0].finish_reason == "length"


def test_streaming_gives_the_same_text_and_usage(client):
    whole = client.chat.completions.create(model="run-b", messages=CHAT, max_tokens=12, temperature=0)
    chunks = list(client.chat.completions.create(model="run-b", messages=CHAT, max_tokens=12, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [whole.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # really token by token


def test_stream_ends_with_done_and_disconnect_frees_the_model(server, client):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request("POST", "/v1/chat/completions", headers={"Content-Type": "application/json"},
                 body=json.dumps({"model": "run-a", "messages": CHAT, "max_tokens": 200, "stream": True}))
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
    assert resp.readline().startswith(b"data: {")
    conn.close()  # walk away mid-answer
    # The server is free again and still answers; a full stream ends with [DONE].
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request("POST", "/v1/chat/completions", headers={"Content-Type": "application/json"},
                 body=json.dumps({"model": "run-a", "messages": CHAT, "max_tokens": 3, "stream": True}))
    lines = [ln for ln in conn.getresponse().read().split(b"\n") if ln]
    conn.close()
    assert lines[-1] == b"data: [DONE]"


def test_unknown_model_is_a_clean_404_listing_the_models(server, client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4o", messages=CHAT)
    assert "base-model, run-a, run-b" in str(info.value)
    status, body = _raw(server, "POST", "/v1/chat/completions", json.dumps({"model": "nope", "messages": CHAT}))
    assert status == 404 and body["error"]["code"] == "model_not_found" and body["error"]["param"] == "model"


@pytest.mark.parametrize("body, param", [
    ("{not json", None),
    (json.dumps({"model": "run-a"}), "messages"),
    (json.dumps({"model": "run-a", "messages": [{"role": "wizard", "content": "x"}]}), "messages[0].role"),
    (json.dumps({"model": "run-a", "messages": CHAT, "n": 3}), "n"),
    (json.dumps({"model": "run-a", "messages": CHAT, "temperature": 9}), "temperature"),
    (json.dumps({"messages": CHAT}), "model"),
])
def test_bad_requests_are_400_with_the_field(server, body, param):
    status, data = _raw(server, "POST", "/v1/chat/completions", body)
    assert status == 400 and data["error"]["type"] == "invalid_request_error"
    assert data["error"]["param"] == param


def test_content_parts_and_stop_strings(client, server):
    whole = client.chat.completions.create(model="run-a", messages=CHAT, max_tokens=20, temperature=0)
    text = whole.choices[0].message.content
    parts = client.chat.completions.create(
        model="run-a", max_tokens=20, temperature=0,
        messages=[{"role": "user", "content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "world"}]}])
    assert parts.choices[0].message.content == text
    if len(text) >= 4:
        cut = client.chat.completions.create(model="run-a", messages=CHAT, max_tokens=20, temperature=0, stop=text[2:4])
        assert cut.choices[0].message.content == text[: text.find(text[2:4])]
        assert cut.choices[0].finish_reason == "stop"


def test_api_key_when_required(server):
    server.api_key = "s3cret"
    try:
        bad = openai.OpenAI(base_url=server.url, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        good = openai.OpenAI(base_url=server.url, api_key="s3cret", max_retries=0)
        assert len(good.models.list().data) == 3
    finally:
        server.api_key = None


def test_the_augmentation_client_works_against_serve(server):
    """curation's ProviderClient (AsyncOpenAI, concurrent requests) reads serve's answers and usage."""
    import asyncio

    from curation.augment.client import ProviderClient
    from curation.augment.providers import Provider

    provider = Provider(name="local", base_url=server.url, model="run-b", api_key_env="", concurrency=4,
                        timeout_s=60, max_attempts=1)

    async def ask_four():
        client = ProviderClient(provider)
        try:
            return await asyncio.gather(*(client.complete(CHAT, {"temperature": 0, "max_tokens": 8}) for _ in range(4)))
        finally:
            await client.aclose()

    replies = asyncio.run(ask_four())
    expected = server.session.generate(CHAT, adapter="run-b", max_new_tokens=8, temperature=0)
    for reply in replies:
        assert reply.ok, reply
        assert reply.content == expected.text and reply.usage_reported
        assert (reply.prompt_tokens, reply.completion_tokens) == (expected.prompt_tokens, expected.completion_tokens)
        assert reply.finish_reason == expected.finish_reason


def test_training_serve_module_runs_without_the_studio_and_errors_cleanly(tmp_path):
    """`python -m training.serve` (a GPU box has only the training package): a bad run dir is one line, exit 2."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    proc = subprocess.run([sys.executable, "-m", "training.serve", str(tmp_path / "missing")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no config.yaml" in proc.stderr and "Traceback" not in proc.stderr
