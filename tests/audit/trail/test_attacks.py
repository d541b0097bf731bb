"""The audit trail against hostile insiders, each attack run as the attacker would run it.

On PostgreSQL: a second role with SELECT, INSERT, UPDATE and DELETE rights only (created here,
dropped afterwards), or the table owner (the test's own connection), which may disable the
append-only triggers. On SQLite: direct access to the database file with the sqlite3 module.
The attacker holds the application's code but not its audit key or its anchor log.
"""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from audit import record
from audit.trail.guards import install_audit_guards
from audit.trail.keys import make_key
from audit.trail.models import AuditEvent
from audit.trail.sealing import event_hash, event_payload
from core.extensions import db
from tests.helpers import require_postgres

TABLES = ("audit_event", "audit_purge_permit", "audit_checkpoint", "audit_chain_verification")
Run = Callable[..., list[tuple[Any, ...]]]


def is_postgres(app) -> bool:
    """Whether the test runs on PostgreSQL."""
    return app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql")


def trail_of(app, runner, n: int = 60) -> None:
    """``n`` events, verified and anchored by `pacsdesk audit verify` (its own event is #n+1)."""
    with app.app_context():
        for i in range(n):
            record("test.event", object_type="thing", object_id=i, details={"i": i})
            db.session.commit()
    verified = runner.invoke(args=["audit", "verify"])
    assert verified.exit_code == 0 and f"head #{n}" in verified.output, verified.output


def verify(runner, *args: str):
    """`pacsdesk audit verify ARGS`."""
    return runner.invoke(args=["audit", "verify", *args])


