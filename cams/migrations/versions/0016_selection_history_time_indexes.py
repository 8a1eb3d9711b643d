"""time indexes on the selection history and its explanations, for retention

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 05:45:00
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_model_selection_history_selected_at", "model_selection_history", ["selected_at"])
    op.create_index("ix_model_selection_explanations_created_at", "model_selection_explanations", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_model_selection_explanations_created_at", table_name="model_selection_explanations")
    op.drop_index("ix_model_selection_history_selected_at", table_name="model_selection_history")
