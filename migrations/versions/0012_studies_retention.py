"""Imaging study retention: rules, per-archive deletion settings, study reviews and their studies

The default rules are stored by `pacsdesk setup` (reference data), audited, not here.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "imaging_retention_rule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("period", sa.String(length=20), nullable=False),
        sa.Column("anchor", sa.String(length=20), nullable=False),
        sa.Column("majority_age", sa.Integer(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["updated_by_id"],
            ["user_account.id"],
            name=op.f("fk_imaging_retention_rule_updated_by_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imaging_retention_rule")),
        sa.UniqueConstraint("kind", "modality", name="uq_imaging_retention_rule_kind_modality"),
    )
    op.create_table(
        "study_archive_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=20), nullable=False),
        sa.Column("orthanc_url", sa.String(length=300), nullable=False),
        sa.Column("orthanc_username", sa.String(length=120), nullable=False),
        sa.Column("password_file", sa.String(length=500), nullable=False),
        sa.Column("find_limit", sa.Integer(), nullable=True),
        sa.Column("timeout", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["asset.id"], name=op.f("fk_study_archive_settings_asset_id_asset")
        ),
        sa.ForeignKeyConstraint(
            ["updated_by_id"],
            ["user_account.id"],
            name=op.f("fk_study_archive_settings_updated_by_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study_archive_settings")),
        sa.UniqueConstraint("asset_id", name=op.f("uq_study_archive_settings_asset_id")),
    )
    op.create_table(
        "study_review",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("started_by_id", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("listed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("as_of", sa.Date(), nullable=True),
        sa.Column("approved_by_id", sa.Integer(), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("executed_by_id", sa.Integer(), nullable=True),
        sa.Column("executed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("method", sa.String(length=20), nullable=True),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("holds", sa.JSON(), nullable=False),
        sa.Column("studies_seen", sa.Integer(), nullable=False),
        sa.Column("flagged", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["approved_by_id"], ["user_account.id"], name=op.f("fk_study_review_approved_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(["asset_id"], ["asset.id"], name=op.f("fk_study_review_asset_id_asset")),
        sa.ForeignKeyConstraint(
            ["executed_by_id"], ["user_account.id"], name=op.f("fk_study_review_executed_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["started_by_id"], ["user_account.id"], name=op.f("fk_study_review_started_by_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study_review")),
    )
    with op.batch_alter_table("study_review", schema=None) as batch_op:
        batch_op.create_index("ix_study_review_started_at", ["started_at"], unique=False)
        batch_op.create_index(
            "uq_study_review_one_active",
            ["asset_id"],
            unique=True,
            sqlite_where=sa.text("status IN ('pending', 'approved', 'executing')"),
            postgresql_where=sa.text("status IN ('pending', 'approved', 'executing')"),
        )

    op.create_table(
        "study_review_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("review_id", sa.Integer(), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=200), nullable=False),
        sa.Column("accession_number", sa.String(length=200), nullable=False),
        sa.Column("study_date", sa.Date(), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("modalities", sa.String(length=100), nullable=False),
        sa.Column("instance_count", sa.Integer(), nullable=True),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("anchor_date", sa.Date(), nullable=False),
        sa.Column("keep_until", sa.Date(), nullable=False),
        sa.Column("age", sa.Integer(), nullable=True),
        sa.Column("held", sa.Boolean(), nullable=False),
        sa.Column("held_by", sa.Text(), nullable=False),
        sa.Column("flags", sa.String(length=200), nullable=False),
        sa.Column("approved", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("outcome_detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["review_id"], ["study_review.id"], name=op.f("fk_study_review_item_review_id_study_review")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study_review_item")),
        sa.UniqueConstraint("review_id", "study_uid", name="uq_study_review_item_study"),
    )
    with op.batch_alter_table("study_review_item", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_study_review_item_review_id"), ["review_id"], unique=False)


def downgrade():
    with op.batch_alter_table("study_review_item", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_study_review_item_review_id"))

    op.drop_table("study_review_item")
    with op.batch_alter_table("study_review", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_study_review_one_active",
            sqlite_where=sa.text("status IN ('pending', 'approved', 'executing')"),
            postgresql_where=sa.text("status IN ('pending', 'approved', 'executing')"),
        )
        batch_op.drop_index("ix_study_review_started_at")

    op.drop_table("study_review")
    op.drop_table("study_archive_settings")
    op.drop_table("imaging_retention_rule")
