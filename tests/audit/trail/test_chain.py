"""The keyed audit chain: one writer, append-only, tamper-evident, purgeable by prefix."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import DBAPIError

from audit import record
from audit.trail import chain
from audit.trail.chain import PURGE_CACHE_KIB, chain_head, purge_through, record_each, verify_chain
from audit.trail.guards import install_audit_guards
from audit.trail.keys import make_key
from audit.trail.models import GENESIS_HASH, AuditCheckpoint, AuditEvent
from audit.trail.sealing import event_hash, iso_utc
from core.extensions import db
from tests.helpers import require_postgres


def is_postgres(app) -> bool:
    """Whether this test runs on PostgreSQL."""
    return app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql")


def append(app, n: int) -> None:
    """Append ``n`` events, each in its own transaction."""
    with app.app_context():
        for i in range(n):
            record("test.event", object_type="thing", object_id=i, details={"i": i, "note": "é"})
            db.session.commit()


def raw(app, *statements: str) -> None:
    """Run SQL behind the app's back and commit."""
    with app.app_context():
        for statement in statements:
            db.session.execute(text(statement))
        db.session.commit()


def drop_update_guard(app) -> str:
    """What an attacker with database access runs to allow UPDATEs."""
    if is_postgres(app):
        return "DROP TRIGGER audit_event_no_change ON audit_event"
    return "DROP TRIGGER audit_event_no_update"


def drop_delete_guard(app) -> str:
    """What an attacker with database access runs to allow DELETEs."""
    if is_postgres(app):
        return "DROP TRIGGER audit_event_no_change ON audit_event"
    return "DROP TRIGGER audit_event_no_delete"


@pytest.fixture
def restore_guards(app):
    """Put the triggers back after a test that dropped them (PostgreSQL is shared)."""
    yield
    with app.app_context(), db.engine.begin() as connection:
        install_audit_guards(connection)


def test_events_chain_from_genesis_and_verify(app):
    append(app, 5)
    with app.app_context():
        rows = list(db.session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars())
        result = verify_chain()
        head = chain_head()
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert result.ok and result.count == 5 and result.head_seq == 5
    assert result.head_hash == rows[-1].hash == head[1]
    assert head == (5, rows[-1].hash, 5)
    assert rows[0].details == '{"i":0,"note":"é"}'


def test_events_appended_at_once_each_name_their_object_and_seal_after_the_one_before(app, monkeypatch):
    monkeypatch.setattr(chain, "APPEND_BATCH", 3)  # seven events in three insert statements
    append(app, 2)
    with app.app_context():
        assert record_each("test.event", "thing", []) == []
        recorded = record_each("test.event", "thing", [(i, {"i": i}) for i in range(7)])
        record("test.event", object_type="thing", object_id="last")
        db.session.commit()
        rows = list(db.session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars())
        result = verify_chain()
    assert [r.seq for r in rows] == list(range(1, 11))
    assert [(r.object_id, r.details) for r in rows[2:9]] == [(str(i), f'{{"i":{i}}}') for i in range(7)]
    assert [(r.seq, r.hash) for r in rows[2:9]] == [(x.seq, x.hash) for x in recorded]
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert result.ok and result.count == 10


def test_events_appended_at_once_roll_back_with_the_callers_transaction(app):
    with app.app_context():
        record_each("test.event", "thing", [(i, None) for i in range(3)])
        db.session.rollback()
        assert db.session.execute(select(func.count()).select_from(AuditEvent)).scalar() == 0
    append(app, 1)
    with app.app_context():
        assert verify_chain().ok


def instance_keys(app) -> dict[int, bytes]:
    """The keys in the instance folder's key file, read as a person would read them."""
    text = (Path(app.config["PACSDESK_INSTANCE_PATH"]) / "audit_key").read_text()
    return {int(i): k.encode() for i, k in (line.split(":") for line in text.split())}


def test_stored_hash_is_an_hmac_sha256_under_the_key_kept_outside_the_database(app):
    append(app, 2)
    keys = instance_keys(app)
    with app.app_context():
        rows = db.session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
    for row in rows:
        fields = [row.seq, iso_utc(row.occurred_at), row.user_id, row.username, row.user_role,
                  row.client_address, row.action, row.object_type, row.object_id, row.outcome,
                  row.details, row.prev_hash, row.key_id]
        payload = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
        assert row.key_id == 1
        assert row.hash == hmac.new(keys[1], payload, hashlib.sha256).hexdigest()
        assert row.hash != hashlib.sha256(payload).hexdigest()


