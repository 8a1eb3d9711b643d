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
        sa.Column(
            "scope", sa.String(length=10), nullable=False, comment="org, team or user: which of the ids below name it"
        ),
        sa.Column("org_id", sa.String(length=200), nullable=False),
        sa.Column(
            "team_id", sa.String(length=200), nullable=True, comment="a team's row (scope team); null in the others"
        ),
        sa.Column(
            "user_id", sa.String(length=200), nullable=True, comment="a user's row (scope user); null in the others"
        ),
        sa.Column("quarter", sa.BigInteger(), nullable=False, comment="quarter hours since 1970-01-01 UTC"),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column(
            "spend_usd",
            sa.Numeric(precision=20, scale=10),
            nullable=False,
            comment="cost_usd, RelayCore's charge where unpriced",
        ),
        comment="cost_tracking's spend per quarter hour of each org, team of an org and user of an org, what "
        "budgets read; written with each costed day.",
    )
    with op.batch_alter_table("spend_quarter_hours", schema=None) as batch_op:
        batch_op.create_index("ix_spend_quarter_hours_scope_day", ["org_id", "scope", "day"], unique=False)
    # the days costed before this table existed: budgets read their spend from here from now on
    if op.get_bind().dialect.name == "postgresql":
        quarter = "CAST(floor(extract(epoch FROM timestamp) / 900) AS BIGINT)"
    else:
        # whole seconds cut from the text: SQLite's date functions round to milliseconds (epoch_bucket)
        quarter = "(CAST(strftime('%s', substr(timestamp, 1, 19)) AS INTEGER) / 900)"
    for scope, keys in (("org", ""), ("team", "team_id, "), ("user", "user_id, ")):
        op.execute(
            f"INSERT INTO spend_quarter_hours (day, org_id, {keys}quarter, scope, requests, spend_usd) "
            f"SELECT day, org_id, {keys}{quarter}, '{scope}', count(*), sum(coalesce(cost_usd, charged_usd, 0)) "
            f"FROM cost_tracking GROUP BY day, org_id, {keys}{quarter}"
        )


def downgrade() -> None:
    with op.batch_alter_table("spend_quarter_hours", schema=None) as batch_op:
        batch_op.drop_index("ix_spend_quarter_hours_scope_day")
    op.drop_table("spend_quarter_hours")
