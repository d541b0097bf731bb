"""JSON kept in text columns becomes JSON columns; a course's roles become a JSON list

The retention run's policies, counts, holds, digests and per-class figures and a report's
parameters were JSON written into text columns; a course's required roles were a
comma-separated string. The values are kept: text that holds JSON becomes a JSON value, and
"requester,technician" becomes ["requester", "technician"] ("" becomes []).

Revision ID: 0010
Revises: 0009
"""
import json

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

TEXT_JSON = {
    "retention_run": ("policies", "counts", "held_counts", "class_digests", "classes"),
    "report_job": ("params",),
}
course = sa.table("training_course", sa.column("id", sa.Integer()), sa.column("required_roles", sa.Text()))


def _retype(table, columns, new_type, old_type, postgres_using):
    """Change the type of ``columns``; PostgreSQL converts the values with ``postgres_using``."""
    if op.get_bind().dialect.name == "postgresql":
        for column in columns:
            op.alter_column(table, column, type_=new_type, existing_type=old_type,
                            postgresql_using=postgres_using.format(column=column))
        return
    with op.batch_alter_table(table, schema=None) as batch_op:
        for column in columns:
            batch_op.alter_column(column, type_=new_type, existing_type=old_type)


def _roles_as(convert):
    """Rewrite every course's roles with ``convert`` (old stored text -> new stored text)."""
    bind = op.get_bind()
    for course_id, roles in bind.execute(sa.select(course.c.id, course.c.required_roles)).all():
        bind.execute(course.update().where(course.c.id == course_id)
                     .values(required_roles=convert(roles)))


def upgrade():
    for table, columns in TEXT_JSON.items():
        _retype(table, columns, sa.JSON(), sa.Text(), "{column}::json")
    _roles_as(lambda roles: json.dumps(sorted(r for r in (roles or "").split(",") if r)))
    _retype("training_course", ("required_roles",), sa.JSON(), sa.String(length=200),
            "{column}::json")


def downgrade():
    _retype("training_course", ("required_roles",), sa.String(length=200), sa.JSON(),
            "{column}::text")
    _roles_as(lambda roles: ",".join(json.loads(roles or "[]")))
    for table, columns in TEXT_JSON.items():
        _retype(table, columns, sa.Text(), sa.JSON(), "{column}::text")
