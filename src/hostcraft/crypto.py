"""Encryption at rest for key material (TLS keys, SSH keys, tokens, passwords).

The key comes from ``HOSTCRAFT_SECRET_KEY`` (a Fernet key, or any passphrase, which is
stretched with SHA-256), else from ``<data dir>/secret.key``, created with mode 0600 on first use.
Losing that key means losing every stored secret, so ``restore-self`` backups include it.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from hostcraft.errors import HostCraftError

KEY_FILE_NAME = "secret.key"


def _fernet_key(secret: str) -> bytes:
    raw = secret.encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except (ValueError, TypeError):
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())


def load_or_create_key(data_dir: Path, secret_key: str | None) -> bytes:
    """Return the Fernet key: from the setting when given, else from the key file."""
    if secret_key:
        return _fernet_key(secret_key)
    path = data_dir / KEY_FILE_NAME
    if path.exists():
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    # O_EXCL: two processes starting together must not each write a different key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


class SecretBox:
    """Encrypts and decrypts short secrets with one Fernet key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise HostCraftError(
                "failed to decrypt stored key material: the secret key differs from the one "
                "it was written with (check HOSTCRAFT_SECRET_KEY or the data directory's secret.key)"
            ) from exc
