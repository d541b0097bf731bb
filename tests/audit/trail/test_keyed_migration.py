"""Migration 0008 on a trail written before keys: the old events keep verifying, keys seal them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, select, text

from audit.trail.models import AuditCheckpoint, AuditEvent
from audit.trail.sealing import canonical_details, event_hash
from tests.test_migrations import run_pacsdesk, scratch_postgres  # noqa: F401 - fixture

PURGED_HASH = "c" * 64  # the hash event #2 had before a retention purge removed #1 and #2
LEGACY_COLUMNS = ("seq", "occurred_at", "user_id", "username", "user_role", "client_address",
                  "action", "object_type", "object_id", "outcome", "details", "prev_hash")


def legacy_events(first_time: datetime) -> list[dict]:
    """Events #3 to #6 as the SHA-256 chain wrote them, #4 recording the purge of #1 and #2."""
    rows, prev = [], PURGED_HASH
    for seq in range(3, 7):
        details = ({"through_seq": 2, "last_hash": PURGED_HASH, "count": 2,
                    "reason": "retention schedule"} if seq == 4 else {"i": seq})
        values = (seq, first_time + timedelta(minutes=seq), None, "radiologist", None, "10.1.2.3",
                  "audit.purged" if seq == 4 else "user.login", "audit_event" if seq == 4 else None,
                  None, "success", canonical_details(details), prev)
        prev = event_hash(None, *values)
        rows.append({**dict(zip(LEGACY_COLUMNS, values, strict=True)), "hash": prev})
    return rows


def write_legacy_trail(url: str) -> list[dict]:
    """A trail at revision 0004: a legacy purge checkpoint and four SHA-256-chained events."""
    engine = create_engine(url)
    rows = legacy_events(datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    with engine.begin() as connection:
        connection.execute(insert(AuditCheckpoint.__table__).values(
            purged_through_seq=2, last_purged_hash=PURGED_HASH, purged_count=2,
            created_at=datetime(2026, 3, 1, 7, 0, tzinfo=UTC)))
        for row in rows:
            connection.execute(insert(AuditEvent.__table__).values(**row))
    engine.dispose()
    return rows


def rechain_from(url: str, rows: list[dict], seq: int) -> None:
    """What someone with the table (not the key) does: rewrite event ``seq`` and re-hash after it."""
    engine = create_engine(url)
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER" if postgres
                                else "DROP TRIGGER audit_event_no_update"))
        prev = next(r for r in rows if r["seq"] == seq)["prev_hash"]
        for row in (r for r in rows if r["seq"] >= seq):
            details = '{"i":"rewritten"}' if row["seq"] == seq else row["details"]
            digest = event_hash(None, *[row[c] for c in LEGACY_COLUMNS[:10]], details, prev)
            connection.execute(text("UPDATE audit_event SET details = :d, prev_hash = :p, hash = :h "
                                    "WHERE seq = :s"), {"d": details, "p": prev, "h": digest,
                                                        "s": row["seq"]})
            prev = digest
        if postgres:
            connection.execute(text("ALTER TABLE audit_event ENABLE TRIGGER USER"))
    engine.dispose()


def upgrade_a_legacy_trail(tmp_path: Path, url: str, engine_url: str) -> None:
    """The whole story on one database."""
    done = run_pacsdesk(tmp_path, url, "db", "upgrade", "0004")
    assert done.returncode == 0, done.stderr
    rows = write_legacy_trail(engine_url)
    done = run_pacsdesk(tmp_path, url, "db", "upgrade")
    assert done.returncode == 0, done.stderr

    engine = create_engine(engine_url)
    with engine.connect() as connection:
        seal = connection.execute(select(AuditEvent.__table__).where(AuditEvent.seq == 7)).one()
        legacy = connection.execute(select(AuditEvent.key_id).where(AuditEvent.seq < 7)).scalars().all()
    engine.dispose()
    assert legacy == [0, 0, 0, 0]
    assert (seal.action, seal.key_id, seal.prev_hash) == ("audit.key_rotated", 1, rows[-1]["hash"])
    assert json.loads(seal.details) == {
        "key_id": 1, "previous_key_id": 0, "legacy_through_seq": 6, "purged_through_seq": 2,
        "purged_hash": PURGED_HASH, "reason": "keyed audit chain introduced"}

    verified = run_pacsdesk(tmp_path, url, "audit", "verify", "--full")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("audit trail intact: 5 events, head #7")

    down = run_pacsdesk(tmp_path, url, "db", "downgrade", "0004")
    assert down.returncode != 0 and "cannot be undone on this trail" in down.stderr

    rechain_from(engine_url, rows, 5)
    broken = run_pacsdesk(tmp_path, url, "audit", "verify", "--full")
    assert broken.returncode == 1
    assert "BROKEN at event #7: event #7 does not link to the event before it" in broken.stdout


def test_a_sqlite_trail_from_before_keys_is_sealed_and_still_verifies(tmp_path):
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    upgrade_a_legacy_trail(tmp_path, url, url)


def test_a_postgres_trail_from_before_keys_is_sealed_and_still_verifies(tmp_path, scratch_postgres):  # noqa: F811
    upgrade_a_legacy_trail(tmp_path, scratch_postgres,
                           scratch_postgres.replace("postgresql://", "postgresql+psycopg://", 1))
