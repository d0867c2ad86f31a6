from __future__ import annotations

import pytest

from hostcraft.docker.endpoints import Credentials, check_credentials, parse_endpoint
from hostcraft.errors import ValidationError


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("unix:///var/run/docker.sock", "unix:///var/run/docker.sock"),
        ("tcp://10.0.0.5:2376", "tcp://10.0.0.5:2376"),
        ("ssh://deploy@node-1.example", "ssh://deploy@node-1.example:22"),
        ("ssh://deploy@node-1.example:2222", "ssh://deploy@node-1.example:2222"),
    ],
)
def test_endpoint_parses_and_normalises(url: str, normalised: str) -> None:
    assert parse_endpoint(url).url == normalised


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host", "unsupported endpoint scheme 'ftp'"),
        ("host:2375", "unsupported endpoint scheme"),
        ("unix://relative.sock", "expected unix:///absolute/path"),
        ("tcp://host", "the port is missing"),
        ("tcp://host:99999", "invalid endpoint"),
        ("ssh://host", "expected ssh://user@host"),
        ("tcp://host:2376/path", "has no path or query"),
    ],
)
def test_bad_endpoint_names_the_field(url: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_endpoint(url)
    assert caught.value.field == "endpoint"
    assert message in caught.value.message


def test_tcp_without_tls_is_rejected() -> None:
    with pytest.raises(ValidationError) as caught:
        check_credentials(parse_endpoint("tcp://h:2376"), Credentials(tls_ca="x"))
    assert caught.value.field == "tlsCert"
    assert "tlsCert, tlsKey missing" in caught.value.message


def test_ssh_without_host_key_is_rejected() -> None:
    with pytest.raises(ValidationError) as caught:
        check_credentials(parse_endpoint("ssh://u@h"), Credentials(ssh_private_key="k"))
    assert caught.value.field == "sshKnownHostKey"
