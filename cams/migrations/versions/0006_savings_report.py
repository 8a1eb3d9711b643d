"""savings report

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 21:34:12.630306
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "savings_report",
        sa.Column("org_id", sa.String(length=200), nullable=False),
        sa.Column("team_id", sa.String(length=200), nullable=True),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("actual_usd", sa.Numeric(precision=20, scale=10), nullable=False),
        sa.Column(
            "table_usd",
            sa.Numeric(precision=20, scale=10),
            nullable=False,
            comment="the same requests on the table's standard-tier choice",
        ),
        sa.Column("savings_usd", sa.Numeric(precision=20, scale=10), nullable=False),
        sa.Column("savings_pct", sa.Float(), nullable=False),
        sa.Column("table_expected_quality", sa.Float(), nullable=False),
        sa.Column("table_version", sa.String(length=64), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        comment="Spend versus what the selection table would have chosen, per org and team, last 30 days.",
    )


def downgrade() -> None:

    op.drop_table("savings_report")
