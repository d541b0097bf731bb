"""Tickets PACS Desk opens itself (DICOM node down), de-duplicated, and the notification signals."""

from __future__ import annotations

from sqlalchemy import select

from core.extensions import db
from helpdesk import notifications
from helpdesk.models import Ticket
from helpdesk.services import (
    add_system_reply,
    find_open_system_ticket,
    open_system_ticket,
    resolve_system_ticket,
)


def test_same_fault_never_opens_two_open_tickets(app, audit_events):
    with app.app_context():
        first = open_system_ticket("node:7:down", "CT1 does not answer C-ECHO", "Refused on 104.",
                                   asset_id=None)
        again = open_system_ticket("node:7:down", "CT1 does not answer C-ECHO", "Still refused.")
        db.session.commit()
        assert again.id == first.id
        assert first.number == "PD-000001"
        assert first.requester_id is None and first.priority == "P2"
        assert first.category.code == "dicom_node_down"
        assert find_open_system_ticket("node:7:down").id == first.id
        assert find_open_system_ticket("node:8:down") is None
        assert len(db.session.execute(select(Ticket)).scalars().all()) == 1
    created = audit_events("ticket.create", "PD-000001")
    assert len(created) == 1 and created[0]["user_id"] is None


def test_resolved_system_ticket_lets_a_new_fault_open_a_new_ticket(app, audit_events):
    with app.app_context():
        ticket = open_system_ticket("node:7:down", "CT1 down", "Refused.")
        add_system_reply(ticket, "Still down at 02:10.")
        resolve_system_ticket(ticket, "Answers again at 02:30.")
        db.session.commit()
        assert ticket.status == "resolved"
        assert find_open_system_ticket("node:7:down") is None
        second = open_system_ticket("node:7:down", "CT1 down", "Refused again.")
        db.session.commit()
        assert second.id != ticket.id
    assert [e["details"]["system"] for e in audit_events("ticket.comment", "PD-000001")] == [True, True]
    update = audit_events("ticket.update", "PD-000001")[0]
    assert update["user_id"] is None and update["details"]["changes"]["status"] == ["new", "resolved"]


def test_system_ticket_shows_in_the_queue_and_with_its_replies(app, client, login_as):
    with app.app_context():
        ticket = open_system_ticket("node:9:down", "MR2 <down>", "Refused.", category_code="dicom_node_down",
                                    priority="P1")
        add_system_reply(ticket, "Still down.")
        db.session.commit()
    login_as("technician")
    assert b"PD-000001" in client.get("/tickets").data
    page = client.get("/tickets/PD-000001").data.decode()
    assert "PACS Desk (automatic)" in page and "Still down." in page and "MR2 &lt;down&gt;" in page


def test_requesters_never_see_system_tickets(app, client, login_as):
    with app.app_context():
        open_system_ticket("node:9:down", "MR2 down", "Refused.")
        db.session.commit()
    login_as("requester")
    assert client.get("/tickets/PD-000001").status_code == 404


def test_signals_fire_after_commit_and_not_after_rollback(app, client, login_as, file_ticket):
    received: list[tuple[str, dict]] = []

    def listener(name):
        def receive(sender, **values):
            received.append((name, values))
        return receive

    handlers = [listener("created"), listener("replied"), listener("status")]
    notifications.ticket_created.connect(handlers[0])
    notifications.ticket_replied.connect(handlers[1])
    notifications.status_changed.connect(handlers[2])
    try:
        with app.app_context():
            open_system_ticket("k", "t", "d")
            db.session.rollback()
        assert received == []
        login_as("requester")
        number = file_ticket()
        ticket_id = int(number[3:])
        assert received == [("created", {"ticket_id": ticket_id, "number": number, "system": False})]
        login_as("technician")
        client.post(f"/tickets/{number}/reply", data={"body": "Looking", "internal": "y"})
        assert received[-1][0] == "replied" and received[-1][1]["internal"] is True
        client.post(f"/tickets/{number}/reply", data={"body": "Looking"})
        assert ("status", {"ticket_id": ticket_id, "number": number, "old": "new",
                           "new": "open"}) in received
    finally:
        notifications.ticket_created.disconnect(handlers[0])
        notifications.ticket_replied.disconnect(handlers[1])
        notifications.status_changed.disconnect(handlers[2])


def test_unknown_category_code_is_an_error(app):
    with app.app_context():
        try:
            open_system_ticket("k", "t", "d", category_code="nope")
        except ValueError as exc:
            assert "nope" in str(exc)
        else:
            raise AssertionError("expected ValueError")
