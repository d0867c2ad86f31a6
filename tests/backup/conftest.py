from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.s3_server import S3Server, start_s3_server


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """moto on loopback, shared by the backup tests; each test makes its own bucket."""
    server = start_s3_server("127.0.0.1")
    yield server
    server.stop()
