"""``hostcraft dr`` against a real ``hostcraft up`` process, with regions that have no engine.

The failover paths that move apps run on two lab regions in ``tests/dr``. Here the CLI's own
behaviour is checked: plans, a failover that stops at pre-flight, runs and the report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.api.test_cli import Control, control  # noqa: F401

pytestmark = pytest.mark.docker


def test_cli_plans_records_and_reports_failovers(control: Control, tmp_path: Path) -> None:  # noqa: F811
    control.start()
    assert control.run("region", "add", "Home", "--code", "home").returncode == 0
    added = control.run(
        "region", "add", "Far", "--code", "far", "--priority", "2", "--registry", "127.0.0.1:5999"
    )
    assert added.returncode == 0, added.stderr
    document = tmp_path / "web.json"
    document.write_text(
        json.dumps(
            {"name": "web", "image": "127.0.0.1:5998/web:1", "region": "home", "dr": {"regions": ["far"]}}
        )
    )
    assert control.run("app", "create", "-f", str(document)).returncode == 0

    plan = control.json("dr", "drill", "web")
    no_target = control.run("dr", "failover", "web")
    failover = control.run("dr", "failover", "web", "--to", "far")
    runs = control.json("dr", "runs", "web")
    report = control.json("dr", "report")

    assert plan["targetRegion"] == "far"
    assert plan["ready"] is False
    assert any("far" in problem for problem in plan["problems"])
    assert no_target.returncode == 1
    assert "no DR region of web can take it" in no_target.stderr
    assert failover.returncode == 1
    assert "pre-flight failed" in failover.stdout + failover.stderr
    assert [(run["kind"], run["status"]) for run in runs] == [("failover", "failed")]
    assert [step["name"] for step in runs[0]["steps"]] == ["preflight"]
    entry = report["applications"][0]
    assert entry["application"] == "default/web"
    assert entry["homeRegion"] == "home"
    assert entry["lastFailover"]["result"] == "fail"
    assert report["controlPlane"]["region"] == "default"
    assert report["controlPlane"]["warnings"] == []


def test_cli_failover_without_policy_fails_with_reason(control: Control, tmp_path: Path) -> None:  # noqa: F811
    control.start()
    assert control.run("region", "add", "Home", "--code", "home").returncode == 0
    document = tmp_path / "plain.json"
    document.write_text(json.dumps({"name": "plain", "image": "127.0.0.1:5998/web:1", "region": "home"}))
    assert control.run("app", "create", "-f", str(document)).returncode == 0

    result = control.run("dr", "failover", "plain")

    assert result.returncode == 1
    assert "has no DR policy" in result.stdout + result.stderr
