"""the ids each retention run destroyed, for its certificate

Revision ID: 0016
Revises: 0015
"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('retention_run_ids',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('record_class', sa.String(length=40), nullable=False),
    sa.Column('ids', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['retention_run.id'], name=op.f('fk_retention_run_ids_run_id_retention_run')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_retention_run_ids'))
    )
    with op.batch_alter_table('retention_run_ids', schema=None) as batch_op:
        batch_op.create_index('ix_retention_run_ids_run_class', ['run_id', 'record_class', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('retention_run_ids', schema=None) as batch_op:
        batch_op.drop_index('ix_retention_run_ids_run_class')

    op.drop_table('retention_run_ids')
