"""model_quality_stats' sums and value counts per day, kept between runs

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

VALUES = ("duration_ms", "input_tokens", "output_tokens")


def upgrade() -> None:
    # empty: the first run after the upgrade counts the window's days and keeps them
    op.create_table(
        "quality_day_values",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model", sa.String(length=512), nullable=False),
        sa.Column("task_type", sa.String(length=100), nullable=False),
        sa.Column(
            "landing", sa.BigInteger(), nullable=False, comment="the cost_sync_history id of the day's spans' landing"
        ),
        sa.Column("spans", sa.BigInteger(), nullable=False),
        sa.Column("scored", sa.BigInteger(), nullable=False),
        sa.Column("score_sum", sa.Float(), nullable=True),
        sa.Column("succeeded", sa.BigInteger(), nullable=False, comment="spans whose status is not ERROR"),
        *(
            sa.Column(f"{name}_{part}", sa.LargeBinary(), nullable=True, comment=f"{what} (big-endian {kind})")
            for name in VALUES
            for part, what, kind in (
                ("values", "the distinct values, ascending", "float64"),
                ("counts", "their counts", "int64"),
            )
        ),
        sa.PrimaryKeyConstraint("day", "model", "task_type"),
        comment="model_quality_stats' sums and value counts per day, model and task type, kept while the day's "
        "spans are those of the landing named: a run counts only days landed since (exact percentiles over 30 days).",
    )


def downgrade() -> None:
    op.drop_table("quality_day_values")