def test_empty_trail_verifies(app, runner):
    with app.app_context():
        result = verify_chain()
    assert result.ok and result.count == 0
    outcome = runner.invoke(args=["audit", "verify"])
    assert outcome.exit_code == 0
    assert "intact: 0 events" in outcome.output


def test_event_rolls_back_with_the_callers_transaction(app):
    with app.app_context():
        record("test.event")
        db.session.rollback()
        record("test.event")
        db.session.commit()
        assert db.session.execute(select(func.count()).select_from(AuditEvent)).scalar() == 1
        assert verify_chain().ok


def test_unknown_action_and_bad_outcome_are_refused(app):
    with app.app_context():
        with pytest.raises(ValueError, match="unknown audit action"):
            record("test.not_registered")
        with pytest.raises(ValueError, match="outcome"):
            record("test.event", outcome="maybe")


def test_verify_command_counts_events_and_audits_itself(app, runner):
    append(app, 3)
    outcome = runner.invoke(args=["audit", "verify"])
    assert outcome.exit_code == 0, outcome.output
    assert "intact: 3 events" in outcome.output
    with app.app_context():
        last = db.session.execute(select(AuditEvent).order_by(AuditEvent.seq.desc())).scalars().first()
        assert last.action == "audit.verify" and '"ok":true' in last.details
        assert verify_chain().count == 4


def test_raw_update_is_refused_by_the_trigger(app):
    append(app, 3)
    with app.app_context():
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text("UPDATE audit_event SET outcome = 'failure' WHERE seq = 2"))
        db.session.rollback()
        assert verify_chain().ok


def test_raw_delete_is_refused_by_the_trigger(app):
    append(app, 3)
    with app.app_context():
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text("DELETE FROM audit_event WHERE seq = 2"))
        db.session.rollback()
        assert verify_chain().count == 3


@pytest.mark.postgres
def test_postgres_refuses_update_delete_and_truncate(app):
    require_postgres()
    append(app, 3)
    with app.app_context():
        for statement in ("UPDATE audit_event SET details = '{}' WHERE seq = 1",
                          "DELETE FROM audit_event WHERE seq = 3",
                          "TRUNCATE audit_event"):
            with pytest.raises(DBAPIError, match="append-only"):
                db.session.execute(text(statement))
            db.session.rollback()
        assert verify_chain().count == 3


def test_update_after_dropping_the_trigger_makes_verify_fail_naming_the_event(
        app, runner, restore_guards):
    append(app, 5)
    raw(app, drop_update_guard(app),
        "UPDATE audit_event SET details = '{\"i\": 99}' WHERE seq = 3")
    outcome = runner.invoke(args=["audit", "verify"])
    assert outcome.exit_code == 1
    assert "BROKEN at event #3" in outcome.output
    assert "altered" in outcome.output


def test_rehashing_a_changed_event_without_the_key_is_caught_at_that_event(app, runner, restore_guards):
    append(app, 5)
    with app.app_context():
        row = db.session.execute(select(AuditEvent).where(AuditEvent.seq == 2)).scalar_one()
        forged = event_hash(make_key(1, b"a key the attacker made up, not ours"), row.seq,
                            row.occurred_at, row.user_id, row.username, row.user_role,
                            row.client_address, row.action, row.object_type, row.object_id,
                            "failure", row.details, row.prev_hash)
    raw(app, drop_update_guard(app),
        f"UPDATE audit_event SET outcome = 'failure', hash = '{forged}' WHERE seq = 2")
    outcome = runner.invoke(args=["audit", "verify"])
    assert outcome.exit_code == 1
    assert "BROKEN at event #2" in outcome.output and "keyed hash does not match" in outcome.output


def test_an_event_relinked_elsewhere_is_caught_by_its_link(app, runner, restore_guards):
    append(app, 5)
    raw(app, drop_update_guard(app), f"UPDATE audit_event SET prev_hash = '{'e' * 64}' WHERE seq = 3")
    outcome = runner.invoke(args=["audit", "verify"])
    assert outcome.exit_code == 1
    assert "BROKEN at event #3" in outcome.output and "does not link" in outcome.output


def test_delete_of_a_middle_row_makes_verify_fail_naming_the_missing_event(
        app, runner, restore_guards):
    append(app, 5)
    raw(app, drop_delete_guard(app), "DELETE FROM audit_event WHERE seq = 3")
    outcome = runner.invoke(args=["audit", "verify"])
    assert outcome.exit_code == 1
    assert "event #3 is missing" in outcome.output


