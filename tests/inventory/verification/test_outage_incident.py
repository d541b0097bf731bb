"""A network outage that takes many DICOM nodes down in one sweep opens one incident above their tickets."""

from __future__ import annotations

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification
from sqlalchemy import select

from core.extensions import db
from core.notifications.models import Notification
from helpdesk.models import LinkKind, Ticket, TicketLink
from inventory.verification.services import sweep
from tests.helpers import free_port
from tests.inventory.conftest import PEER_AET


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


def subjects(user_id: int) -> list[str]:
    """The subjects of a user's notifications, oldest first."""
    return list(db.session.execute(select(Notification.subject).where(Notification.user_id == user_id)
                                   .order_by(Notification.id)).scalars())


def test_the_on_call_technician_hears_of_an_outage_once_and_of_its_end_once(app, make_node, make_user):
    tech = make_user("technician", "pacs.oncall")
    ports = [free_port() for _ in range(5)]
    for n, port in enumerate(ports):
        make_node(f"US-0{n}", port)
    servers = []
    try:
        with app.app_context():
            sweep()
            sweep()
            incident = db.session.execute(select(Ticket).where(Ticket.asset_id.is_(None))).scalar_one()
            [outage] = db.session.execute(select(Notification).where(
                Notification.user_id == tech.id)).scalars().all()
            assert outage.subject == "Outage: 5 DICOM nodes down at once"
            assert outage.link_path == f"/tickets/{incident.number}"
            assert "Node US-00 (US-00), Node US-01 (US-01)" in outage.paragraphs[0]
            for port in ports:  # the network is back: every node answers again
                ae = AE(ae_title=PEER_AET)
                ae.add_supported_context(Verification)
                servers.append(ae.start_server(("127.0.0.1", port), block=False))
            sweep()
            assert subjects(tech.id) == ["Outage: 5 DICOM nodes down at once", "5 DICOM nodes answer again"]
    finally:
        for server in servers:
            server.shutdown()


def test_three_nodes_down_keep_their_own_tickets_and_notices(app, make_node, make_user):
    tech = make_user("technician", "pacs.oncall")
    for n in range(3):
        make_node(f"MR-0{n}", free_port())
    with app.app_context():
        sweep()
        sweep()
        assert len(db.session.execute(select(Ticket)).scalars().all()) == 3
        assert db.session.execute(select(TicketLink)).first() is None
        assert sorted(subjects(tech.id)) == [f"DICOM node down: Node MR-0{n} (MR-0{n})" for n in range(3)]
