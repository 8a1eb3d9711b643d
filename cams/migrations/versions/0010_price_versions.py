"""price versions; selection table as-of

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "price_versions",
        sa.Column("version_id", sa.String(length=200), nullable=False, comment="label@effective time#content digest"),
        sa.Column(
            "effective_from", sa.DateTime(timezone=True), nullable=False, comment="the instant its prices take effect"
        ),
        sa.Column("digest", sa.String(length=64), nullable=False, comment="sha256 of the models and aliases it prices"),
        sa.Column(
            "source", sa.Text(), nullable=False, comment="where the snapshot came from (file, URL, litellm package)"
        ),
        sa.Column("snapshot_json", sa.Text(), nullable=False, comment="the slimmed LiteLLM price map"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_by",
            sa.String(length=200),
            nullable=True,
            comment="cams pricing refresh, a webhook event, the first load, ...",
        ),
        sa.PrimaryKeyConstraint("version_id"),
        comment="Dated versions of the LiteLLM price snapshot (SPEC §3): the first one is the committed snapshot "
        "as first loaded, from 1970; each refresh adds one from its effective time.",
    )
    with op.batch_alter_table("price_versions", schema=None) as batch_op:
        batch_op.create_index("ix_price_versions_effective_from", ["effective_from"], unique=False)
    with op.batch_alter_table("model_selection_tables", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "as_of",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="the evaluation time the table was built for (quality window, prices)",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("model_selection_tables", schema=None) as batch_op:
        batch_op.drop_column("as_of")
    with op.batch_alter_table("price_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_price_versions_effective_from")
    op.drop_table("price_versions")
