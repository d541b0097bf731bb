"""Indexes on the audit trail's lower-cased object ids and usernames, for the any-case search

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_audit_event_object_lower", "audit_event", [sa.text("lower(object_id)")])
    op.create_index("ix_audit_event_username_lower", "audit_event", [sa.text("lower(username)"), "occurred_at"])


def downgrade():
    op.drop_index("ix_audit_event_username_lower", table_name="audit_event")
    op.drop_index("ix_audit_event_object_lower", table_name="audit_event")
