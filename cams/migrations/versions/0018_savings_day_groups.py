"""the savings report's sums per complete day, kept between runs

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "savings_day_groups",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column(
            "fingerprint",
            sa.String(length=64),
            nullable=False,
            comment="the table's choices and the prices they were priced by",
        ),
        sa.Column("org_id", sa.String(length=200), nullable=False),
        sa.Column("team_id", sa.String(length=200), nullable=True),
        sa.Column("user_id", sa.String(length=200), nullable=True),
        sa.Column("task_type", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=512), nullable=False),
        sa.Column("asked", sa.String(length=512), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("actual_usd", sa.Float(), nullable=True),
        sa.Column("asked_usd", sa.Float(), nullable=True),
        sa.Column("economy_n", sa.BigInteger(), nullable=False),
        sa.Column("economy_actual", sa.Float(), nullable=True),
        sa.Column("economy_usd", sa.Float(), nullable=True),
        sa.Column("standard_n", sa.BigInteger(), nullable=False),
        sa.Column("standard_actual", sa.Float(), nullable=True),
        sa.Column("standard_usd", sa.Float(), nullable=True),
        sa.Column("premium_n", sa.BigInteger(), nullable=False),
        sa.Column("premium_actual", sa.Float(), nullable=True),
        sa.Column("premium_usd", sa.Float(), nullable=True),
        comment="The savings report's sums per complete day, kept while the table's choices and the prices stay "
        "the same: a run prices only the days it has not priced before. Emptied for a day when it is costed again.",
    )
    with op.batch_alter_table("savings_day_groups", schema=None) as batch_op:
        batch_op.create_index("ix_savings_day_groups_day", ["day", "fingerprint"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("savings_day_groups", schema=None) as batch_op:
        batch_op.drop_index("ix_savings_day_groups_day")
    op.drop_table("savings_day_groups")
