"""Shared fixtures. Everything runs in temporary folders; nothing touches the user's workspace."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = ROOT / "sample_data"


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch, tmp_path):
    # No test may reach a real key, a real workspace or the user's HF cache.
    monkeypatch.delenv("STUDIO_WORKSPACE", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def ws_path(tmp_path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def fake():
    """A running fake OpenAI-compatible server (tests/llm_server.py) for the augmentation tests."""
    from tests.llm_server import FakeLLM

    server = FakeLLM().start()
    yield server
    server.stop()


@pytest.fixture
def ws(ws_path):
    from curation.workspace import open_workspace

    w = open_workspace(ws_path)
    yield w
    w.close()


@pytest.fixture
def train_ws(tmp_path, monkeypatch):
    """The studio's small workspace with a split `v1`, for the Train screen and launch tests."""
    from tests._studio_ws import make_workspace
    from tests.training_fixtures import write_split

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    ws = make_workspace(tmp_path / "ws")
    write_split(ws / "splits" / "v1")
    return ws
