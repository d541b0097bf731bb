"""Histories and audit details speak in labels: no codes, no Python or JSON values."""

from __future__ import annotations

import re

from tests.conftest import PASSWORD


def test_ticket_history_and_audit_details_show_labels_and_full_names(client, auth, make_user, login_as,
                                                                    file_ticket, ticket_row):
    login_as("requester", "dr.okafor")
    number = file_ticket()
    sam = make_user("technician", "pacs.sam", full_name="Sam Patel")
    login_as("technician", "pacs.lee")
    client.post(f"/tickets/{number}/update", data={
        "status": "waiting", "priority": "P2", "assignee_id": str(sam.id),
        "category_id": str(ticket_row(number).category_id)})
    page = client.get(f"/tickets/{number}").get_data(as_text=True)
    history = page[page.index('id="timeline"'):page.index("</ol>", page.index('id="timeline"'))]
    assert re.search(r"Status:\s*<span[^>]*>New</span>\s*→\s*<strong>Waiting on requester</strong>", history)
    assert re.search(r"Assigned to:\s*<span[^>]*>\(none\)</span>\s*→\s*"
                     r"<strong>Sam Patel \(pacs\.sam\)</strong>", history)
    assert "None" not in history and "waiting</strong>" not in history
    auth.logout()
    login_as("compliance", "privacy")
    audit = client.get(f"/audit?object_id={number}").get_data(as_text=True)
    assert "Waiting on requester" in audit and "Sam Patel (pacs.sam)" in audit
    assert "[None" not in audit and "&#34;changes&#34;" not in audit and '{"' not in audit
    assert "Ticket " + number in audit
    assert PASSWORD not in audit
    ticket_page = client.get(f"/tickets/{number}").get_data(as_text=True)
    assert f"/audit?object_type=ticket&amp;object_id={number}" in ticket_page