def test_delete_of_the_first_rows_without_a_purge_is_caught(app, runner, restore_guards):
    append(app, 5)
    raw(app, drop_delete_guard(app), "DELETE FROM audit_event WHERE seq <= 2")
    outcome = runner.invoke(args=["audit", "verify"])
    assert outcome.exit_code == 1
    assert "events before #3 are missing" in outcome.output


def test_event_inserted_behind_the_apps_back_with_a_made_up_hash_is_caught(app, runner):
    append(app, 3)
    with app.app_context():
        head = db.session.execute(select(AuditEvent).where(AuditEvent.seq == 3)).scalar_one()
        db.session.execute(text(
            "INSERT INTO audit_event (seq, occurred_at, action, outcome, details, prev_hash, hash) "
            "VALUES (4, :at, 'user.login', 'success', '{}', :prev, :forged)"),
            {"at": head.occurred_at.replace(tzinfo=None) if not is_postgres(app) else head.occurred_at,
             "prev": head.hash, "forged": "f" * 64})
        db.session.commit()
    outcome = runner.invoke(args=["audit", "verify"])
    assert outcome.exit_code == 1
    assert "BROKEN at event #4" in outcome.output


def test_purge_keeps_the_rest_verifiable(app, runner):
    append(app, 10)
    with app.app_context():
        removed = purge_through(6, "older than six years")
        db.session.commit()
        result = verify_chain()
        first = db.session.execute(select(func.min(AuditEvent.seq))).scalar()
        checkpoint = db.session.execute(select(AuditCheckpoint)).scalar_one()
    assert removed == 6
    assert first == 7
    assert checkpoint.purged_through_seq == 6 and checkpoint.purged_count == 6
    assert result.ok and result.count == 5  # events 7..10 and the audit.purged event
    append(app, 2)
    outcome = runner.invoke(args=["audit", "verify"])
    assert outcome.exit_code == 0 and "intact: 7 events" in outcome.output


@pytest.mark.sqlite_only
def test_a_purge_deletes_with_a_larger_page_cache_and_gives_it_back(app):
    append(app, 10)
    during = []

    def cache_at_delete(conn, cursor, statement, *args) -> None:
        """The page cache the purge's DELETE runs with."""
        if statement.startswith("DELETE FROM audit_event"):
            during.append(conn.connection.driver_connection.execute("PRAGMA cache_size").fetchone()[0])

    with app.app_context():
        connection = db.session.connection()
        before = connection.exec_driver_sql("PRAGMA cache_size").scalar_one()
        event.listen(db.engine, "before_cursor_execute", cache_at_delete)
        try:
            assert purge_through(6, "older than six years") == 6
        finally:
            event.remove(db.engine, "before_cursor_execute", cache_at_delete)
        after = connection.exec_driver_sql("PRAGMA cache_size").scalar_one()
        db.session.commit()
    assert during == [-PURGE_CACHE_KIB]
    assert after == before  # a pooled connection keeps no 32 MB cache once the purge is done


def test_tampering_after_a_purge_is_still_detected(app, runner, restore_guards):
    append(app, 10)
    with app.app_context():
        purge_through(4, "retention")
        db.session.commit()
    raw(app, drop_update_guard(app), "UPDATE audit_event SET object_id = 'x' WHERE seq = 8")
    outcome = runner.invoke(args=["audit", "verify"])
    assert outcome.exit_code == 1 and "BROKEN at event #8" in outcome.output


def test_deleting_more_than_the_purge_covered_is_detected(app, runner, restore_guards):
    append(app, 10)
    with app.app_context():
        purge_through(4, "retention")
        db.session.commit()
    raw(app, drop_delete_guard(app), "DELETE FROM audit_event WHERE seq = 5")
    outcome = runner.invoke(args=["audit", "verify"])
    assert outcome.exit_code == 1 and "events before #6 are missing" in outcome.output


def test_forged_checkpoint_is_detected(app, runner, restore_guards):
    append(app, 10)
    with app.app_context():
        purge_through(4, "retention")
        db.session.commit()
    raw(app, drop_delete_guard(app), "DELETE FROM audit_event WHERE seq = 5",
        "UPDATE audit_checkpoint SET purged_through_seq = 5")
    outcome = runner.invoke(args=["audit", "verify"])
    assert outcome.exit_code == 1 and "checkpoint before #6 was forged or altered" in outcome.output


def test_purge_of_a_missing_event_is_refused(app):
    append(app, 2)
    with app.app_context(), pytest.raises(ValueError, match="no audit event #9"):
        purge_through(9, "retention")


