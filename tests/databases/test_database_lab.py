"""The database images in a lab: pushed to the lab registry, pulled and dumped on a node."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hostcraft.backup.databases import DatabaseSource, dump_database

pytestmark = pytest.mark.lab

LAB_NAME = os.environ.get("HOSTCRAFT_TEST_DATABASE_LAB", "hdb")
LAB_SUBNET = os.environ.get("HOSTCRAFT_TEST_DATABASE_LAB_SUBNET", "10.77.170.0/24")


@pytest.fixture(scope="module")
def database_lab() -> Iterator[Any]:
    """A one-node lab without a swarm, with the database images in its registry."""
    if os.geteuid() != 0:
        if os.environ.get("CI") or os.environ.get("HOSTCRAFT_REQUIRE_DOCKER"):
            pytest.fail("lab tests need root: run the suite with scripts/test as root")
        pytest.skip("lab tests need root")
    from hostcraft.lab import lab_down, lab_up

    lab_down(LAB_NAME)
    lab = lab_up(LAB_NAME, managers=1, workers=0, subnet=LAB_SUBNET, swarm=False)
    yield lab
    if not os.environ.get("HOSTCRAFT_KEEP_LAB"):
        lab_down(LAB_NAME)


def test_lab_node_runs_and_dumps_pushed_postgresql_image(database_lab: Any) -> None:
    from hostcraft.lab import node_client, push_database_images

    references = push_database_images(database_lab)
    assert references["postgresql"] == f"{database_lab.registry}/hostcraft/postgres:15"
    # A second push finds every image in the registry with the same recipe and does nothing.
    messages: list[str] = []
    push_database_images(database_lab, progress=messages.append)
    assert messages == []

    client = node_client(database_lab.nodes[0], timeout=300)
    client.images.pull(references["postgresql"])
    container = client.containers.run(
        references["postgresql"],
        name="hc-dbtest-lab-postgresql",
        environment={"POSTGRES_PASSWORD": "lab-Secret-1", "POSTGRES_DB": "shop"},
        detach=True,
    )
    try:
        source = DatabaseSource(engine="postgresql", password="lab-Secret-1", database="shop")
        deadline = time.monotonic() + 120
        while True:
            probe = container.exec_run(
                ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "shop", "-c", "SELECT 1"],
                environment={"PGPASSWORD": "lab-Secret-1"},
            )
            if probe.exit_code == 0:
                break
            assert time.monotonic() < deadline, container.logs().decode()[-2000:]
            time.sleep(0.5)
        sink = io.BytesIO()
        result = dump_database(client, container.id, source, sink)
        assert sink.getvalue().startswith(b"PGDMP")
        assert result.size_bytes == len(sink.getvalue())
    finally:
        container.remove(force=True, v=True)
        client.close()
