"""A threshold applied in the Quality screen lands in WORKSPACE/rules.yaml; the command line and
every engine caller then use the same rules, so the app adds nothing a CLI user lacks."""
from __future__ import annotations

import json

import yaml

from curation import quality
from curation.samples import chat
from curation.store import insert_samples
from studio.cli import main


def test_cli_and_engine_use_the_workspace_rules_file(ws, ws_path, capsys):
    with ws.transaction():
        insert_samples(ws.con, [chat("Explain recursion.", "It calls itself on a smaller input until a base case."),
                                chat("Say hi.", "Hi")])
    assert quality.workspace_rules_path(ws) == quality.default_rules_path()
    data = yaml.safe_load(quality.default_rules_path().read_text(encoding="utf-8"))
    for rule in data["rules"]:
        if rule["id"] == "answer_too_short":
            rule["threshold"] = 50  # now the long answer is "too short" too
    (ws_path / "rules.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert quality.workspace_rules_path(ws) == ws_path / "rules.yaml"
    ws.close()
    assert main(["-w", str(ws_path), "quality", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rules_file"].endswith("rules.yaml") and "default" not in report["rules_file"]
    from curation.workspace import open_workspace

    with open_workspace(ws_path) as again:
        flagged = again.con.execute("SELECT count(DISTINCT sample_id) FROM quality_flags WHERE rule_id = 'answer_too_short'").fetchall()[0][0]
    assert flagged == 2