@contextmanager
def sqlite_file(app) -> Iterator[Run]:
    """The database file opened with the sqlite3 module, behind the application's back."""
    path = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).database
    connection = sqlite3.connect(path)

    def run(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return connection.execute(sql, params).fetchall()

    try:
        yield run
        connection.commit()
    finally:
        connection.close()


def _pg_params(app) -> dict[str, Any]:
    """Connection parameters of the test database."""
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    return {"host": url.host, "port": url.port or 5432, "dbname": url.database}


@pytest.mark.postgres
@contextmanager
def dml_role(app) -> Iterator[Run]:
    """A PostgreSQL role with DML rights only on the audit tables, connected; dropped afterwards."""
    require_postgres()
    role = f"pacsdesk_dml_{uuid.uuid4().hex[:8]}"
    with db.engine.begin() as owner:
        owner.execute(text(f"CREATE ROLE {role} LOGIN"))
        owner.execute(text(f"GRANT USAGE ON SCHEMA public TO {role}"))
        owner.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(TABLES)} TO {role}"))
        owner.execute(text(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}"))
    try:
        with psycopg.connect(**_pg_params(app), user=role) as connection:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):  # no schema rights
                connection.execute("ALTER TABLE audit_event DISABLE TRIGGER USER")
            connection.rollback()

            def run(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
                cursor = connection.execute(sql.replace("?", "%s"), params)
                return cursor.fetchall() if cursor.description else []

            yield run
            connection.commit()
    finally:
        with db.engine.begin() as owner:
            owner.execute(text(f"DROP OWNED BY {role}"))
            owner.execute(text(f"DROP ROLE {role}"))


@contextmanager
def table_owner(app) -> Iterator[Run]:
    """The owner's connection with the append-only triggers disabled (PostgreSQL) or dropped
    from the file (SQLite); the tests' fixture puts them back."""
    if not is_postgres(app):
        with sqlite_file(app) as run:
            run("DROP TRIGGER audit_event_no_update")
            run("DROP TRIGGER audit_event_no_delete")
            yield run
        return
    with db.engine.begin() as owner:
        owner.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))

        def run(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
            names = {f"p{i}": v for i, v in enumerate(params)}
            statement = sql
            for name in names:
                statement = statement.replace("?", f":{name}", 1)
            result = owner.execute(text(statement), names)
            return list(result) if result.returns_rows else []

        yield run
        owner.execute(text("ALTER TABLE audit_event ENABLE TRIGGER USER"))


@contextmanager
def dml_only(app) -> Iterator[Run]:
    """What someone with data rights but no schema rights uses: the DML role, or the SQLite file
    with its triggers left in place."""
    if is_postgres(app):
        with dml_role(app) as run:
            yield run
    else:
        with sqlite_file(app) as run:
            yield run


@pytest.fixture
def restore_guards(app):
    """Put the append-only triggers back after a test that removed them."""
    yield
    with app.app_context(), db.engine.begin() as connection:
        install_audit_guards(connection)


def test_dml_rights_and_a_forged_purge_permit_cannot_hide_a_deleted_tail(app, runner):
    trail_of(app, runner)
    with app.app_context(), dml_only(app) as attacker:
        attacker("INSERT INTO audit_purge_permit (id, through_seq) VALUES (1, 999999999)")
        attacker("DELETE FROM audit_event WHERE seq > 50")
        attacker("DELETE FROM audit_purge_permit")
        attacker("DELETE FROM audit_chain_verification WHERE head_seq > 50")
        assert attacker("SELECT max(seq) FROM audit_event") == [(50,)]
    outcome = verify(runner)
    assert outcome.exit_code == 1, outcome.output
    assert "BROKEN at event #51: events #51 to #60 are missing: the trail ends at #50, but anchor #1" \
        in outcome.output


def test_the_owner_rewriting_an_event_and_rechaining_with_the_apps_hash_is_named(
        app, runner, restore_guards):
    trail_of(app, runner)
    forged_key = make_key(1, b"the attacker's guess at the key, 32+ characters long")
    with app.app_context():  # the attacker runs the application's own hash function
        rows = db.session.execute(select(AuditEvent).where(AuditEvent.seq >= 50)
                                  .order_by(AuditEvent.seq)).scalars().all()
        forged, link = [], rows[0].prev_hash
        for row in rows:
            details = '{"i":"forged"}' if row.seq == 50 else row.details
            digest = event_hash(forged_key, row.seq, row.occurred_at, row.user_id, row.username,
                                row.user_role, row.client_address, row.action, row.object_type,
                                row.object_id, row.outcome, details, link)
            forged.append((details, link, digest, row.seq))
            link = digest
        db.session.rollback()
    with app.app_context(), table_owner(app) as owner:
        for details, link, digest, seq in forged:
            owner("UPDATE audit_event SET details = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                  (details, link, digest, seq))
            owner("UPDATE audit_chain_verification SET head_hash = ? WHERE head_seq = ?", (digest, seq))
    outcome = verify(runner)
    assert outcome.exit_code == 1, outcome.output
    assert "BROKEN at event #50: event #50 was altered or forged: its keyed hash does not match" \
        in outcome.output


def test_a_forged_event_appended_with_a_correct_sha256_is_refused(app, runner):
    trail_of(app, runner)
    with app.app_context(), dml_only(app) as attacker:
        (seq, head), = attacker("SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1")
        at = "2026-03-01T02:00:00.000000Z"
        payload = event_payload(seq + 1, at, None, "mallory", "admin", "10.6.6.6", "user.login",
                                None, None, "success", "{}", head, 0)
        attacker("INSERT INTO audit_event (seq, occurred_at, username, user_role, client_address, "
                 "action, outcome, details, prev_hash, hash) VALUES (?, ?, 'mallory', 'admin', "
                 "'10.6.6.6', 'user.login', 'success', '{}', ?, ?)",
                 (seq + 1, "2026-03-01 02:00:00.000000", head, hashlib.sha256(payload).hexdigest()))
    outcome = verify(runner)
    assert outcome.exit_code == 1, outcome.output
    assert (f"BROKEN at event #{seq + 1}: event #{seq + 1} is sealed with the unkeyed legacy "
            "SHA-256 after keyed events") in outcome.output


def test_a_forged_event_claiming_the_key_id_is_refused(app, runner):
    trail_of(app, runner, 5)
    with app.app_context(), dml_only(app) as attacker:
        (seq, head), = attacker("SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1")
        payload = event_payload(seq + 1, "2026-03-01T02:00:00.000000Z", None, "mallory", None, None,
                                "user.login", None, None, "success", "{}", head, 1)
        attacker("INSERT INTO audit_event (seq, occurred_at, username, action, outcome, details, "
                 "prev_hash, hash, key_id) VALUES (?, ?, 'mallory', 'user.login', 'success', '{}', "
                 "?, ?, 1)",
                 (seq + 1, "2026-03-01 02:00:00.000000", head, hashlib.sha256(payload).hexdigest()))
    outcome = verify(runner)
    assert outcome.exit_code == 1, outcome.output
    assert f"event #{seq + 1} was altered or forged: its keyed hash does not match" in outcome.output


def test_deleting_every_event_and_every_verification_is_not_intact(app, runner, restore_guards):
    trail_of(app, runner)
    with app.app_context(), table_owner(app) as owner:
        owner("DELETE FROM audit_event")
        owner("DELETE FROM audit_chain_verification")
    outcome = verify(runner)
    assert outcome.exit_code == 1, outcome.output
    assert "intact" not in outcome.output
    assert "the trail is empty, but anchor #1 written" in outcome.output
    assert "recorded its head at #60: every event was deleted" in outcome.output


def test_a_deleted_prefix_needs_a_sealed_purge_not_a_permit_row(app, runner):
    trail_of(app, runner, 20)
    with app.app_context(), dml_only(app) as attacker:
        attacker("INSERT INTO audit_purge_permit (id, through_seq) VALUES (1, 10)")
        attacker("DELETE FROM audit_event WHERE seq <= 10")
        attacker("DELETE FROM audit_purge_permit")
    outcome = verify(runner)
    assert outcome.exit_code == 1, outcome.output
    assert "events before #11 are missing and no retention purge explains it" in outcome.output
    with app.app_context(), dml_only(app) as attacker:
        attacker("INSERT INTO audit_checkpoint (purged_through_seq, last_purged_hash, purged_count, "
                 "from_seq, key_id, mac, created_at) VALUES (10, ?, 10, 1, 1, ?, ?)",
                 ("a" * 64, "b" * 64, "2026-03-01 02:00:00.000000"))
    outcome = verify(runner)
    assert outcome.exit_code == 1, outcome.output
    assert "the retention checkpoint before #11 was forged or altered" in outcome.output


def test_a_deleted_middle_event_is_found_by_the_hourly_incremental_check(app, runner):
    trail_of(app, runner, 20)
    with app.app_context(), dml_only(app) as attacker:
        attacker("INSERT INTO audit_purge_permit (id, through_seq) VALUES (1, 12)")
        attacker("DELETE FROM audit_event WHERE seq = 12")
        attacker("DELETE FROM audit_purge_permit")
    outcome = verify(runner)
    assert outcome.exit_code == 1, outcome.output
    assert "BROKEN at event #12: event #12 is missing (next found is #13)" in outcome.output
