"""disaster recovery: region registries, DR runs, fences and standbys; joins 0009 and 0010

Revision ID: 0011
Revises: 0009, 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = ("0009", "0010")
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("regions") as batch:
        batch.add_column(sa.Column("image_registry", sa.String(length=256), nullable=True))
    op.create_table(
        "dr_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "application_id",
            sa.Integer(),
            sa.ForeignKey("applications.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("application_name", sa.String(length=128), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("source_region_id", sa.Integer(), nullable=True),
        sa.Column("target_region_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("backup_id", sa.Integer(), nullable=True),
        sa.Column("data_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rto_seconds", sa.Float(), nullable=True),
        sa.Column("rpo_seconds", sa.Float(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_dr_runs_app_kind", "dr_runs", ["application_id", "kind"])
    op.create_index("ix_dr_runs_parent_id", "dr_runs", ["parent_id"])
    op.create_table(
        "dr_fences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "application_id",
            sa.Integer(),
            sa.ForeignKey("applications.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("region_id", sa.Integer(), sa.ForeignKey("regions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("service_name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fenced_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("application_id", "region_id", name="uq_dr_fences_app_region"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "dr_standbys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "application_id",
            sa.Integer(),
            sa.ForeignKey("applications.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("region_id", sa.Integer(), sa.ForeignKey("regions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("image_reference", sa.String(length=600), nullable=True),
        sa.Column("service_name", sa.String(length=200), nullable=True),
        sa.Column("seeded_backup_id", sa.Integer(), nullable=True),
        sa.Column("volumes", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("prepared_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("application_id", "region_id", name="uq_dr_standbys_app_region"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("dr_standbys")
    op.drop_table("dr_fences")
    op.drop_index("ix_dr_runs_parent_id", table_name="dr_runs")
    op.drop_index("ix_dr_runs_app_kind", table_name="dr_runs")
    op.drop_table("dr_runs")
    with op.batch_alter_table("regions") as batch:
        batch.drop_column("image_registry")
