"""regions.target_managers: the manager count asked for at swarm init

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("regions") as batch:
        batch.add_column(sa.Column("target_managers", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("regions") as batch:
        batch.drop_column("target_managers")
