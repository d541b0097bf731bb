"""The ticket page: reply and status in one submit, links and merges, the asset picker, outage incidents."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from core.extensions import db
from helpdesk.links import open_outage_incident
from helpdesk.models import LinkKind, Ticket, TicketAttachment, TicketComment, TicketFollower, TicketLink
from helpdesk.services import open_system_ticket
from inventory.models import Asset
from tests.helpers import fixture_event

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _switch(auth, username: str) -> None:
    """Log in again as an existing user."""
    auth.logout()
    assert auth.login(username).status_code == 302


@pytest.mark.parametrize(("then", "status", "words"), [
    ("wait", "waiting", "Reply sent; the ticket now waits for the requester."),
    ("resolve", "resolved", "Reply sent; the ticket is resolved."),
    ("", "open", "Reply sent."),
])
def test_reply_and_status_change_in_one_submit(client, login_as, file_ticket, ticket_row, audit_events,
                                               then, status, words):
    login_as("requester")
    number = file_ticket()
    login_as("technician")
    response = client.post(f"/tickets/{number}/reply", data={"body": "Please restart the viewer.",
                                                            "then": then}, follow_redirects=True)
    assert words in response.data.decode()
    assert ticket_row(number).status == status
    assert len(audit_events("ticket.comment", number)) == 1
    changes = [e["details"]["changes"]["status"] for e in audit_events("ticket.update", number)]
    assert changes[-1][1] == status


def test_reply_with_a_status_that_fails_changes_nothing(client, login_as, file_ticket, ticket_row, app):
    login_as("technician")
    number = file_ticket()
    response = client.post(f"/tickets/{number}/reply", data={"body": "", "then": "resolve"})
    assert response.status_code == 400
    assert ticket_row(number).status == "new"
    with app.app_context():
        assert db.session.execute(select(TicketComment)).first() is None


def test_requester_cannot_resolve_by_reply_and_sees_no_such_buttons(client, login_as, file_ticket,
                                                                   ticket_row):
    login_as("requester")
    number = file_ticket()
    assert "Send and resolve" not in client.get(f"/tickets/{number}").data.decode()
    response = client.post(f"/tickets/{number}/reply", data={"body": "ok", "then": "resolve"})
    assert response.status_code == 400 and ticket_row(number).status == "new"


def test_link_related_and_incident_shows_on_both_pages_and_can_be_removed(client, login_as, file_ticket,
                                                                          audit_events, app):
    login_as("technician")
    a, b = file_ticket(title="PACS slow"), file_ticket(title="Network outage L1")
    assert client.post(f"/tickets/{a}/links", data={"kind": "child", "other": b.lower()}).status_code == 302
    assert f"Part of incident <a href=\"/tickets/{b}\">{b}</a>" in client.get(f"/tickets/{a}").data.decode()
    assert f"Incident of <a href=\"/tickets/{a}\">{a}</a>" in client.get(f"/tickets/{b}").data.decode()
    assert audit_events("ticket.link", a)[0]["details"] == {"kind": "child", "other": b}
    again = client.post(f"/tickets/{b}/links", data={"kind": "related", "other": a}, follow_redirects=True)
    assert "are already linked" in again.data.decode()
    unknown = client.post(f"/tickets/{a}/links", data={"kind": "related", "other": "PD-999999"},
                          follow_redirects=True)
    assert "no ticket is numbered" in unknown.data.decode()
    with app.app_context():
        link_id = db.session.execute(select(TicketLink.id)).scalar_one()
    client.post(f"/tickets/{a}/links/{link_id}/delete")
    assert "Part of incident <a" not in client.get(f"/tickets/{a}").data.decode()
    assert len(audit_events("ticket.unlink", a)) == 1


def test_merge_moves_replies_attachments_and_followers_and_closes_the_other(
        client, auth, login_as, file_ticket, ticket_row, audit_events, app):
    first = login_as("requester", "dr.first")
    survivor = file_ticket(title="CT viewer crashes")
    second = login_as("requester", "dr.second")
    duplicate = file_ticket(title="CT viewer crashed again",
                            attachments=[(io.BytesIO(PNG), "crash.png")])
    client.post(f"/tickets/{duplicate}/reply", data={"body": "It happened twice now."})
    login_as("technician", "pacs.merge")
    response = client.post(f"/tickets/{duplicate}/links", data={"kind": "merge", "other": survivor})
    assert response.headers["Location"] == f"/tickets/{survivor}"
    assert ticket_row(duplicate).status == "closed"
    with app.app_context():
        survivor_id, duplicate_id = (int(n.split("-")[1]) for n in (survivor, duplicate))
        comments = db.session.execute(select(TicketComment.ticket_id, TicketComment.body)).all()
        assert (survivor_id, "It happened twice now.") in comments
        assert (duplicate_id, f"Merged into {survivor}: the work continues there.") in comments
        assert {a.ticket_id for a in db.session.execute(select(TicketAttachment)).scalars()} == {survivor_id}
        followers = db.session.execute(select(TicketFollower.ticket_id, TicketFollower.user_id)).all()
        assert followers == [(survivor_id, second.id)]
        link = db.session.execute(select(TicketLink)).scalar_one()
        assert (link.ticket_id, link.other_id, link.kind) == (duplicate_id, survivor_id, LinkKind.DUPLICATE)
    (event,) = audit_events("ticket.merge", survivor)
    assert event["details"]["merged"] == duplicate and event["details"]["attachments"] == 1
    assert f"Duplicate of <a href=\"/tickets/{survivor}\">{survivor}</a>" in \
        client.get(f"/tickets/{duplicate}").data.decode()
    # The merged ticket's requester follows the survivor: they see it and their moved reply.
    _switch(auth, second.username)
    page = client.get(f"/tickets/{survivor}")
    assert page.status_code == 200 and "It happened twice now." in page.data.decode()
    assert first.id != second.id


def test_merging_into_a_closed_ticket_or_itself_is_refused(client, login_as, file_ticket, category_id,
                                                           ticket_row):
    login_as("technician")
    a, closed = file_ticket(title="A"), file_ticket(title="Closed")
    client.post(f"/tickets/{closed}/update", data={"status": "closed", "priority": "P3",
                                                  "category_id": str(category_id()), "assignee_id": ""})
    page = client.post(f"/tickets/{a}/links", data={"kind": "merge", "other": closed},
                       follow_redirects=True).data.decode()
    assert f"{closed} is closed and cannot be merged" in page
    page = client.post(f"/tickets/{a}/links", data={"kind": "merge", "other": a},
                       follow_redirects=True).data.decode()
    assert "cannot be linked to itself" in page
    assert ticket_row(a).status == "new"


def test_requesters_cannot_link_or_merge(client, login_as, file_ticket):
    login_as("requester")
    a, b = file_ticket(title="A"), file_ticket(title="B")
    assert client.post(f"/tickets/{a}/links", data={"kind": "merge", "other": b}).status_code == 403


@pytest.fixture
def assets(app):
    """A DICOM node of Radiology, a workstation of Cardiology, and one assigned to nobody."""
    with app.app_context():
        db.session.add_all([
            Asset(asset_tag="CT-02", name="CT scanner 2", kind="dicom_node", ae_title="CT02",
                  hostname="ct02.hospital.example", ip_address="10.1.2.3", port=104,
                  department="Radiology", location="Imaging L1"),
            Asset(asset_tag="WS-CARD-01", name="Echo workstation", department="Cardiology"),
        ])
        fixture_event("asset", "CT-02", "WS-CARD-01")
        db.session.commit()


def test_technicians_find_assets_by_tag_name_ae_title_or_host_as_they_type(client, login_as, assets):
    login_as("technician")
    for typed in ("ct-0", "scanner 2", "CT02", "ct02.hospital", "10.1.2"):
        found = client.get(f"/tickets/assets.json?q={typed}").get_json()
        assert [a["tag"] for a in found] == ["CT-02"], typed
    assert client.get("/tickets/assets.json?q=%25").get_json() == []
    assert client.get("/tickets/assets.json?q=a%00b").status_code == 400


def test_requesters_are_offered_only_their_departments_assets_by_tag_or_name(client, login_as, assets):
    login_as("requester", department="Radiology")
    assert [a["tag"] for a in client.get("/tickets/assets.json?q=ct").get_json()] == ["CT-02"]
    assert client.get("/tickets/assets.json?q=echo").get_json() == []
    assert client.get("/tickets/assets.json?q=10.1.2").get_json() == []  # no network details


def test_asset_tag_field_is_no_oracle_for_requesters(client, login_as, category_id, assets):
    login_as("requester", department="Radiology")
    base = {"title": "t", "description": "d", "category_id": str(category_id()), "impact": "one",
            "urgency": "hours"}
    hidden = client.post("/tickets/new", data={**base, "asset_tag": "WS-CARD-01"})
    unknown = client.post("/tickets/new", data={**base, "asset_tag": "NO-SUCH-01"})
    assert hidden.status_code == unknown.status_code == 400

    def message(response):
        text = response.data.decode()
        start = text.index("Asset tag: not one of")
        return text[start:text.index("<", start)]

    assert message(hidden) == message(unknown)
    assert "WS-CARD-01" not in message(hidden)
    accepted = client.post("/tickets/new", data={**base, "asset_tag": "ct-02"})
    assert accepted.status_code == 302


def _node_ticket(n: int) -> int:
    """An automatic node-down ticket, as the inventory opens them."""
    return open_system_ticket(f"node-down:{n}", f"DICOM node down: node {n}", "refused").id


def test_more_nodes_down_than_the_threshold_are_grouped_under_one_incident(app):
    with app.app_context():
        children = [_node_ticket(n) for n in range(4)]
        incident = open_outage_incident(children)
        assert incident is not None and incident.title == "Outage: 4 DICOM nodes down at once"
        assert incident.priority == "P1"
        links = db.session.execute(select(TicketLink.ticket_id, TicketLink.other_id, TicketLink.kind)).all()
        assert sorted(links) == [(c, incident.id, LinkKind.CHILD) for c in children]
        db.session.commit()
        assert db.session.execute(select(Ticket).where(Ticket.id.notin_(children))).scalar_one() == incident


def test_up_to_the_threshold_no_incident_is_opened(app):
    with app.app_context():
        assert open_outage_incident([_node_ticket(n) for n in range(3)]) is None
        db.session.commit()
        assert db.session.execute(select(TicketLink)).first() is None
