"""Compliance test fixtures: a frozen clock, old audit events, tampering, a scratch record class."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import pytest
import time_machine
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, delete, select, text

from audit import record
from audit.retention.registry import HoldScope, RecordClass, register_record_class
from audit.trail.guards import install_audit_guards
from core import audit_sink
from core.extensions import db

NOW = datetime(2036, 6, 15, 12, 0, tzinfo=UTC)

TEST_ACTIONS = {
    "test.event": "Event written by the test suite",
    "test.compliance": "Event written by the compliance tests",
}


def at(year: int, month: int = 1, day: int = 1, hour: int = 12) -> datetime:
    """An aware UTC moment."""
    return datetime(year, month, day, hour, tzinfo=UTC)


def write_events(app, when: datetime, n: int = 1, **fields) -> None:
    """Append ``n`` events as if written at ``when`` (as the test action ``test.compliance``)."""
    audit_sink.register_actions(app, TEST_ACTIONS)
    with time_machine.travel(when, tick=False), app.app_context():
        for i in range(n):
            record("test.compliance", object_type=fields.get("object_type", "thing"),
                   object_id=fields.get("object_id", i), details=fields.get("details", {"i": i}),
                   user=fields.get("user"), username=fields.get("username"),
                   client_address=fields.get("client_address"))
        db.session.commit()


def is_postgres(app) -> bool:
    """Whether the test runs on PostgreSQL."""
    return app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql")


@pytest.fixture
def tamper(app) -> Iterator:
    """Change an event's details behind the app's back (the guard triggers come back afterwards)."""

    def change(seq: int, details: str = '{"forged":true}') -> None:
        with app.app_context():
            if is_postgres(app):
                db.session.execute(text("DROP TRIGGER audit_event_no_change ON audit_event"))
            else:
                db.session.execute(text("DROP TRIGGER audit_event_no_update"))
            db.session.execute(text("UPDATE audit_event SET details = :d WHERE seq = :s"),
                               {"d": details, "s": seq})
            db.session.commit()

    yield change
    with app.app_context(), db.engine.begin() as connection:
        install_audit_guards(connection)


@pytest.fixture
def frozen() -> Iterator:
    """Freeze the clock at NOW; ``frozen.move_to(when)`` moves it."""
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


# A record class over a table of its own, to prove the engine without any domain package.
_meta = MetaData()
test_records = Table("compliance_test_record", _meta,
                     Column("id", Integer, primary_key=True),
                     Column("number", String(20)),
                     Column("closed_at", DateTime(timezone=True)))


def _candidates(cutoff: datetime, anchor: str):
    return select(test_records.c.id, test_records.c.closed_at).where(test_records.c.closed_at < cutoff)


def _held(ids: Sequence[int], holds: Sequence[HoldScope]) -> set[int]:
    found: set[int] = set()
    for hold in holds:
        query = select(test_records.c.id).where(test_records.c.id.in_(list(ids)))
        if hold.object_type == "ticket":
            query = query.where(test_records.c.number == hold.object_key)
        elif hold.record_class == "test_records":
            if hold.start:
                query = query.where(test_records.c.closed_at >= hold.start)
            if hold.end:
                query = query.where(test_records.c.closed_at <= hold.end)
        else:
            continue
        found.update(db.session.execute(query).scalars())
    return found


def _purge(ids: Sequence[int]) -> int:
    return db.session.execute(delete(test_records).where(test_records.c.id.in_(list(ids)))).rowcount


TEST_CLASS = RecordClass(key="test_records", label="Test records", anchors=("closed",), default_years=1,
                         floor_years=0, floor_rule="", candidates=_candidates, held=_held, purge=_purge)


@pytest.fixture
def scratch_class(app) -> Iterator:
    """Register the test record class with its table; add(number, closed_at) inserts a record."""
    with app.app_context():
        _meta.create_all(db.engine)
    register_record_class(app, TEST_CLASS)

    def add(number: str, closed_at: datetime) -> int:
        with app.app_context():
            new_id = db.session.execute(test_records.insert().values(
                number=number, closed_at=closed_at)).inserted_primary_key[0]
            db.session.commit()
            return new_id

    yield add
    with app.app_context():
        db.session.remove()
        _meta.drop_all(db.engine)


def remaining_test_records(app) -> list[str]:
    """Numbers of the test records still stored."""
    with app.app_context():
        return sorted(db.session.execute(select(test_records.c.number)).scalars())