def test_appends_after_purging_everything_continue_the_chain(app):
    append(app, 3)
    with app.app_context():
        purge_through(3, "retention")
        db.session.commit()
    append(app, 1)
    with app.app_context():
        seqs = list(db.session.execute(select(AuditEvent.seq).order_by(AuditEvent.seq)).scalars())
        assert seqs == [4, 5]
        assert verify_chain().ok


def _concurrent_appends(app, writers: int, per_writer: int) -> None:
    """``writers`` threads, each with its own connection, append ``per_writer`` events."""
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def writer(n: int) -> None:
        try:
            with app.app_context():
                start.wait()
                for i in range(per_writer):
                    record("test.event", object_type="writer", object_id=n, details={"i": i})
                    db.session.commit()
                db.session.remove()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)


@pytest.mark.postgres
def test_eight_concurrent_writers_on_postgres_never_fork_the_chain(app):
    require_postgres()
    _concurrent_appends(app, writers=8, per_writer=200)
    with app.app_context():
        result = verify_chain()
        seqs = list(db.session.execute(select(AuditEvent.seq).order_by(AuditEvent.seq)).scalars())
        per_writer = dict(db.session.execute(
            select(AuditEvent.object_id, func.count()).group_by(AuditEvent.object_id)).all())
    assert result.ok, result.summary()
    assert result.count == 1600
    assert seqs == list(range(1, 1601))
    assert per_writer == {str(n): 200 for n in range(8)}


def test_concurrent_writers_keep_one_chain_on_either_database(app):
    _concurrent_appends(app, writers=4, per_writer=25)
    with app.app_context():
        result = verify_chain()
    assert result.ok and result.count == 100


def test_a_long_verification_never_blocks_the_next_writer(app):
    """Verification reads a snapshot: events are appended and committed while it is open."""
    from core.database import snapshot_connection

    with app.app_context():
        record("user.login", username="radiologist")
        db.session.commit()
        with snapshot_connection() as reader:
            seen = reader.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
            record("user.login", username="technologist")
            db.session.commit()
            still = reader.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
        # SQLite keeps the reader's snapshot; PostgreSQL reads what was committed since.
        assert (seen, still) in {(1, 1), (1, 2)}
        assert verify_chain().count == 2


def test_deleting_the_newest_events_after_a_verification_is_detected(app, runner, restore_guards):
    append(app, 5)
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0  # verified up to #5
    raw(app, drop_delete_guard(app), "DELETE FROM audit_event WHERE seq >= 4")
    outcome = runner.invoke(args=["audit", "verify"])
    assert outcome.exit_code == 1
    assert "events #4 to #5 are missing" in outcome.output


def test_rewriting_a_verified_event_with_fresh_hashes_is_detected(app, runner, restore_guards):
    append(app, 3)
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0  # verified and anchored up to #3
    with app.app_context():
        rows = db.session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
        forged = [(r.seq, r.occurred_at, r.user_id, r.username, r.user_role, r.client_address,
                   r.action, r.object_type, r.object_id, r.outcome, r.details) for r in rows]
    raw(app, drop_update_guard(app))
    prev = GENESIS_HASH
    with app.app_context():
        for values in forged:  # an attacker re-chains the whole trail after changing #2
            details = '{"i":99}' if values[0] == 2 else values[10]
            digest = event_hash(None, *values[:10], details, prev)
            db.session.execute(text("UPDATE audit_event SET details = :d, prev_hash = :p, "
                                    "hash = :h, key_id = 0 WHERE seq = :s"),
                               {"d": details, "p": prev, "h": digest, "s": values[0]})
            prev = digest
        db.session.commit()
    outcome = runner.invoke(args=["audit", "verify"])
    assert outcome.exit_code == 1
    assert "event #3 differs from the one anchor #1" in outcome.output
    outcome = runner.invoke(args=["audit", "verify", "--full"])
    assert outcome.exit_code == 1
    assert "BROKEN at event #3" in outcome.output


def test_a_purge_permit_never_lets_the_newer_events_go(app):
    append(app, 5)
    with app.app_context():
        db.session.execute(text("INSERT INTO audit_purge_permit (id, through_seq) VALUES (1, 2)"))
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text("DELETE FROM audit_event WHERE seq = 5"))
        db.session.rollback()
        db.session.execute(text("INSERT INTO audit_purge_permit (id, through_seq) VALUES (1, 2)"))
        removed = db.session.execute(text("DELETE FROM audit_event WHERE seq <= 2")).rowcount
        db.session.rollback()
    assert removed == 2
