"""A network outage that takes many DICOM nodes down in one sweep opens one incident above their tickets."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.extensions import db
from helpdesk.models import LinkKind, Ticket, TicketLink
from inventory.verification.services import sweep
from tests.inventory.conftest import free_port


@pytest.fixture(autouse=True)
def _fast(fast_verification):
    """Every test here uses short timeouts."""


def test_four_nodes_down_in_one_sweep_open_one_incident_with_their_tickets_as_children(app, make_node):
    node_ids = [make_node(f"US-0{n}", free_port()) for n in range(4)]
    with app.app_context():
        sweep()
        sweep()  # down after two failed checks
        tickets = list(db.session.execute(select(Ticket).order_by(Ticket.id)).scalars())
        children = [t for t in tickets if t.asset_id in node_ids]
        (incident,) = [t for t in tickets if t.asset_id is None]
        assert len(children) == 4 and incident.title == "Outage: 4 DICOM nodes down at once"
        links = db.session.execute(select(TicketLink.ticket_id, TicketLink.other_id, TicketLink.kind)).all()
        assert sorted(links) == sorted((c.id, incident.id, LinkKind.CHILD) for c in children)
        sweep()  # still down: no second incident
        unlinked = db.session.execute(select(Ticket).where(Ticket.asset_id.is_(None))).scalars().all()
        assert unlinked == [incident]


def test_three_nodes_down_keep_their_own_tickets_only(app, make_node):
    for n in range(3):
        make_node(f"MR-0{n}", free_port())
    with app.app_context():
        sweep()
        sweep()
        assert len(db.session.execute(select(Ticket)).scalars().all()) == 3
        assert db.session.execute(select(TicketLink)).first() is None
