"""Categories and reference data, the demo seeder, and closed tickets under the retention engine."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import time_machine
from sqlalchemy import func, select

from audit.retention.registry import HoldScope, record_classes
from audit.trail.history import history_of
from core.demo import DemoContext, existing_data
from core.extensions import db
from core.reference_data import load_reference_data
from helpdesk.demo import seed_tickets
from helpdesk.models import Category, SlaPolicy, Ticket, TicketAttachment, TicketComment
from helpdesk.reference import CATEGORIES
from helpdesk.services import open_system_ticket, resolve_system_ticket
from tests.helpers import fixture_event


def test_seeded_categories_and_slas_are_idempotent_and_keep_admin_edits(app):
    with app.app_context():
        codes = set(db.session.execute(select(Category.code)).scalars())
        assert codes >= {code for code, _, _ in CATEGORIES}  # other packages may seed theirs (inventory)
        seeded = len(codes)
        category = db.session.execute(select(Category).where(Category.code == "other")).scalar_one()
        category.label = "Something else"
        db.session.commit()
        load_reference_data()
        load_reference_data()
        db.session.commit()
        assert db.session.execute(select(func.count()).select_from(Category)).scalar_one() == seeded
        assert db.session.execute(select(func.count()).select_from(SlaPolicy)).scalar_one() == 4
        assert db.session.get(Category, category.id).label == "Something else"


def test_admin_adds_renames_and_retires_categories(client, login_as, category_id, audit_events):
    login_as("admin")
    response = client.post("/helpdesk/categories", data={
        "code": "voice_recognition", "label": "Voice recognition", "description": "Dictation",
        "sort_order": "95", "is_active": "y"})
    assert response.status_code == 302
    new_id = category_id("voice_recognition")
    assert b"Voice recognition" in client.get("/tickets/new").data
    dup = client.post("/helpdesk/categories", data={"code": "voice2", "label": "voice RECOGNITION",
                                                    "sort_order": "1"})
    assert dup.status_code == 400 and b"already exists" in dup.data
    bad = client.post("/helpdesk/categories", data={"code": "Bad Code!", "label": "X", "sort_order": "1"})
    assert bad.status_code == 400 and b"Code:" in bad.data
    client.post(f"/helpdesk/categories/{new_id}", data={"label": "Dictation <b>", "sort_order": "95"})
    assert b"Dictation &lt;b&gt;" in client.get("/helpdesk/categories").data
    assert b"Dictation &lt;b&gt;" not in client.get("/tickets/new").data  # retired: not offered
    events = audit_events("helpdesk.category_changed", "voice_recognition")
    assert events[0]["details"]["created"] is True
    assert events[1]["details"]["changes"]["is_active"] == [True, False]


def test_retired_category_cannot_be_chosen_when_filing(client, login_as, category_id):
    login_as("admin")
    other = category_id("other")
    client.post(f"/helpdesk/categories/{other}", data={"label": "Other", "sort_order": "100"})
    response = client.post("/tickets/new", data={"title": "t", "description": "d",
                                                  "category_id": str(other), "impact": "one",
                                                  "urgency": "hours"})
    assert response.status_code == 400


def test_demo_seeder_fills_every_status_with_replies_and_notes(app, make_user):
    names = [("dr.okafor", "requester"), ("dr.lindqvist", "requester"), ("ct.tech.mora", "requester"),
             ("mr.tech.chen", "requester"), ("clerk.patel", "requester"), ("ed.nurse.brown", "requester"),
             ("pacs.sam", "technician"), ("pacs.noor", "technician"), ("it.kim", "technician")]
    for username, role in names:
        make_user(role, username)
    with app.app_context():
        from core.auth.models import User

        users = {u.username: u for u in db.session.execute(select(User)).scalars()}
        ctx = DemoContext(rng=random.Random(7), users=users)
        seed_tickets(ctx)
        db.session.commit()
        statuses = set(db.session.execute(select(Ticket.status)).scalars())
        assert statuses == {"new", "open", "waiting", "resolved", "closed"}
        assert db.session.execute(select(func.count()).select_from(TicketComment)
                                  .where(TicketComment.is_internal.is_(True))).scalar_one() > 0
        assert existing_data()["tickets"] == 37
        resolved = db.session.execute(select(Ticket).where(Ticket.status == "resolved")).scalars().all()
        assert all(t.resolved_at > t.created_at for t in resolved)


def _closed_ticket(app, key: str, at: datetime) -> int:
    """A system ticket resolved and closed at ``at`` with a reply and history."""
    from helpdesk.services import autoclose_resolved

    with app.app_context(), time_machine.travel(at, tick=False):
        ticket = open_system_ticket(key, f"node {key} down", "refused")
        resolve_system_ticket(ticket, "back")
        db.session.add(TicketAttachment(ticket_id=ticket.id, filename="a.txt", content_type="text/plain",
                                        size=1, sha256="0" * 64, data=b"a"))
        db.session.flush()
        autoclose_resolved(at + timedelta(days=30))
        db.session.commit()
        return ticket.id


def test_retention_finds_only_old_closed_tickets_respects_holds_and_purges_everything(app, make_user):
    rc = record_classes(app)["closed_tickets"]
    assert rc.anchors == ("closed", "created") and rc.default_years == 7
    old = _closed_ticket(app, "a", datetime(2015, 1, 5, tzinfo=UTC))
    held_by_number = _closed_ticket(app, "b", datetime(2015, 2, 5, tzinfo=UTC))
    recent = _closed_ticket(app, "c", datetime(2025, 1, 5, tzinfo=UTC))
    with app.app_context():
        open_system_ticket("d", "still open", "x")
        db.session.commit()
        cutoff = datetime(2020, 1, 1, tzinfo=UTC)
        ids = [row[0] for row in db.session.execute(rc.candidates(cutoff, "closed"))]
        assert sorted(ids) == [old, held_by_number]
        assert sorted(row[0] for row in db.session.execute(rc.candidates(cutoff, "created"))) == ids
        number = f"PD-{held_by_number:06d}"
        assert rc.held(ids, [HoldScope(object_type="ticket", object_key=number)]) == {held_by_number}
        assert rc.held(ids, [HoldScope(record_class="closed_tickets",
                                       start=datetime(2015, 2, 10, tzinfo=UTC),
                                       end=datetime(2015, 2, 28, tzinfo=UTC))]) == {held_by_number}
        assert rc.held(ids, [HoldScope(record_class="audit_events")]) == set()
        assert rc.held(ids, [HoldScope(object_type="user", object_key="nobody")]) == set()
        assert rc.purge([old, recent + 1000]) == 1
        fixture_event("ticket")  # the retention engine writes this batch's event when it purges
        db.session.commit()
        assert db.session.get(Ticket, old) is None
        for model in (TicketComment, TicketAttachment):
            assert db.session.execute(select(func.count()).select_from(model)
                                      .where(model.ticket_id == old)).scalar_one() == 0
        assert history_of("ticket", old) == []
        assert db.session.get(Ticket, held_by_number) is not None


def test_retention_hold_on_a_user_covers_the_tickets_they_filed(app, client, login_as, file_ticket):
    login_as("requester", "dr.okafor")
    number = file_ticket()
    with app.app_context():
        rc = record_classes(app)["closed_tickets"]
        ticket_id = int(number[3:])
        assert rc.held([ticket_id], [HoldScope(object_type="user", object_key="dr.okafor")]) == {ticket_id}
        assert rc.purge([ticket_id]) == 0  # never purges a ticket that is not closed
