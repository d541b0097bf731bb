"""notifications: in-app notices, people's choices, the e-mail outbox and the mail read in

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('mail_inbound',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=250), nullable=False),
    sa.Column('message_id', sa.String(length=250), nullable=True),
    sa.Column('sender', sa.String(length=254), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.String(length=12), nullable=False),
    sa.Column('reason', sa.String(length=300), nullable=False),
    sa.Column('ticket', sa.String(length=16), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('handled_by_id', sa.Integer(), nullable=True),
    sa.Column('raw', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['handled_by_id'], ['user_account.id'], name=op.f('fk_mail_inbound_handled_by_id_user_account')),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_mail_inbound_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_inbound')),
    sa.UniqueConstraint('key', name=op.f('uq_mail_inbound_key'))
    )
    with op.batch_alter_table('mail_inbound', schema=None) as batch_op:
        batch_op.create_index('ix_mail_inbound_outcome', ['outcome', 'received_at'], unique=False)

    op.create_table('notification',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=80), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('paragraphs', sa.JSON(), nullable=False),
    sa.Column('link_path', sa.String(length=300), nullable=True),
    sa.Column('ticket', sa.String(length=16), nullable=True),
    sa.Column('key', sa.String(length=200), nullable=True),
    sa.Column('email', sa.String(length=12), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('read_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_notification_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification'))
    )
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.create_index('ix_notification_email', ['email', 'user_id'], unique=False)
        batch_op.create_index('ix_notification_user_created', ['user_id', 'created_at'], unique=False)
        batch_op.create_index('ix_notification_user_unread', ['user_id', 'read_at'], unique=False)
        batch_op.create_index('uq_notification_user_key', ['user_id', 'key'], unique=True)

    op.create_table('notification_preference',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=80), nullable=False),
    sa.Column('delivery', sa.String(length=12), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_notification_preference_user_id_user_account')),
    sa.PrimaryKeyConstraint('user_id', 'kind', name=op.f('pk_notification_preference'))
    )
    op.create_table('mail_outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('notification_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=80), nullable=False),
    sa.Column('to_address', sa.String(length=254), nullable=False),
    sa.Column('message_id', sa.String(length=250), nullable=False),
    sa.Column('ticket', sa.String(length=16), nullable=True),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('notice', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sending_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_result', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['notification_id'], ['notification.id'], name=op.f('fk_mail_outbox_notification_id_notification')),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_mail_outbox_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_outbox')),
    sa.UniqueConstraint('message_id', name=op.f('uq_mail_outbox_message_id'))
    )
    with op.batch_alter_table('mail_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_mail_outbox_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_mail_outbox_user', ['user_id', 'status'], unique=False)



def downgrade():
    with op.batch_alter_table('mail_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_mail_outbox_user')
        batch_op.drop_index('ix_mail_outbox_due')

    op.drop_table('mail_outbox')
    op.drop_table('notification_preference')
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index('uq_notification_user_key')
        batch_op.drop_index('ix_notification_user_unread')
        batch_op.drop_index('ix_notification_user_created')
        batch_op.drop_index('ix_notification_email')

    op.drop_table('notification')
    with op.batch_alter_table('mail_inbound', schema=None) as batch_op:
        batch_op.drop_index('ix_mail_inbound_outcome')

    op.drop_table('mail_inbound')
