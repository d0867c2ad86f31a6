"""backup replication (replicate_to, backup_replicas) and self-backups; joins the 0004 branches

Revision ID: 0010
Revises: 0005, 0006, 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = ("0005", "0006", "0007")
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("backup_destinations") as batch:
        batch.add_column(sa.Column("replicate_to", sa.JSON(), nullable=False, server_default="[]"))
    op.create_table(
        "backup_replicas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("backup_id", sa.Integer(), sa.ForeignKey("backups.id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            "destination_id",
            sa.Integer(),
            sa.ForeignKey("backup_destinations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("parts", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("copied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("backup_id", "destination_id", name="uq_backup_replicas_backup_destination"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_backup_replicas_backup_id", "backup_replicas", ["backup_id"])
    op.create_table(
        "self_backups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "destination_id",
            sa.Integer(),
            sa.ForeignKey("backup_destinations.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("destination_name", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("store_kind", sa.String(length=16), nullable=False),
        sa.Column("parts", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("self_backups")
    op.drop_index("ix_backup_replicas_backup_id", table_name="backup_replicas")
    op.drop_table("backup_replicas")
    with op.batch_alter_table("backup_destinations") as batch:
        batch.drop_column("replicate_to")
