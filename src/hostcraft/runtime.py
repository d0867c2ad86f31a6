"""The objects one HostCraft process shares: settings, store and the key for secrets at rest."""

from __future__ import annotations

from dataclasses import dataclass

from hostcraft.config import Settings
from hostcraft.crypto import SecretBox, load_or_create_key
from hostcraft.store.db import Store


@dataclass
class Runtime:
    settings: Settings
    store: Store
    secrets: SecretBox

    @classmethod
    def create(cls, settings: Settings, *, migrate: bool = True) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(settings.resolved_database_url())
        if migrate:
            store.migrate()
        key = load_or_create_key(settings.data_dir, settings.secret_key)
        return cls(settings=settings, store=store, secrets=SecretBox(key))

    def close(self) -> None:
        self.store.dispose()
