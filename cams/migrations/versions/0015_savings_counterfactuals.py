"""savings per user against named counterfactuals, and recommendations

`savings_report` gains `user_id` and `counterfactual` (requested, always_standard, always_premium);
`table_usd` and `table_expected_quality` become `counterfactual_usd` and `counterfactual_quality`, and
`savings_usd` now reads counterfactual − actual (positive: the scope spent less). The report is derived
data: its old rows (the other sign) are removed and the next `savings_report` run writes it anew.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM savings_report")
    with op.batch_alter_table("savings_report", schema=None) as batch_op:
        batch_op.alter_column(
            "table_usd",
            new_column_name="counterfactual_usd",
            existing_type=sa.Numeric(precision=20, scale=10),
            existing_nullable=False,
            comment="the same requests on the counterfactual's models (same tokens, time and price book)",
        )
        batch_op.alter_column(
            "table_expected_quality",
            new_column_name="counterfactual_quality",
            existing_type=sa.Float(),
            nullable=True,
            comment="the counterfactual models' mean expected quality, when known",
        )
        batch_op.alter_column(
            "savings_usd",
            existing_type=sa.Numeric(precision=20, scale=10),
            existing_nullable=False,
            comment="counterfactual_usd - actual_usd: positive, spent less",
        )
        batch_op.add_column(sa.Column("user_id", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column(
                "counterfactual",
                sa.String(length=20),
                nullable=False,
                comment="requested, always_standard or always_premium",
            )
        )
    if op.get_bind().dialect.name == "postgresql":
        op.create_table_comment(
            "savings_report",
            "Spend versus named counterfactuals, per org, team and user, over the 30 days to the as-of.",
        )
    op.create_table(
        "savings_recommendations",
        sa.Column("org_id", sa.String(length=200), nullable=False),
        sa.Column("team_id", sa.String(length=200), nullable=True),
        sa.Column("task_type", sa.String(length=100), nullable=False),
        sa.Column("from_model", sa.String(length=512), nullable=False),
        sa.Column("to_model", sa.String(length=512), nullable=False),
        sa.Column("tier", sa.String(length=20), nullable=False, comment="the table's tier whose choice to_model is"),
        sa.Column(
            "requests",
            sa.BigInteger(),
            nullable=False,
            comment="the evidence: requests of the scope, task and model",
        ),
        sa.Column("actual_usd", sa.Numeric(precision=20, scale=10), nullable=False),
        sa.Column(
            "projected_usd", sa.Numeric(precision=20, scale=10), nullable=False, comment="the same requests on to_model"
        ),
        sa.Column(
            "monthly_savings_usd",
            sa.Numeric(precision=20, scale=10),
            nullable=False,
            comment="(actual - projected) over 30 days",
        ),
        sa.Column("from_quality", sa.Float(), nullable=False),
        sa.Column("to_quality", sa.Float(), nullable=False),
        sa.Column(
            "explanation_id",
            sa.String(length=200),
            nullable=False,
            comment="the table row's explanation (the explainer)",
        ),
        sa.Column("table_version", sa.String(length=64), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        comment="Per org, team and task: a model to move to that costs less at no lower expected quality.",
    )


def downgrade() -> None:
    op.drop_table("savings_recommendations")
    op.execute("DELETE FROM savings_report")
    with op.batch_alter_table("savings_report", schema=None) as batch_op:
        batch_op.drop_column("counterfactual")
        batch_op.drop_column("user_id")
        batch_op.alter_column(
            "counterfactual_quality",
            new_column_name="table_expected_quality",
            existing_type=sa.Float(),
            nullable=False,
            comment=None,
        )
        batch_op.alter_column(
            "counterfactual_usd",
            new_column_name="table_usd",
            existing_type=sa.Numeric(precision=20, scale=10),
            existing_nullable=False,
            comment="the same requests on the table's standard-tier choice",
        )
        batch_op.alter_column(
            "savings_usd", existing_type=sa.Numeric(precision=20, scale=10), existing_nullable=False, comment=None
        )
    if op.get_bind().dialect.name == "postgresql":
        op.create_table_comment(
            "savings_report", "Spend versus what the selection table would have chosen, per org and team, last 30 days."
        )
