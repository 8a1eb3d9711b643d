"""reconciliation, recomputation log, retired prices

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 20:29:52.330749
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "cost_recomputations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("rows_before", sa.BigInteger(), nullable=False),
        sa.Column("rows_after", sa.BigInteger(), nullable=False),
        sa.Column("cost_before_usd", sa.Numeric(precision=20, scale=10), nullable=False),
        sa.Column("cost_after_usd", sa.Numeric(precision=20, scale=10), nullable=False),
        sa.Column("price_ids_before", sa.Text(), nullable=False),
        sa.Column("price_ids_after", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("recomputed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        comment="A day of cost_tracking recomputed with different prices: what it was, what it became.",
    )
    op.create_table(
        "cost_reconciliation",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column(
            "request_id",
            sa.String(length=200),
            nullable=False,
            comment="RelayCore request id (or the span's, when missing there)",
        ),
        sa.Column("category", sa.String(length=30), nullable=False),
        sa.Column("org_id", sa.String(length=200), nullable=True),
        sa.Column("model", sa.String(length=512), nullable=True),
        sa.Column("span_model", sa.String(length=512), nullable=True),
        sa.Column("span_id", sa.String(length=100), nullable=True),
        sa.Column("relaycore_input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("auterity_input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("relaycore_output_tokens", sa.BigInteger(), nullable=True),
        sa.Column("auterity_output_tokens", sa.BigInteger(), nullable=True),
        sa.Column("charged_usd", sa.Numeric(precision=20, scale=10), nullable=True),
        sa.Column("cost_usd", sa.Numeric(precision=20, scale=10), nullable=True),
        sa.Column("at_risk_usd", sa.Numeric(precision=20, scale=10), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", "request_id"),
        comment="Each request of a day in exactly one reconciliation category (SPEC §4).",
    )
    with op.batch_alter_table("cost_reconciliation", schema=None) as batch_op:
        batch_op.create_index("ix_cost_reconciliation_day_category", ["day", "category"], unique=False)

    op.create_table(
        "cost_reconciliation_summary",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("org_id", sa.String(length=200), nullable=True),
        sa.Column("model", sa.String(length=512), nullable=True),
        sa.Column("category", sa.String(length=30), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("charged_usd", sa.Numeric(precision=20, scale=10), nullable=False),
        sa.Column("cost_usd", sa.Numeric(precision=20, scale=10), nullable=False),
        sa.Column("at_risk_usd", sa.Numeric(precision=20, scale=10), nullable=False),
        comment="cost_reconciliation per day, org, model and category, with the dollars at risk.",
    )
    with op.batch_alter_table("cost_reconciliation_summary", schema=None) as batch_op:
        batch_op.create_index("ix_cost_reconciliation_summary_day", ["day"], unique=False)

    with op.batch_alter_table("model_cost_profiles", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "retired_at",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="set when a reload no longer contains this price; kept for traceability",
            )
        )


def downgrade() -> None:

    with op.batch_alter_table("model_cost_profiles", schema=None) as batch_op:
        batch_op.drop_column("retired_at")

    with op.batch_alter_table("cost_reconciliation_summary", schema=None) as batch_op:
        batch_op.drop_index("ix_cost_reconciliation_summary_day")

    op.drop_table("cost_reconciliation_summary")
    with op.batch_alter_table("cost_reconciliation", schema=None) as batch_op:
        batch_op.drop_index("ix_cost_reconciliation_day_category")

    op.drop_table("cost_reconciliation")
    op.drop_table("cost_recomputations")
