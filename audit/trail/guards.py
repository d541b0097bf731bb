"""Database triggers that make the audit trail append-only, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

_SQLITE = [
    """CREATE TRIGGER IF NOT EXISTS audit_event_no_update BEFORE UPDATE ON audit_event
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_event_no_delete BEFORE DELETE ON audit_event
    WHEN NOT EXISTS (SELECT 1 FROM audit_purge_permit WHERE through_seq >= OLD.seq)
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused'); END""",
]

_POSTGRES = [
    """CREATE OR REPLACE FUNCTION audit_event_guard() RETURNS trigger AS $$
    BEGIN
      IF TG_OP = 'DELETE' AND EXISTS (
          SELECT 1 FROM audit_purge_permit WHERE through_seq >= OLD.seq) THEN
        RETURN OLD;
      END IF;
      RAISE EXCEPTION USING
        MESSAGE = 'audit events are append-only: ' || TG_OP || ' refused',
        ERRCODE = 'insufficient_privilege';
    END $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS audit_event_no_change ON audit_event",
    """CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION audit_event_guard()""",
    "DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event",
    """CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_guard()""",
]


def install_audit_guards(connection: Connection) -> None:
    """Create the append-only triggers for the connection's dialect."""
    statements = _POSTGRES if connection.dialect.name == "postgresql" else _SQLITE
    for statement in statements:
        connection.exec_driver_sql(statement)


def drop_audit_guards(connection: Connection) -> None:
    """Remove the triggers (used by the migration's downgrade)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("DROP TRIGGER IF EXISTS audit_event_no_change ON audit_event")
        connection.exec_driver_sql("DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event")
        connection.exec_driver_sql("DROP FUNCTION IF EXISTS audit_event_guard()")
    else:
        connection.exec_driver_sql("DROP TRIGGER IF EXISTS audit_event_no_update")
        connection.exec_driver_sql("DROP TRIGGER IF EXISTS audit_event_no_delete")


def install_after_create(target: Any, connection: Connection, **kw: Any) -> None:
    """Install the guards whenever the schema is created with ``create_all``."""
    install_audit_guards(connection)
