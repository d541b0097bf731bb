"""Linking a ticket to an inventory asset, found by tag in any case through the inventory's lookup."""

from __future__ import annotations

import pytest

from core.extensions import db
from inventory.models import Asset
from tests.helpers import fixture_event


@pytest.fixture
def asset_tag(app):
    """An asset in the inventory's table (the help desk finds it through the registered lookup)."""
    with app.app_context():
        db.session.add(Asset(asset_tag="WS-RR2-01", name="Reading station 2", location="RR2",
                             department="Radiology"))
        fixture_event("asset", "WS-RR2-01")
        db.session.commit()
    return "WS-RR2-01"


def test_technician_links_an_asset_and_filters_the_queue_by_it(client, login_as, file_ticket,
                                                                category_id, asset_tag, ticket_row,
                                                                audit_events):
    login_as("technician")
    linked = file_ticket(title="Monitor flickers")
    other = file_ticket(title="Other thing")
    response = client.post(f"/tickets/{linked}/update", data={
        "status": "open", "priority": "P3", "category_id": str(category_id()), "assignee_id": "",
        "asset_tag": asset_tag})
    assert response.status_code == 302
    assert ticket_row(linked).asset_id is not None
    page = client.get(f"/tickets/{linked}").data.decode()
    assert asset_tag in page and "Reading station 2" in page
    queue = client.get(f"/tickets?asset={asset_tag}").data.decode()
    assert f'/tickets/{linked}"' in queue and f'/tickets/{other}"' not in queue
    assert audit_events("ticket.update", linked)[0]["details"]["changes"]["asset"] == [None, asset_tag]


def test_unknown_asset_tag_is_refused_and_nothing_changes(client, login_as, file_ticket, category_id,
                                                          ticket_row):
    login_as("technician")
    number = file_ticket(priority="P3")
    response = client.post(f"/tickets/{number}/update", data={
        "status": "waiting", "priority": "P1", "category_id": str(category_id()), "assignee_id": "",
        "asset_tag": "NOPE"})
    assert response.status_code == 400 and b"no asset has the tag" in response.data
    ticket = ticket_row(number)
    assert (ticket.status, ticket.priority) == ("new", "P3")


def test_requester_names_an_asset_and_sees_its_tag_without_a_link(client, login_as, file_ticket,
                                                                   asset_tag):
    login_as("requester", department="Radiology")
    number = file_ticket(asset_tag=asset_tag)
    page = client.get(f"/tickets/{number}").data.decode()
    assert asset_tag in page and "/assets/" not in page


def test_priority_or_status_not_on_the_list_is_refused(client, login_as, file_ticket, category_id,
                                                       ticket_row):
    login_as("technician")
    number = file_ticket(priority="P3")
    for data in ({"priority": "P9", "status": "open"}, {"priority": "P3", "status": "deleted"},
                 {"priority": "P3", "status": "new"}):
        response = client.post(f"/tickets/{number}/update", data={
            **data, "category_id": str(category_id()), "assignee_id": ""})
        assert response.status_code == 400
    assert ticket_row(number).status == "new"


def test_asset_tag_is_matched_in_any_case_on_the_ticket_form(client, login_as, file_ticket, asset_tag,
                                                              ticket_row):
    login_as("requester", department="radiology")
    number = file_ticket(asset_tag=asset_tag.lower())
    assert ticket_row(number).asset_id is not None
    assert asset_tag in client.get(f"/tickets/{number}").data.decode()
