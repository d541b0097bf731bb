"""The asset page lists the asset's open and recently finished tickets, with the queue filtered on it."""

from __future__ import annotations

import pytest

from core.extensions import db
from inventory.models import Asset
from tests.helpers import fixture_event


@pytest.fixture
def asset_tag(app) -> str:
    """A reading station in the inventory."""
    with app.app_context():
        db.session.add(Asset(asset_tag="WS-RR2-01", name="Reading station 2", location="RR2"))
        fixture_event("asset", "WS-RR2-01")
        db.session.commit()
    return "WS-RR2-01"


def link(client, number: str, tag: str, category: int, status: str) -> None:
    """Attach ticket ``number`` to the asset with ``status``."""
    response = client.post(f"/tickets/{number}/update", data={
        "status": status, "priority": "P3", "category_id": str(category), "assignee_id": "",
        "asset_tag": tag})
    assert response.status_code == 302


def test_asset_page_lists_its_open_and_recent_tickets(client, auth, login_as, file_ticket, category_id,
                                                      asset_tag):
    login_as("technician", "pacs.sam")
    still_open = file_ticket(title="Monitor flickers")
    resolved = file_ticket(title="Calibration overdue")
    unrelated = file_ticket(title="Printer jam")
    link(client, still_open, asset_tag, category_id(), "open")
    link(client, resolved, asset_tag, category_id(), "resolved")
    page = client.get(f"/assets/{asset_tag}").get_data(as_text=True)
    tickets = page[page.index('id="asset-tickets"'):page.index(">History<")]
    open_part, done_part = tickets.split("Recently resolved or closed")
    assert still_open in open_part and "Monitor flickers" in open_part and resolved not in open_part
    assert resolved in done_part and "Resolved" in done_part
    assert unrelated not in tickets
    assert f"/tickets?asset={asset_tag}&amp;status=all" in tickets
    queue = client.get(f"/tickets?asset={asset_tag}&status=all").get_data(as_text=True)
    assert still_open in queue and resolved in queue and unrelated not in queue

