from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hostcraft.crypto import SecretBox, load_or_create_key
from hostcraft.errors import HostCraftError


def test_generated_key_file_is_private_and_stable(tmp_path: Path) -> None:
    first = load_or_create_key(tmp_path, None)
    mode = stat.S_IMODE((tmp_path / "secret.key").stat().st_mode)
    assert mode == 0o600
    assert load_or_create_key(tmp_path, None) == first


def test_passphrase_setting_wins_over_key_file(tmp_path: Path) -> None:
    box = SecretBox(load_or_create_key(tmp_path, "correct horse battery staple"))
    assert not (tmp_path / "secret.key").exists()
    token = box.encrypt("-----BEGIN PRIVATE KEY-----")
    assert "PRIVATE" not in token
    assert box.decrypt(token) == "-----BEGIN PRIVATE KEY-----"


def test_wrong_key_gives_actionable_error(tmp_path: Path) -> None:
    token = SecretBox(load_or_create_key(tmp_path, "one")).encrypt("secret")
    with pytest.raises(HostCraftError, match="HOSTCRAFT_SECRET_KEY"):
        SecretBox(load_or_create_key(tmp_path, "two")).decrypt(token)
