"""steering rule and fallback rollups

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 20:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "steering_daily_rollups",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("org_id", sa.String(length=200), nullable=False),
        sa.Column(
            "steering_rule",
            sa.String(length=512),
            nullable=True,
            comment="RelayCore's steering rule; null when none applied",
        ),
        sa.Column("model_requested", sa.String(length=512), nullable=True, comment="the model the caller asked for"),
        sa.Column("model", sa.String(length=512), nullable=False, comment="the model that served"),
        sa.Column(
            "fallback",
            sa.Boolean(),
            nullable=False,
            comment="served by a fallback (RelayCore's fallback_from is set)",
        ),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Numeric(precision=20, scale=10), nullable=False),
        sa.Column("charged_usd", sa.Numeric(precision=20, scale=10), nullable=False),
        comment="cost_tracking per day, org, steering rule, model asked for and model served, fallbacks apart.",
    )
    with op.batch_alter_table("steering_daily_rollups", schema=None) as batch_op:
        batch_op.create_index("ix_steering_daily_rollups_day_org", ["day", "org_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("steering_daily_rollups", schema=None) as batch_op:
        batch_op.drop_index("ix_steering_daily_rollups_day_org")
    op.drop_table("steering_daily_rollups")
