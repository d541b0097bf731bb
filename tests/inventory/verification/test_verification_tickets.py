"""Automatic help desk tickets: one per outage, a recovery reply, resolution when configured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import func, select

from audit.trail.models import AuditEvent
from core.extensions import db
from helpdesk.models import Category, Ticket, TicketComment
from inventory.models import Asset
from inventory.verification.dicom import EchoResult, Outcome
from inventory.verification.models import NodeState
from inventory.verification.services import record_check, sweep
from tests.helpers import require_postgres
from tests.inventory.conftest import record_at_once

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OK = EchoResult(Outcome.OK, "C-ECHO succeeded in 12 ms", 12.0)
REJECTED = EchoResult(Outcome.REJECTED, "Association rejected (permanent, service user): called AE "
                      "title not recognised", 4.0, 1, 1, 7)


@pytest.fixture(autouse=True)
def _fast(fast_verification):
    """Every test here uses short timeouts."""


def feed(app, asset_id: int, result: EchoResult, at: datetime) -> None:
    """Record ``result`` for the node at ``at`` and commit."""
    with time_machine.travel(at, tick=False), app.app_context():
        record_check(db.session.get(Asset, asset_id), result, "schedule", audit_each=False)
        db.session.commit()


def tickets() -> list[Ticket]:
    """Every ticket, oldest first."""
    return list(db.session.execute(select(Ticket).order_by(Ticket.id)).scalars())


def test_node_going_down_opens_exactly_one_ticket_linked_to_the_asset(app, make_node):
    asset_id = make_node("CT-01", 104, name="CT scanner Main", ae_title="CT_MAIN")
    feed(app, asset_id, REJECTED, T0)
    with app.app_context():
        assert tickets() == [], "one failure is not an outage"
    for minutes in (5, 10, 15, 20):
        feed(app, asset_id, REJECTED, T0 + timedelta(minutes=minutes))
    with app.app_context():
        (ticket,) = tickets()
        category = db.session.get(Category, ticket.category_id)
        assert category.code == "dicom_node_down"
        assert ticket.asset_id == asset_id and ticket.priority == "P2"
        assert ticket.requester_id is None and ticket.dedup_key == f"node-down:{asset_id}"
        assert "CT scanner Main" in ticket.title and "CT-01" in ticket.title
        assert "called AE title not recognised" in ticket.description
        assert "127.0.0.1:104" in ticket.description and "CT_MAIN" in ticket.description
        assert db.session.get(NodeState, asset_id).open_ticket_id == ticket.id


def test_recovery_replies_with_recovery_time_and_downtime_and_resolves(app, make_node):
    asset_id = make_node("CT-01", 104)
    feed(app, asset_id, REJECTED, T0)
    feed(app, asset_id, REJECTED, T0 + timedelta(minutes=5))
    feed(app, asset_id, OK, T0 + timedelta(minutes=47, seconds=30))
    with app.app_context():
        (ticket,) = tickets()
        assert ticket.status == "resolved"
        (reply,) = db.session.execute(select(TicketComment).where(
            TicketComment.ticket_id == ticket.id)).scalars()
        assert reply.author_id is None and not reply.is_internal
        assert "recovered at 2026-03-02 09:47:30" in reply.body
        assert "47 min 30 s of downtime" in reply.body
        assert db.session.get(NodeState, asset_id).open_ticket_id is None


def test_recovery_only_replies_when_auto_resolve_is_off(app, make_node):
    app.config["PACSDESK_AUTO_RESOLVE"] = False
    asset_id = make_node("CT-01", 104)
    feed(app, asset_id, REJECTED, T0)
    feed(app, asset_id, REJECTED, T0 + timedelta(minutes=5))
    feed(app, asset_id, OK, T0 + timedelta(minutes=10))
    with app.app_context():
        (ticket,) = tickets()
        assert ticket.status in ("new", "open")
        assert db.session.query(TicketComment).filter_by(ticket_id=ticket.id).count() == 1


def test_a_new_outage_after_recovery_opens_a_new_ticket(app, make_node):
    asset_id = make_node("CT-01", 104)
    for minutes, result in ((0, REJECTED), (5, REJECTED), (10, OK), (90, REJECTED), (95, REJECTED)):
        feed(app, asset_id, result, T0 + timedelta(minutes=minutes))
    with app.app_context():
        first, second = tickets()
        assert first.status == "resolved" and second.status == "new"


def test_outage_with_the_ticket_still_open_adds_no_second_ticket(app, make_node):
    app.config["PACSDESK_AUTO_RESOLVE"] = False
    asset_id = make_node("CT-01", 104)
    for minutes, result in ((0, REJECTED), (5, REJECTED), (10, OK), (90, REJECTED), (95, REJECTED)):
        feed(app, asset_id, result, T0 + timedelta(minutes=minutes))
    with app.app_context():
        assert len(tickets()) == 1, "the first outage's ticket is still open: no duplicate"


def test_sweeps_of_a_dead_node_open_one_ticket_with_the_real_failure(app, closed_port, make_node):
    asset_id = make_node("US-01", closed_port)
    with app.app_context():
        for _ in range(3):
            sweep()
        (ticket,) = tickets()
        assert ticket.asset_id == asset_id
        assert "TCP connection refused" in ticket.description
        assert db.session.get(NodeState, asset_id).state == "down"


@pytest.mark.postgres
def test_two_failures_recorded_at_once_on_postgresql_open_one_ticket(app, make_node):
    require_postgres()
    asset_id = make_node("CT-01", 104)
    feed(app, asset_id, REJECTED, T0)
    record_at_once(app, asset_id, REJECTED)
    with app.app_context():
        (ticket,) = tickets()
        assert ticket.status == "new" and ticket.dedup_key == f"node-down:{asset_id}"
        assert db.session.scalar(select(func.count(AuditEvent.seq))
                                 .where(AuditEvent.action == "node.down")) == 1
        state = db.session.get(NodeState, asset_id)
        assert (state.state, state.consecutive_failures) == ("down", 3)
        assert state.open_ticket_id == ticket.id
