"""Backup destinations through the API, against real restic and a real S3 server (moto, IAM enforced)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api
from tests.s3_server import S3Server, free_port


def s3_destination(
    api: Api, s3: S3Server, *, key: str = "admin", bucket: str | None = None, **fields: Any
) -> dict[str, Any]:
    access, secret = s3.keys.get(key, (key, key))
    body = {
        "name": fields.pop("name", "offsite"),
        "kind": "s3",
        "endpoint": s3.url,
        "bucket": bucket or s3.create_bucket(),
        "prefix": "hostcraft/test",
        "accessKey": access,
        "secretKey": secret,
        **fields,
    }
    response = api.post("/api/backup-destinations", body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def local_destination(api: Api, path: Path, name: str = "disk") -> dict[str, Any]:
    response = api.post("/api/backup-destinations", {"name": name, "kind": "local", "path": str(path)})
    assert response.status_code == 201, response.text
    return dict(response.json())


def run_test(api: Api, destination: dict[str, Any]) -> dict[str, Any]:
    response = api.post(f"/api/backup-destinations/{destination['id']}/test")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_s3_destination_test_passes(api: Api, s3: S3Server) -> None:
    destination = s3_destination(api, s3)
    report = run_test(api, destination)
    assert report["ok"] is True, report
    assert [step["step"] for step in report["steps"]] == [
        "connect",
        "initialise",
        "open",
        "write",
        "list",
        "read",
        "delete",
    ]
    shown = api.get(f"/api/backup-destinations/{destination['id']}").json()
    assert shown["lastTestOk"] is True
    assert "secretKey" not in shown and "password" not in shown
    assert s3.keys["admin"][1] not in str(shown)


def test_local_destination_test_passes(api: Api, tmp_path: Path) -> None:
    report = run_test(api, local_destination(api, tmp_path / "repo"))
    assert report["ok"] is True, report
    assert (tmp_path / "repo" / "config").is_file()


def test_bad_credentials_reported(api: Api, s3: S3Server) -> None:
    report = run_test(api, s3_destination(api, s3, key="nobody"))
    assert report["ok"] is False
    assert report["reason"] == "bad_credentials"


def test_wrong_secret_reported_as_bad_credentials(api: Api, s3: S3Server) -> None:
    destination = s3_destination(api, s3)
    body = {**destination, "secretKey": "not-the-secret"}
    for key in (
        "id",
        "hasSecretKey",
        "repository",
        "lastTestAt",
        "lastTestOk",
        "lastTestReason",
        "createdAt",
        "updatedAt",
    ):
        body.pop(key)
    assert api.put(f"/api/backup-destinations/{destination['id']}", body).status_code == 200
    assert run_test(api, destination)["reason"] == "bad_credentials"


def test_missing_bucket_reported(api: Api, s3: S3Server) -> None:
    report = run_test(api, s3_destination(api, s3, bucket="no-such-bucket"))
    assert report["ok"] is False
    assert report["reason"] == "missing_bucket"
    assert "no-such-bucket" in report["message"]


def test_unreachable_endpoint_reported(api: Api, s3: S3Server) -> None:
    closed = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    report = run_test(api, s3_destination(api, s3, endpoint=closed, bucket="any-bucket"))
    assert report["ok"] is False
    assert report["reason"] == "unreachable"
    assert [step["step"] for step in report["steps"]] == ["connect"]


def test_read_only_key_reported(api: Api, s3: S3Server) -> None:
    bucket = s3.create_bucket()
    writer = s3_destination(api, s3, bucket=bucket, name="writer")
    assert run_test(api, writer)["ok"] is True
    # Each destination has its own repository password, so the reader gets its own prefix.
    reader = s3_destination(api, s3, key="reader", bucket=bucket, name="reader", prefix="reader")
    report = run_test(api, reader)
    assert report["ok"] is False
    assert report["reason"] == "read_only"
    assert report["steps"][-1]["step"] == "initialise"


def test_export_key_needs_admin_and_opens_repository(api: Api, tmp_path: Path) -> None:
    destination = local_destination(api, tmp_path / "repo")
    assert run_test(api, destination)["ok"] is True
    assert (
        api.post(f"/api/backup-destinations/{destination['id']}/export-key", role="operator").status_code
        == 403
    )
    exported = api.post(f"/api/backup-destinations/{destination['id']}/export-key").json()
    import subprocess

    opened = subprocess.run(
        ["restic", "-r", str(tmp_path / "repo"), "--no-cache", "cat", "config"],
        env={"RESTIC_PASSWORD": exported["password"], "PATH": "/usr/bin:/bin"},
        capture_output=True,
        check=False,
    )
    assert opened.returncode == 0, opened.stderr


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Bad Name", "kind": "local", "path": "/srv/b"}, "name"),
        ({"name": "d", "kind": "local", "path": "relative/path"}, "path"),
        (
            {
                "name": "d",
                "kind": "s3",
                "endpoint": "ftp://x",
                "bucket": "abc",
                "accessKey": "a",
                "secretKey": "b",
            },
            "endpoint",
        ),
        (
            {
                "name": "d",
                "kind": "s3",
                "endpoint": "http://127.0.0.1:9",
                "bucket": "A_",
                "accessKey": "a",
                "secretKey": "b",
            },
            "bucket",
        ),
        (
            {"name": "d", "kind": "s3", "endpoint": "http://127.0.0.1:9", "bucket": "abc", "secretKey": "b"},
            "accessKey",
        ),
        ({"name": "d", "kind": "nfs", "path": "/srv"}, "kind"),
    ],
)
def test_invalid_destination_rejected(api: Api, body: dict[str, Any], field: str) -> None:
    response = api.post("/api/backup-destinations", body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["field"] == field


def test_destination_with_backups_cannot_be_deleted(api: Api, tmp_path: Path) -> None:
    destination = local_destination(api, tmp_path / "repo")
    assert api.delete(f"/api/backup-destinations/{destination['id']}").status_code == 204
    assert api.get(f"/api/backup-destinations/{destination['id']}").status_code == 404
