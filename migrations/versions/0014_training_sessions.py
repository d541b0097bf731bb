"""Training sessions recorded for many attendees at once; notes on a completion

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "training_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("completed_on", sa.Date(), nullable=False),
        sa.Column("trainer", sa.String(length=200), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("skipped", sa.JSON(), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["course_id"], ["training_course.id"],
                                name=op.f("fk_training_session_course_id_training_course")),
        sa.ForeignKeyConstraint(["recorded_by_id"], ["user_account.id"],
                                name=op.f("fk_training_session_recorded_by_id_user_account")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_session")),
    )
    with op.batch_alter_table("training_completion", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("notes", sa.Text(), server_default="", nullable=False))
        batch_op.create_foreign_key(batch_op.f("fk_training_completion_session_id_training_session"),
                                    "training_session", ["session_id"], ["id"])
        batch_op.create_index("ix_training_completion_session", ["session_id"], unique=False)


def downgrade():
    with op.batch_alter_table("training_completion", schema=None) as batch_op:
        batch_op.drop_index("ix_training_completion_session")
        batch_op.drop_constraint(batch_op.f("fk_training_completion_session_id_training_session"),
                                 type_="foreignkey")
        batch_op.drop_column("notes")
        batch_op.drop_column("session_id")
    op.drop_table("training_session")
