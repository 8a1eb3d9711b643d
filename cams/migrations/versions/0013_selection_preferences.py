"""selection preferences per org and team

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "selection_preferences",
        sa.Column("id", sa.String(length=420), nullable=False, comment="org:<org_id> or team:<org_id>/<team_id>"),
        sa.Column("org_id", sa.String(length=200), nullable=False),
        sa.Column("team_id", sa.String(length=200), nullable=True, comment="null for an org's own preference"),
        sa.Column(
            "preference_json",
            sa.Text(),
            nullable=False,
            comment="the rules: allowed/excluded models and providers",
        ),
        sa.Column("source", sa.String(length=10), nullable=False, comment="yaml or api"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        comment="Selection preferences per org and team, from cams.yaml and the Preferences API.",
    )


def downgrade() -> None:
    op.drop_table("selection_preferences")
