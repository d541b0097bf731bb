"""the PACS access log (IHE ATNA): messages partitioned by month on PostgreSQL, quarantine, sealed batches,
senders, watchlist and receiver counters

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

from audit.atna.models import drop_partitioning, install_partitioning

# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(sa.schema.CreateSequence(sa.Sequence('atna_message_id_seq')))
    op.create_table('atna_batch',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('receiver', sa.String(length=120), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sealed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.Column('quarantined', sa.BigInteger(), nullable=False),
    sa.Column('first_received', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_received', sa.DateTime(timezone=True), nullable=True),
    sa.Column('hash', sa.String(length=64), nullable=True),
    sa.Column('audit_seq', sa.BigInteger(), nullable=True),
    sa.Column('recovered', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_atna_batch'))
    )
    with op.batch_alter_table('atna_batch', schema=None) as batch_op:
        batch_op.create_index('ix_atna_batch_open', ['sealed_at', 'updated_at'], unique=False)

    op.create_table('atna_message',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('batch_id', sa.BigInteger(), nullable=False),
    sa.Column('event_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('event_offset', sa.SmallInteger(), nullable=True),
    sa.Column('event_id', sa.String(length=32), nullable=False),
    sa.Column('event_type', sa.String(length=32), nullable=True),
    sa.Column('action', sa.String(length=1), nullable=True),
    sa.Column('outcome', sa.SmallInteger(), nullable=False),
    sa.Column('source_id', sa.String(length=64), nullable=True),
    sa.Column('sender_host', sa.String(length=64), nullable=False),
    sa.Column('sender_name', sa.String(length=255), nullable=True),
    sa.Column('transport', sa.String(length=4), nullable=False),
    sa.Column('asset_id', sa.Integer(), nullable=True),
    sa.Column('user_id', sa.String(length=128), nullable=True),
    sa.Column('user_name', sa.String(length=128), nullable=True),
    sa.Column('user_host', sa.String(length=255), nullable=True),
    sa.Column('patient_id', sa.String(length=64), nullable=True),
    sa.Column('patient_name', sa.String(length=128), nullable=True),
    sa.Column('study_uid', sa.String(length=64), nullable=True),
    sa.Column('accession', sa.String(length=64), nullable=True),
    sa.Column('xml_z', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id', 'received_at', name='pk_atna_message'),
    postgresql_partition_by='RANGE (received_at)'
    )
    with op.batch_alter_table('atna_message', schema=None) as batch_op:
        batch_op.create_index('ix_atna_message_accession', ['accession'], unique=False)
        batch_op.create_index('ix_atna_message_batch', ['batch_id', 'id'], unique=False)
        batch_op.create_index('ix_atna_message_event_time', ['event_time'], unique=False)
        batch_op.create_index('ix_atna_message_patient_time', ['patient_id', 'event_time'], unique=False)
        batch_op.create_index('ix_atna_message_study_uid', ['study_uid'], unique=False)
        batch_op.create_index('ix_atna_message_user_time', ['user_id', 'event_time'], unique=False)

    op.create_table('atna_message_ref',
    sa.Column('message_id', sa.BigInteger(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=1), nullable=False),
    sa.Column('value', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('message_id', 'received_at', 'kind', 'value', name='pk_atna_message_ref'),
    postgresql_partition_by='RANGE (received_at)'
    )
    with op.batch_alter_table('atna_message_ref', schema=None) as batch_op:
        batch_op.create_index('ix_atna_message_ref_value', ['kind', 'value'], unique=False)

    op.create_table('atna_quarantine',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('batch_id', sa.BigInteger(), nullable=True),
    sa.Column('listener', sa.String(length=80), nullable=False),
    sa.Column('sender_host', sa.String(length=64), nullable=False),
    sa.Column('sender_port', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=24), nullable=False),
    sa.Column('detail', sa.String(length=300), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_atna_quarantine'))
    )
    with op.batch_alter_table('atna_quarantine', schema=None) as batch_op:
        batch_op.create_index('ix_atna_quarantine_reason', ['reason'], unique=False)
        batch_op.create_index('ix_atna_quarantine_received_at', ['received_at'], unique=False)

    op.create_table('atna_receiver',
    sa.Column('id', sa.String(length=120), nullable=False),
    sa.Column('listeners', sa.String(length=400), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('stopped_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('received', sa.BigInteger(), nullable=False),
    sa.Column('stored', sa.BigInteger(), nullable=False),
    sa.Column('quarantined', sa.BigInteger(), nullable=False),
    sa.Column('dropped_udp', sa.BigInteger(), nullable=False),
    sa.Column('oversized', sa.BigInteger(), nullable=False),
    sa.Column('framing_errors', sa.BigInteger(), nullable=False),
    sa.Column('refused_connections', sa.BigInteger(), nullable=False),
    sa.Column('tls_failures', sa.BigInteger(), nullable=False),
    sa.Column('lost', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_atna_receiver'))
    )
    op.create_table('atna_source',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=400), nullable=False),
    sa.Column('asset_id', sa.Integer(), nullable=True),
    sa.Column('sender_host', sa.String(length=64), nullable=False),
    sa.Column('sender_name', sa.String(length=255), nullable=True),
    sa.Column('source_id', sa.String(length=64), nullable=True),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_event_id', sa.String(length=32), nullable=True),
    sa.Column('last_event_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('message_count', sa.BigInteger(), nullable=False),
    sa.Column('quarantined_count', sa.BigInteger(), nullable=False),
    sa.Column('silent_since', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_atna_source')),
    sa.UniqueConstraint('key', name=op.f('uq_atna_source_key'))
    )
    with op.batch_alter_table('atna_source', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_atna_source_asset_id'), ['asset_id'], unique=False)

    op.create_table('atna_watch',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('category', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('added_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['added_by_id'], ['user_account.id'],
                            name=op.f('fk_atna_watch_added_by_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_atna_watch')),
    sa.UniqueConstraint('patient_id', name=op.f('uq_atna_watch_patient_id'))
    )

    install_partitioning(op.get_bind())

def downgrade():
    drop_partitioning(op.get_bind())
    op.drop_table('atna_watch')
    with op.batch_alter_table('atna_source', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_atna_source_asset_id'))

    op.drop_table('atna_source')
    op.drop_table('atna_receiver')
    with op.batch_alter_table('atna_quarantine', schema=None) as batch_op:
        batch_op.drop_index('ix_atna_quarantine_received_at')
        batch_op.drop_index('ix_atna_quarantine_reason')

    op.drop_table('atna_quarantine')
    with op.batch_alter_table('atna_message_ref', schema=None) as batch_op:
        batch_op.drop_index('ix_atna_message_ref_value')

    op.drop_table('atna_message_ref')
    with op.batch_alter_table('atna_message', schema=None) as batch_op:
        batch_op.drop_index('ix_atna_message_user_time')
        batch_op.drop_index('ix_atna_message_study_uid')
        batch_op.drop_index('ix_atna_message_patient_time')
        batch_op.drop_index('ix_atna_message_event_time')
        batch_op.drop_index('ix_atna_message_batch')
        batch_op.drop_index('ix_atna_message_accession')

    op.drop_table('atna_message')
    with op.batch_alter_table('atna_batch', schema=None) as batch_op:
        batch_op.drop_index('ix_atna_batch_open')

    op.drop_table('atna_batch')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(sa.schema.DropSequence(sa.Sequence('atna_message_id_seq')))
