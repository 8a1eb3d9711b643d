"""webhook events

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 21:23:06.820431
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "webhook_events",
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False, comment="cost-data, budget-alert or model-cost-update"),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("event_id"),
        comment="Signed webhook events, stored before the 2xx answer; idempotent on event_id (SPEC §2.3).",
    )


def downgrade() -> None:

    op.drop_table("webhook_events")
