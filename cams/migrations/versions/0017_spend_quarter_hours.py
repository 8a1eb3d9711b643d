"""spend per quarter hour, what budgets read, filled from cost_tracking

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 17:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spend_quarter_hours",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("org_id", sa.String(length=200), nullable=False),
        sa.Column("team_id", sa.String(length=200), nullable=True),
        sa.Column("user_id", sa.String(length=200), nullable=True),
        sa.Column("quarter", sa.BigInteger(), nullable=False, comment="quarter hours since 1970-01-01 UTC"),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column(
            "spend_usd",
            sa.Numeric(precision=20, scale=10),
            nullable=False,
            comment="cost_usd, RelayCore's charge where unpriced",
        ),
        comment="cost_tracking's spend per org, team, user and quarter hour, what budgets read; written with "
        "each costed day.",
    )
    with op.batch_alter_table("spend_quarter_hours", schema=None) as batch_op:
        batch_op.create_index("ix_spend_quarter_hours_org_day", ["org_id", "day"], unique=False)
    # the days costed before this table existed: budgets read their spend from here from now on
    if op.get_bind().dialect.name == "postgresql":
        quarter = "CAST(floor(extract(epoch FROM timestamp) / 900) AS BIGINT)"
    else:
        quarter = "(CAST(strftime('%s', timestamp) AS INTEGER) / 900)"
    op.execute(
        "INSERT INTO spend_quarter_hours (day, org_id, team_id, user_id, quarter, requests, spend_usd) "
        f"SELECT day, org_id, team_id, user_id, {quarter}, count(*), sum(coalesce(cost_usd, charged_usd, 0)) "
        f"FROM cost_tracking GROUP BY day, org_id, team_id, user_id, {quarter}"
    )


def downgrade() -> None:
    with op.batch_alter_table("spend_quarter_hours", schema=None) as batch_op:
        batch_op.drop_index("ix_spend_quarter_hours_org_day")
    op.drop_table("spend_quarter_hours")
