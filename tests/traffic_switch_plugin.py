"""A traffic switch plug-in for tests, registered the way a DNS provider plug-in would be.

``install_plugin`` writes an installed distribution's metadata (a ``.dist-info`` folder with
``entry_points.txt``) into a folder on ``sys.path``, so ``importlib.metadata`` finds the entry
points exactly as it finds those of a package installed with pip.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from hostcraft.services.traffic_switch import ENTRY_POINT_GROUP, SwitchEvent, SwitchResult

ENTRY_POINTS = f"""[{ENTRY_POINT_GROUP}]
example-dns = tests.traffic_switch_plugin:RecordFileSwitch
broken = tests.traffic_switch_plugin:no_such_factory
"""


class RecordFileSwitch:
    """Point ``record`` at the target region by appending a JSON line to ``path``, a stand-in zone."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        record, path = config.get("record"), config.get("path")
        if not isinstance(record, str) or not record:
            raise ValueError(f"invalid record {record!r}: expected a DNS name such as 'web.example.com'")
        if not isinstance(path, str) or not path:
            raise ValueError(f"invalid path {path!r}: expected a file path")
        self.record = record
        self.path = Path(path)

    def switch(self, event: SwitchEvent) -> SwitchResult:
        with self.path.open("a") as records:
            records.write(json.dumps({"record": self.record, "region": event.to_region}) + "\n")
        return SwitchResult(
            switch_type="example-dns",
            target=self.record,
            attempts=1,
            message=f"{self.record} points at {event.to_region}",
        )


def install_plugin(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Install this module's entry points as distribution ``hostcraft-example-dns`` for one test."""
    dist_info = directory / "hostcraft_example_dns-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: hostcraft-example-dns\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(directory))
