"""The walk: the database writes each payload exactly as the application seals it, and a row it
cannot write is judged on the application's own payload."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from audit import record
from audit.trail.guards import install_audit_guards
from audit.trail.models import AuditEvent
from audit.trail.sealing import event_payload, iso_utc
from audit.trail.walk import event_rows
from core.database import snapshot_connection
from core.extensions import db

AWKWARD = ['quote " backslash \\ slash /', "tab\tnl\ncr\rbell\x07 us\x1f del\x7f",
           "line sep \u2028 para sep \u2029", "éàü, 放射線, 🩻", "\ud7ff\ue000\uffff", ""]


def test_the_database_writes_every_payload_as_the_application_seals_it(app, runner):
    with app.app_context():
        for i, value in enumerate(AWKWARD):
            record("test.event", object_type=value or None, object_id=value, username=value,
                   client_address=None if i % 2 else value, details={"value": value, "n": i})
            db.session.commit()
        expected = {e.seq: event_payload(e.seq, iso_utc(e.occurred_at), e.user_id, e.username,
                                         e.user_role, e.client_address, e.action, e.object_type,
                                         e.object_id, e.outcome, e.details, e.prev_hash, e.key_id)
                    for e in db.session.execute(select(AuditEvent)).scalars()}
        db.session.rollback()
        with snapshot_connection() as conn, closing(event_rows(conn, 1, 100)) as batches:
            written = {row[0]: row[1].encode() for batch in batches for row in batch}
    assert written == expected
    assert runner.invoke(args=["audit", "verify", "--full"]).exit_code == 0


@pytest.fixture
def sqlite_only(app):
    """Rows only SQLite can hold (a value of another type than its column's); left out on PostgreSQL."""
    yield make_url(app.config["SQLALCHEMY_DATABASE_URI"]).database
    with app.app_context(), db.engine.begin() as connection:
        install_audit_guards(connection)


@pytest.mark.parametrize(("column", "value"), [
    ("details", b'{"i":2}'),
    ("occurred_at", "2026-03-01T02:00:00.000000"),
    ("username", 12345),
])
def test_a_value_of_the_wrong_type_is_an_alteration_not_a_crash(app, runner, sqlite_only, column, value):
    with app.app_context():
        for i in range(3):
            record("test.event", username="radiologist", details={"i": i})
            db.session.commit()
        db.session.remove()
    with closing(sqlite3.connect(sqlite_only)) as direct:
        direct.execute("DROP TRIGGER audit_event_no_update")
        direct.execute(f"UPDATE audit_event SET {column} = ? WHERE seq = 2", (value,))
        direct.commit()
    outcome = runner.invoke(args=["audit", "verify", "--full"])
    assert outcome.exit_code == 1, outcome.output
    assert "BROKEN at event #2: event #2 was altered or forged" in outcome.output


def test_a_time_rewritten_in_another_spelling_of_the_same_instant_is_an_alteration(
        app, runner, sqlite_only):
    with app.app_context():
        record("test.event")
        db.session.commit()
        stored = db.session.execute(text("SELECT occurred_at FROM audit_event")).scalar_one()
        db.session.remove()
    with closing(sqlite3.connect(sqlite_only)) as direct:
        direct.execute("DROP TRIGGER audit_event_no_update")
        direct.execute("UPDATE audit_event SET occurred_at = ?", (stored[:10] + "X" + stored[11:],))
        direct.commit()
    outcome = runner.invoke(args=["audit", "verify", "--full"])
    assert outcome.exit_code == 1 and "event #1 was altered or forged" in outcome.output
