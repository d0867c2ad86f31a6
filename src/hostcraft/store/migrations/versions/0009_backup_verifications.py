"""backup verifications (repository checks and restore tests); merges the 0005, 0006 and 0007 heads

Revision ID: 0009
Revises: 0005, 0006, 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = ("0005", "0006", "0007")
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backup_verifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("backup_id", sa.Integer(), sa.ForeignKey("backups.id", ondelete="CASCADE"), nullable=True),
        sa.Column(
            "application_id",
            sa.Integer(),
            sa.ForeignKey("applications.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column(
            "destination_id",
            sa.Integer(),
            sa.ForeignKey("backup_destinations.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_backup_verifications_backup", "backup_verifications", ["backup_id"])
    op.create_index("ix_backup_verifications_kind_time", "backup_verifications", ["kind", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_backup_verifications_kind_time", table_name="backup_verifications")
    op.drop_index("ix_backup_verifications_backup", table_name="backup_verifications")
    op.drop_table("backup_verifications")
