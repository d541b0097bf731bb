"""One username and one object index on the audit trail: the lower-cased ones serve exact lookups too

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index("ix_audit_event_username_time", table_name="audit_event")
    op.drop_index("ix_audit_event_object_lower", table_name="audit_event")
    op.drop_index("ix_audit_event_object", table_name="audit_event")
    op.create_index("ix_audit_event_object_lower", "audit_event", [sa.text("lower(object_id)"), "object_type"])


def downgrade():
    op.drop_index("ix_audit_event_object_lower", table_name="audit_event")
    op.create_index("ix_audit_event_object", "audit_event", ["object_type", "object_id"])
    op.create_index("ix_audit_event_object_lower", "audit_event", [sa.text("lower(object_id)")])
    op.create_index("ix_audit_event_username_time", "audit_event", ["username", "occurred_at"])
