"""model price overrides

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 00:00:41.113256
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_price_overrides",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(length=512), nullable=False),
        sa.Column(
            "override_json",
            sa.Text(),
            nullable=False,
            comment="an override as in cams.yaml pricing.overrides",
        ),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=True, comment="api_keys.id of the writer"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "deleted_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="set by DELETE /api/v1/models/{id}; kept for the audit trail",
        ),
        sa.PrimaryKeyConstraint("id"),
        comment="Prices written through the Models API; merged after cams.yaml's overrides into every price book.",
    )
    with op.batch_alter_table("model_price_overrides", schema=None) as batch_op:
        batch_op.create_index("ix_model_price_overrides_model", ["model"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("model_price_overrides", schema=None) as batch_op:
        batch_op.drop_index("ix_model_price_overrides_model")

    op.drop_table("model_price_overrides")
