"""The API key lives only in the environment: never in studio.yaml, the DuckDB file, logs,
exports or command output. And `studio providers` manages providers without ever taking a key."""
from __future__ import annotations

import pytest

from tests.augment_helpers import FAKE_KEY, FAKE_KEY_ENV, SAMPLES, add_samples, configure


def _all_bytes(root):
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path, path.read_bytes()


def test_key_never_reaches_workspace_files_logs_or_exports(ws, fake, monkeypatch, capsys, caplog):
    from curation import export, review
    from curation.augment.jobs import Spec, run
    from studio.cli import main

    ids = add_samples(ws, SAMPLES + [("Broken one #fault=refusal#", "x")])
    configure(ws, fake, monkeypatch)
    caplog.set_level("DEBUG")
    fake.fail_next("500")  # a failure too, so error paths write their details
    run(ws, Spec(op="answers", n=1))
    run(ws, Spec(op="judge"))
    review.approve(ws, ids)
    export.export_split(ws, "v1", val=0.25, include="approved")
    root = ws.root
    ws.close()
    assert main(["augment", "jobs", "-w", str(root)]) == 0
    assert main(["providers", "list", "--json", "-w", str(root)]) == 0
    assert main(["augment", "resume", "-w", str(root)]) in (0, 2)
    # the key was really used: the server saw it
    assert fake.auth_headers == {f"Bearer {FAKE_KEY}"}
    key = FAKE_KEY.encode()
    files = dict(_all_bytes(root))
    assert any(p.name == "studio.duckdb" for p in files) and any(p.name == "studio.yaml" for p in files)
    assert any(p.name == "manifest.json" for p in files)
    leaks = [str(p) for p, data in files.items() if key in data]
    assert leaks == []
    # the variable's name is in studio.yaml (that is how the key is found), its value is not
    assert FAKE_KEY_ENV.encode() in files[root / "studio.yaml"]
    out = capsys.readouterr()
    assert FAKE_KEY not in out.out + out.err
    assert FAKE_KEY not in caplog.text


def test_providers_cli_add_list_remove(ws_path, capsys, monkeypatch):
    from studio.cli import main

    w = ["-w", str(ws_path)]
    assert main(["providers", "add", "local", "--base-url", "http://127.0.0.1:8000/v1", "--model", "qwen2.5-7b",
                 "--api-key-env", "LOCAL_KEY", "--input-price", "0.5", "--output-price", "1.5", "--rpm", "600", *w]) == 0
    monkeypatch.setenv("LOCAL_KEY", "sk-local-secret-value")
    assert main(["providers", "list", *w]) == 0
    shown = capsys.readouterr().out
    assert "local: qwen2.5-7b at http://127.0.0.1:8000/v1; key from $LOCAL_KEY (set)" in shown
    assert "sk-local-secret-value" not in shown
    # a key pasted where the variable name belongs is refused, not saved
    assert main(["providers", "add", "oops", "--base-url", "https://x/v1", "--model", "m",
                 "--api-key-env", "sk-proj-abc123", *w]) == 2
    assert "never put the key itself" in capsys.readouterr().err
    assert "sk-proj" not in (ws_path / "studio.yaml").read_text()
    assert main(["providers", "add", "local", "--base-url", "http://x/v1", "--model", "m", *w]) == 2  # exists
    assert main(["providers", "remove", "local", *w]) == 0
    assert main(["providers", "list", "--json", *w]) == 0
    assert capsys.readouterr().out.strip().endswith("[]")


def test_without_providers_the_openai_env_variables_are_used(ws, fake, monkeypatch):
    from curation.augment.jobs import Spec, run
    from curation.errors import StudioError

    add_samples(ws, SAMPLES[:1])
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-key-123")
    with pytest.raises(StudioError, match="--model"):
        run(ws, Spec(op="judge"))
    result = run(ws, Spec(op="judge", model="env-model"))
    assert result.provider == "openai-env" and result.judged == 1
    assert fake.auth_headers == {"Bearer sk-env-key-123"}
    assert next(iter(fake.bodies.values()))["model"] == "env-model"
