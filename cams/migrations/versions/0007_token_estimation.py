"""token estimation

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 22:52:01.993785
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "token_calibration",
        sa.Column("family", sa.String(length=100), nullable=False),
        sa.Column("encoding", sa.String(length=40), nullable=False),
        sa.Column("samples", sa.BigInteger(), nullable=False),
        sa.Column("ratio", sa.Float(), nullable=False, comment="median of actual input tokens / tokenizer count"),
        sa.Column("p10_ratio", sa.Float(), nullable=False),
        sa.Column("p90_ratio", sa.Float(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("family", "encoding"),
        comment="Per model family and encoding: how far the offline tokenizer is from what the provider bills.",
    )
    op.create_table(
        "token_estimates",
        sa.Column("request_id", sa.String(length=200), nullable=False),
        sa.Column("model", sa.String(length=512), nullable=False),
        sa.Column("family", sa.String(length=100), nullable=False),
        sa.Column("encoding", sa.String(length=40), nullable=False),
        sa.Column(
            "raw_input_tokens", sa.BigInteger(), nullable=False, comment="the tokenizer's count, before calibration"
        ),
        sa.Column("estimated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
        comment="Estimates made for a known request id, later matched to the actual usage to learn calibration.",
    )
    with op.batch_alter_table("token_estimates", schema=None) as batch_op:
        batch_op.create_index("ix_token_estimates_estimated_at", ["estimated_at"], unique=False)

    op.create_table(
        "token_estimation_cache",
        sa.Column("encoding", sa.String(length=40), nullable=False),
        sa.Column(
            "text_hash",
            sa.String(length=32),
            nullable=False,
            comment="blake2b-128 of the text; the text is never stored",
        ),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("encoding", "text_hash"),
        comment="Token counts already computed, shared by every `cams serve` process and kept across restarts.",
    )


def downgrade() -> None:
    op.drop_table("token_estimation_cache")
    with op.batch_alter_table("token_estimates", schema=None) as batch_op:
        batch_op.drop_index("ix_token_estimates_estimated_at")

    op.drop_table("token_estimates")
    op.drop_table("token_calibration")
