"""Tables of the HostCraft store. Every schema change comes with an Alembic migration."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: pass an aware UTC datetime")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class ApiToken(Base):
    __tablename__ = "api_tokens"
    # AUTOINCREMENT: SQLite would otherwise reuse deleted ids, which events refer to.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class Region(Base):
    __tablename__ = "regions"
    # AUTOINCREMENT: SQLite would otherwise reuse deleted ids, which events refer to.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)
    priority: Mapped[int] = mapped_column(Integer)
    # The manager count the operator asked for at swarm init; the cluster report compares with it.
    target_managers: Mapped[int | None] = mapped_column(Integer, default=None)
    # The image registry ("host:port") the region's nodes pull from; a failover copies images there.
    image_registry: Mapped[str | None] = mapped_column(String(256), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    servers: Mapped[list[Server]] = relationship(back_populates="region")


class Server(Base):
    __tablename__ = "servers"
    # AUTOINCREMENT: SQLite would otherwise reuse deleted ids, which events refer to.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    endpoint: Mapped[str] = mapped_column(String(512))
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"))
    failure_domain: Mapped[str | None] = mapped_column(String(128), default=None)
    # Key material, Fernet-encrypted; never serialised into a response.
    tls_ca_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    tls_cert_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    tls_key_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    ssh_private_key_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    ssh_known_host_key: Mapped[str | None] = mapped_column(Text, default=None)
    # Facts recorded by the last successful validation.
    engine_version: Mapped[str | None] = mapped_column(String(64), default=None)
    api_version: Mapped[str | None] = mapped_column(String(16), default=None)
    os: Mapped[str | None] = mapped_column(String(256), default=None)
    cpus: Mapped[int | None] = mapped_column(Integer, default=None)
    memory_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    swarm_state: Mapped[str | None] = mapped_column(String(32), default=None)
    swarm_node_id: Mapped[str | None] = mapped_column(String(64), default=None)
    swarm_role: Mapped[str | None] = mapped_column(String(16), default=None)
    swarm_availability: Mapped[str | None] = mapped_column(String(16), default=None)
    swarm_cluster_id: Mapped[str | None] = mapped_column(String(64), default=None)
    swarm_node_address: Mapped[str | None] = mapped_column(String(64), default=None)
    validated_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    region: Mapped[Region] = relationship(back_populates="servers")


class ServerHealthCheck(Base):
    """One measurement of a server by the health loop; the newest one is the server's health."""

    __tablename__ = "server_health_checks"
    __table_args__ = (
        Index("ix_server_health_server_checked", "server_id", "checked_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    server_id: Mapped[int] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"))
    checked_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    reachable: Mapped[bool] = mapped_column(Boolean)
    latency_ms: Mapped[float | None] = mapped_column(Float, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    swarm: Mapped[dict[str, Any]] = mapped_column(default=dict)
    resources: Mapped[dict[str, Any]] = mapped_column(default=dict)
    peers: Mapped[list[Any]] = mapped_column(default=list)


class Event(Base):
    """Append-only audit record of an action, by a person or by the engine."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_target", "target_type", "target_id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64), default=None)
    target_name: Mapped[str | None] = mapped_column(String(256), default=None)
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Application(Base):
    """Desired state of one Swarm service; ``spec`` is the application document without secret values."""

    __tablename__ = "applications"
    __table_args__ = (UniqueConstraint("project", "name"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63))
    project: Mapped[str] = mapped_column(String(63))
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"))
    spec: Mapped[dict[str, Any]] = mapped_column()
    # JSON {secret name: value}, Fernet-encrypted; never serialised into a response.
    secret_values_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    service_id: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    region: Mapped[Region] = relationship()


class Deployment(Base):
    """One attempt to move an application to a spec, with the image pinned by digest."""

    __tablename__ = "deployments"
    __table_args__ = (Index("ix_deployments_app", "application_id", "id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column()
    image: Mapped[str] = mapped_column(String(512))
    image_digest_reference: Mapped[str | None] = mapped_column(String(600), default=None)
    rollback_of: Mapped[int | None] = mapped_column(Integer, default=None)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    corrections: Mapped[list[Any]] = mapped_column(default=list)
    actor: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class AppVolume(Base):
    """A named volume of an application and, for node-local drivers, the node that stores it."""

    __tablename__ = "app_volumes"
    __table_args__ = (UniqueConstraint("application_id", "name"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    swarm_name: Mapped[str] = mapped_column(String(200))
    driver: Mapped[str] = mapped_column(String(64))
    node_id: Mapped[str | None] = mapped_column(String(64), default=None)
    node_hostname: Mapped[str | None] = mapped_column(String(256), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AppHealth(Base):
    """The probe state of one application, kept so that a restart of HostCraft resumes it."""

    __tablename__ = "app_health"

    application_id: Mapped[int] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16), default="unknown")  # unknown | up | down
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    consecutive_successes: Mapped[int] = mapped_column(Integer, default=0)
    failing_since: Mapped[dt.datetime | None] = mapped_column(default=None)
    recovering_since: Mapped[dt.datetime | None] = mapped_column(default=None)
    monitored_since: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_probe_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_ok: Mapped[bool | None] = mapped_column(Boolean, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    last_latency_ms: Mapped[float | None] = mapped_column(Float, default=None)
    source: Mapped[str] = mapped_column(String(16), default="probe")  # probe | swarm


class ProbeResult(Base):
    """One raw probe result; compacted into ``ProbeHourly`` after the raw retention period."""

    __tablename__ = "probe_results"
    __table_args__ = (
        Index("ix_probe_results_app_at", "application_id", "at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column()
    ok: Mapped[bool] = mapped_column(Boolean)
    latency_ms: Mapped[float | None] = mapped_column(Float, default=None)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(String(500), default=None)
    node: Mapped[str | None] = mapped_column(String(256), default=None)


class ProbeHourly(Base):
    """Probe results of one application in one hour, aggregated."""

    __tablename__ = "probe_hourly"
    __table_args__ = (UniqueConstraint("application_id", "hour"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"))
    hour: Mapped[dt.datetime] = mapped_column()
    probes: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    latency_sum_ms: Mapped[float] = mapped_column(Float, default=0.0)
    latency_max_ms: Mapped[float | None] = mapped_column(Float, default=None)


class Incident(Base):
    """A period during which an application failed its health checks.

    ``began_at`` is the first failure of the streak that opened it and ``ended_at`` the first
    success of the streak that resolved it: the downtime that uptime figures count.
    """

    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_app", "application_id", "began_at"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | resolved
    began_at: Mapped[dt.datetime] = mapped_column()
    opened_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    source: Mapped[str] = mapped_column(String(16), default="probe")
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    deployment_id: Mapped[int | None] = mapped_column(Integer, default=None)
    began_after_deployment: Mapped[bool] = mapped_column(Boolean, default=False)
    recovery_status: Mapped[str] = mapped_column(
        String(16), default="none"
    )  # none | acting | recovered | failed
    recovery_message: Mapped[str | None] = mapped_column(Text, default=None)


class RecoveryAction(Base):
    """One rung of the recovery ladder taken for an incident."""

    __tablename__ = "recovery_actions"
    __table_args__ = (
        Index("ix_recovery_actions_app_at", "application_id", "at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"))
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    rung: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    deployment_id: Mapped[int | None] = mapped_column(Integer, default=None)
    outcome: Mapped[str] = mapped_column(String(16), default="started")  # started | failed


class EngineLease(Base):
    """The lease that lets exactly one HostCraft process run the engine loops."""

    __tablename__ = "engine_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[dt.datetime] = mapped_column()


class Alert(Base):
    """One alert per cause: opened once, counted while it recurs, resolved once.

    ``cause`` names what is wrong ("app:12:health", "region:3:quorum"); at most one alert per
    cause is open at a time, so a recurring failure never produces a storm.
    """

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_cause_status", "cause", "status"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trigger: Mapped[str] = mapped_column(String(40))
    cause: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(16), default="critical")
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | resolved | suppressed
    title: Mapped[str] = mapped_column(String(300))
    message: Mapped[str] = mapped_column(Text, default="")
    resolve_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    application_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    region_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    server_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    opened_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # "alert": opened, deduplicated by cause and resolved; "notice": a one-off message, nothing to resolve.
    kind: Mapped[str] = mapped_column(String(16), default="alert")


class AlertChannel(Base):
    """A destination for alert messages: one Apprise URL, stored encrypted and never returned."""

    __tablename__ = "alert_channels"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # The Apprise URL, Fernet-encrypted, because it contains tokens and passwords.
    url_encrypted: Mapped[str] = mapped_column(Text)
    service: Mapped[str] = mapped_column(String(64))
    url_masked: Mapped[str] = mapped_column(String(300))
    # Empty list: every trigger.
    triggers: Mapped[list[Any]] = mapped_column(default=list)
    min_severity: Mapped[str] = mapped_column(String(16), default="info")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AlertDelivery(Base):
    """The outbox: one message (open, resolve or notice) of one alert to one channel.

    Rows are written in the transaction that opens or resolves the alert and sent later, outside
    it, by ``deliver_pending``. ``status`` is pending | sent | failed; a pending row with
    ``next_attempt_at`` in the future is waiting for a retry or for the channel's rate limit.
    """

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "channel_id", "kind"),
        Index("ix_alert_deliveries_status_next", "status", "next_attempt_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("alert_channels.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    # Set when this message went out inside a digest because the channel hit its rate limit.
    digest_of: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class MaintenanceWindow(Base):
    """A time during which an application or a region raises no alerts and gets no recovery.

    Either recurring (``cron`` in ``timezone`` plus ``duration_minutes``) or one-off
    (``starts_at`` to ``ends_at``). Exactly one of ``application_id`` and ``region_id`` is set.
    """

    __tablename__ = "maintenance_windows"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int | None] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), default=None, index=True
    )
    region_id: Mapped[int | None] = mapped_column(
        ForeignKey("regions.id", ondelete="CASCADE"), default=None, index=True
    )
    reason: Mapped[str] = mapped_column(String(300), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    cron: Mapped[str | None] = mapped_column(String(120), default=None)
    duration_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    starts_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    ends_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ClusterState(Base):
    """The newest quorum assessment of a region's swarm, kept for /metrics and alerts."""

    __tablename__ = "cluster_states"

    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="CASCADE"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    managers: Mapped[int] = mapped_column(Integer)
    reachable_managers: Mapped[int] = mapped_column(Integer)
    quorum: Mapped[int] = mapped_column(Integer)
    fault_tolerance: Mapped[int] = mapped_column(Integer)
    checked_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class BackupDestination(Base):
    """A restic repository location: a local path or an S3 bucket and prefix.

    The repository password and the S3 secret key are Fernet-encrypted and never serialised
    into a response; without the password no snapshot in the repository can be read.
    """

    __tablename__ = "backup_destinations"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(8))  # local | s3
    path: Mapped[str | None] = mapped_column(String(1024), default=None)
    endpoint: Mapped[str | None] = mapped_column(String(512), default=None)
    bucket: Mapped[str | None] = mapped_column(String(63), default=None)
    prefix: Mapped[str] = mapped_column(String(512), default="")
    s3_region: Mapped[str | None] = mapped_column(String(64), default=None)
    path_style: Mapped[bool] = mapped_column(Boolean, default=True)
    access_key: Mapped[str | None] = mapped_column(String(256), default=None)
    secret_key_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    password_encrypted: Mapped[str] = mapped_column(Text)
    # The HostCraft region the storage belongs to; replication copies to other regions' destinations.
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id", ondelete="SET NULL"), default=None)
    # Ids of the destinations every succeeded backup written here is copied to (``restic copy``).
    replicate_to: Mapped[list[Any]] = mapped_column(default=list)
    last_test_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_test_ok: Mapped[bool | None] = mapped_column(Boolean, default=None)
    last_test_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Backup(Base):
    """One backup run: kind, status ``queued → running → succeeded | failed | expired``, snapshots.

    ``parts`` lists one entry per restic snapshot written (``{"part": "config" | "volume:NAME" |
    "database:NAME", "snapshotId", "bytesAdded", "totalBytes", "node"}``). Only a succeeded
    backup's snapshots count as good; a failed backup's snapshots are forgotten.
    """

    __tablename__ = "backups"
    __table_args__ = (
        Index("ix_backups_app_status", "application_id", "status"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int | None] = mapped_column(
        ForeignKey("applications.id", ondelete="SET NULL"), default=None
    )
    application_name: Mapped[str | None] = mapped_column(String(128), default=None)
    destination_id: Mapped[int] = mapped_column(ForeignKey("backup_destinations.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(16))  # config | volume | database | full | self
    status: Mapped[str] = mapped_column(String(16), default="queued")
    trigger: Mapped[str] = mapped_column(String(16), default="manual")  # manual | schedule | safety
    actor: Mapped[str] = mapped_column(String(128))
    parts: Mapped[list[Any]] = mapped_column(default=list)
    bytes_added: Mapped[int | None] = mapped_column(BigInteger, default=None)
    total_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    duration_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    node: Mapped[str | None] = mapped_column(String(256), default=None)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    checked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    check_status: Mapped[str | None] = mapped_column(String(16), default=None)
    restore_tested_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    restore_test_status: Mapped[str | None] = mapped_column(String(16), default=None)
    replicated_to: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class BackupRestore(Base):
    """One restore of a backup to a server, in mode ``replace`` or ``new``."""

    __tablename__ = "backup_restores"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    backup_id: Mapped[int] = mapped_column(ForeignKey("backups.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default="running")
    target_server_id: Mapped[int | None] = mapped_column(Integer, default=None)
    target: Mapped[dict[str, Any]] = mapped_column(default=dict)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    actor: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class BackupVerification(Base):
    """One verification: a ``check`` of a destination's repository or a ``restore_test`` of a backup.

    ``status`` is ``passed`` or ``failed``; ``details`` lists what each part's test compared.
    """

    __tablename__ = "backup_verifications"
    __table_args__ = (
        Index("ix_backup_verifications_backup", "backup_id"),
        Index("ix_backup_verifications_kind_time", "kind", "finished_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # check | restore_test
    backup_id: Mapped[int | None] = mapped_column(ForeignKey("backups.id", ondelete="CASCADE"), default=None)
    application_id: Mapped[int | None] = mapped_column(
        ForeignKey("applications.id", ondelete="SET NULL"), default=None
    )
    destination_id: Mapped[int | None] = mapped_column(
        ForeignKey("backup_destinations.id", ondelete="CASCADE"), default=None
    )
    status: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(16), default="manual")  # manual | schedule
    message: Mapped[str | None] = mapped_column(Text, default=None)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class BackupSchedule(Base):
    """Due work of the backup loop: ``key`` is ``app:<id>``, ``check:<destination id>`` or ``self``."""

    __tablename__ = "backup_schedules"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    expression: Mapped[str] = mapped_column(String(128))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    next_run_at: Mapped[dt.datetime] = mapped_column()
    last_run_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class BackupReplica(Base):
    """The copy of one backup's snapshots in another destination (``restic copy``).

    ``status`` is ``pending``, ``succeeded`` or ``failed``; ``parts`` lists the copied snapshots
    as ``{"part", "snapshotId"}`` with the ids they have in the replica repository.
    """

    __tablename__ = "backup_replicas"
    __table_args__ = (
        UniqueConstraint("backup_id", "destination_id", name="uq_backup_replicas_backup_destination"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    backup_id: Mapped[int] = mapped_column(ForeignKey("backups.id", ondelete="CASCADE"), index=True)
    destination_id: Mapped[int] = mapped_column(ForeignKey("backup_destinations.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    parts: Mapped[list[Any]] = mapped_column(default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    copied_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SelfBackup(Base):
    """One backup of HostCraft's own store and secret key into a destination's repository.

    ``parts`` lists ``{"part": "store" | "key", "snapshotId", "filename", "bytes"}``.
    """

    __tablename__ = "self_backups"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    destination_id: Mapped[int | None] = mapped_column(
        ForeignKey("backup_destinations.id", ondelete="SET NULL"), default=None
    )
    destination_name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | succeeded | failed
    trigger: Mapped[str] = mapped_column(String(16), default="manual")  # manual | schedule
    actor: Mapped[str] = mapped_column(String(128))
    store_kind: Mapped[str] = mapped_column(String(16))  # sqlite | postgresql
    parts: Mapped[list[Any]] = mapped_column(default=list)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class DrRun(Base):
    """One failover, failback, region-wide failover or live DR drill, with its timed steps.

    ``status`` is ``running``, then ``succeeded``, ``failed`` or ``refused`` (a failover the
    pre-conditions reject). ``steps`` lists ``{"name", "status", "startedAt", "finishedAt",
    "durationSeconds", "message", "details"}``. ``rto_seconds`` is start to healthy in the target;
    ``rpo_seconds`` is start minus ``data_at``, the time of the restored data.
    """

    __tablename__ = "dr_runs"
    __table_args__ = (
        Index("ix_dr_runs_app_kind", "application_id", "kind"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int | None] = mapped_column(
        ForeignKey("applications.id", ondelete="SET NULL"), default=None
    )
    application_name: Mapped[str | None] = mapped_column(String(128), default=None)
    kind: Mapped[str] = mapped_column(String(16))  # failover | failback | region_failover | drill
    mode: Mapped[str] = mapped_column(String(16), default="manual")  # manual | automatic | live
    trigger: Mapped[str] = mapped_column(String(16), default="manual")  # manual | automatic | schedule
    parent_id: Mapped[int | None] = mapped_column(Integer, default=None, index=True)
    source_region_id: Mapped[int | None] = mapped_column(Integer, default=None)
    target_region_id: Mapped[int | None] = mapped_column(Integer, default=None)
    status: Mapped[str] = mapped_column(String(16), default="running")
    steps: Mapped[list[Any]] = mapped_column(default=list)
    backup_id: Mapped[int | None] = mapped_column(Integer, default=None)
    data_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    rto_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    rpo_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    actor: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class DrFence(Base):
    """An app's service in a region it failed over from, to be kept at 0 replicas.

    ``pending`` while the region is unreachable, and the engine scales it to 0 once it responds.
    """

    __tablename__ = "dr_fences"
    __table_args__ = (
        UniqueConstraint("application_id", "region_id", name="uq_dr_fences_app_region"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"))
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="CASCADE"))
    service_name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    fenced_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class DrStandby(Base):
    """The standby of an app in one of its DR regions: its image, and in warm mode a service at
    0 replicas and volumes seeded from a replicated backup."""

    __tablename__ = "dr_standbys"
    __table_args__ = (
        UniqueConstraint("application_id", "region_id", name="uq_dr_standbys_app_region"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"))
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="CASCADE"))
    image_reference: Mapped[str | None] = mapped_column(String(600), default=None)
    service_name: Mapped[str | None] = mapped_column(String(200), default=None)
    seeded_backup_id: Mapped[int | None] = mapped_column(Integer, default=None)
    volumes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | ready | failed
    message: Mapped[str | None] = mapped_column(Text, default=None)
    prepared_at: Mapped[dt.datetime | None] = mapped_column(default=None)
