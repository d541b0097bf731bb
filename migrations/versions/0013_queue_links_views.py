"""the queue's saved views and seen marks; linked, merged and followed tickets

Revision ID: 0013
Revises: 0012
"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.create_index('ix_ticket_updated', ['updated_at'], unique=False)
        batch_op.create_index('ix_ticket_priority_status', ['priority', 'status'], unique=False)

    op.create_table('ticket_link',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('other_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['user_account.id'], name=op.f('fk_ticket_link_created_by_id_user_account')),
    sa.ForeignKeyConstraint(['other_id'], ['ticket.id'], name=op.f('fk_ticket_link_other_id_ticket')),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_ticket_link_ticket_id_ticket')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_link')),
    sa.UniqueConstraint('ticket_id', 'other_id', name='uq_ticket_link_pair')
    )
    with op.batch_alter_table('ticket_link', schema=None) as batch_op:
        batch_op.create_index('ix_ticket_link_other', ['other_id', 'kind'], unique=False)

    op.create_table('ticket_follower',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_ticket_follower_ticket_id_ticket')),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_ticket_follower_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_follower')),
    sa.UniqueConstraint('ticket_id', 'user_id', name='uq_ticket_follower')
    )
    with op.batch_alter_table('ticket_follower', schema=None) as batch_op:
        batch_op.create_index('ix_ticket_follower_user', ['user_id'], unique=False)

    op.create_table('ticket_seen',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_ticket_seen_ticket_id_ticket')),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_ticket_seen_user_id_user_account')),
    sa.PrimaryKeyConstraint('user_id', 'ticket_id', name=op.f('pk_ticket_seen'))
    )

    op.create_table('ticket_saved_view',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('shared', sa.Boolean(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['user_account.id'], name=op.f('fk_ticket_saved_view_owner_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_saved_view')),
    sa.UniqueConstraint('owner_id', 'name', name='uq_ticket_saved_view_name')
    )
    with op.batch_alter_table('ticket_saved_view', schema=None) as batch_op:
        batch_op.create_index('ix_ticket_saved_view_shared', ['shared'], unique=False)


def downgrade():
    with op.batch_alter_table('ticket_saved_view', schema=None) as batch_op:
        batch_op.drop_index('ix_ticket_saved_view_shared')
    op.drop_table('ticket_saved_view')
    op.drop_table('ticket_seen')
    with op.batch_alter_table('ticket_follower', schema=None) as batch_op:
        batch_op.drop_index('ix_ticket_follower_user')
    op.drop_table('ticket_follower')
    with op.batch_alter_table('ticket_link', schema=None) as batch_op:
        batch_op.drop_index('ix_ticket_link_other')
    op.drop_table('ticket_link')
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.drop_index('ix_ticket_priority_status')
        batch_op.drop_index('ix_ticket_updated')
