"""steering rule, model asked for and fallback carried into cost_tracking

The steering rollup then groups cost_tracking alone instead of joining a day of it to relaycore_usage
request by request (6.5 s of a million-request day, measured). Rows already costed get the fields from
relaycore_usage here, so the rollups of past days rebuild the same.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 04:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

COLUMNS = (
    ("steering_rule", "RelayCore's steering rule; null when none applied"),
    ("model_requested", "the model the caller asked for"),
    ("fallback_from", "the model that failed over to this one; null when none did"),
)


def upgrade() -> None:
    for name, comment in COLUMNS:
        op.add_column("cost_tracking", sa.Column(name, sa.String(length=512), nullable=True, comment=comment))
    fields = ", ".join(f"{name} = ru.{name}" for name, _ in COLUMNS)
    op.execute(
        f"UPDATE cost_tracking SET {fields} FROM relaycore_usage ru "
        "WHERE ru.day = cost_tracking.day AND ru.request_id = cost_tracking.request_id "
        "AND (ru.steering_rule IS NOT NULL OR ru.model_requested IS NOT NULL OR ru.fallback_from IS NOT NULL)"
    )


def downgrade() -> None:
    with op.batch_alter_table("cost_tracking", schema=None) as batch_op:
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
