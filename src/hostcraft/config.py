"""Settings read from the environment (``HOSTCRAFT_*``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from croniter import croniter
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "hostcraft"


class Settings(BaseSettings):
    """Control-plane settings; every field can be set as ``HOSTCRAFT_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="HOSTCRAFT_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = None
    secret_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    server_health_interval_seconds: float = Field(default=30.0, gt=0)
    engine_timeout_seconds: float = Field(default=10.0, gt=0)
    engine_enabled: bool = True
    probe_image: str = "hostcraft/probe:1"
    local_engine: str = "unix:///var/run/docker.sock"
    health_history_per_server: int = Field(default=2880, ge=10)
    # Application probes and the recovery ladder.
    probes_enabled: bool = True
    probe_max_concurrency: int = Field(default=500, ge=1)
    probe_refresh_seconds: float = Field(default=5.0, gt=0)
    recovery_interval_seconds: float = Field(default=5.0, gt=0)
    probe_raw_retention_days: int = Field(default=7, ge=1)
    probe_hourly_retention_days: int = Field(default=400, ge=1)
    incident_deployment_window_seconds: float = Field(default=1800.0, ge=0)
    # Alerts: how often the engine sends pending messages, and how many one channel may get.
    alert_delivery_interval_seconds: float = Field(default=5.0, gt=0)
    alert_rate_limit_messages: int = Field(default=10, ge=1)
    alert_rate_limit_window_seconds: float = Field(default=300.0, gt=0)
    alert_retry_initial_seconds: float = Field(default=15.0, gt=0)
    alert_retry_max_seconds: float = Field(default=900.0, gt=0)
    alert_delivery_max_attempts: int = Field(default=20, ge=1)
    # A server alerts when its engine's data root has less than this fraction free.
    alert_disk_free_ratio: float = Field(default=0.10, gt=0, lt=1)
    # Consecutive unreachable health checks before a node_unreachable alert opens.
    alert_unreachable_checks: int = Field(default=2, ge=1)
    # /metrics needs a bearer token (any role) unless this is true.
    metrics_public: bool = False
    # Backups.
    restic_binary: str = "restic"
    # Image of backup and restore jobs on swarm nodes: restic and a POSIX shell (busybox).
    backup_image: str = "hostcraft/restic:0.14"
    backup_job_timeout_seconds: float = Field(default=3600.0, gt=0)
    backup_node_concurrency: int = Field(default=1, ge=1)
    # Scheduled verification, run by the engine: 0 turns a kind off.
    backup_check_interval_hours: float = Field(default=168.0, ge=0)
    backup_check_read_data_percent: float = Field(default=5.0, gt=0, le=100)
    backup_restore_test_interval_hours: float = Field(default=168.0, ge=0)
    # Self-backup of the store and the secret key: a cron expression in UTC, and the
    # destination (id or name) whose restic repository receives it. No schedule, no self-backup.
    self_backup_schedule: str | None = None
    self_backup_destination: str | None = None
    # Disaster recovery: the engine's DR loop (fences, standbys, automatic failover, drills), and
    # the region this control plane runs in when it is one of the managed regions (code).
    dr_interval_seconds: float = Field(default=5.0, gt=0)
    dr_standby_interval_seconds: float = Field(default=60.0, gt=0)
    control_plane_region: str | None = None

    @field_validator("self_backup_schedule")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value and not croniter.is_valid(value):
            raise ValueError(f"invalid cron expression {value!r}: expected five fields, e.g. '0 */6 * * *'")
        return value or None

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'hostcraft.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
