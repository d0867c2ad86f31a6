"""A real S3 server for backup tests: moto in server mode, with IAM enforced.

Users and buckets are made while moto accepts unsigned requests; then authentication is
switched on, so wrong keys, missing buckets and a read-only key fail as they would on S3.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import httpx

READ_ONLY_ACTIONS = ["s3:Get*", "s3:List*", "s3:Head*"]


@dataclass
class S3Server:
    url: str
    process: subprocess.Popen[bytes]
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)

    def client(self, service: str = "s3"):  # type: ignore[no-untyped-def]
        access, secret = self.keys.get("admin", ("setup", "setup"))
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=access,
            aws_secret_access_key=secret,
        )

    def create_bucket(self, name: str | None = None) -> str:
        bucket = name or f"hc-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def start_s3_server(host: str, *, shared_key: tuple[str, str] | None = None) -> S3Server:
    """Start moto on ``host`` (loopback or the lab bridge) with users admin (s3:*) and reader (read-only).

    With ``shared_key`` authentication stays off and ``admin`` is that key: two servers then accept
    one key, as restic 0.14 needs to copy between two S3 repositories.
    """
    port = free_port(host)
    moto = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen(
        [str(moto), "-H", host, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    server = S3Server(url=f"http://{host}:{port}", process=process)
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{server.url}/moto-api/", timeout=1, trust_env=False)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or process.poll() is not None:
                server.stop()
                raise RuntimeError(f"moto_server did not start on {server.url}") from None
            time.sleep(0.1)
    if shared_key is not None:
        server.keys["admin"] = shared_key
        return server
    iam = server.client("iam")
    for user, actions in (("admin", ["s3:*"]), ("reader", READ_ONLY_ACTIONS)):
        iam.create_user(UserName=user)
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        }
        iam.put_user_policy(UserName=user, PolicyName="backup", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        server.keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
    # From here on every request must be signed by a known key and allowed by its policy.
    httpx.post(f"{server.url}/moto-api/reset-auth", content=b"0", trust_env=False).raise_for_status()
    return server
