"""Refused access is in the audit trail: who, which page, which object."""

from __future__ import annotations

import io

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def test_a_requester_refused_another_requesters_ticket_and_attachment_is_audited(client, auth, login_as,
                                                                               file_ticket, audit_events):
    login_as("requester", "dr.okafor")
    number = file_ticket(attachments=(io.BytesIO(PNG), "screen.png"))
    auth.logout()
    snoop = login_as("requester", "dr.lindqvist")
    assert client.get(f"/tickets/{number}").status_code == 404
    assert client.get(f"/tickets/{number}/attachments/1").status_code == 404
    denied = audit_events("access.denied")
    assert [(e["user_id"], e["object_id"]) for e in denied] == [(snoop.id, number), (snoop.id, "1")]
    assert denied[0]["details"] == {"status": 404, "method": "GET", "path": f"/tickets/{number}"}
    assert denied[1]["details"]["path"] == f"/tickets/{number}/attachments/1"


def test_a_technician_refused_the_audit_pages_is_audited(client, login_as, audit_events):
    tech = login_as("technician", "sam")
    assert client.get("/audit").status_code == 403
    assert client.get("/reports/1/download").status_code in (403, 404)
    denied = audit_events("access.denied")
    assert denied[0]["user_id"] == tech.id and denied[0]["details"]["status"] == 403
    assert denied[0]["details"]["path"] == "/audit"
    assert len(denied) == 2


def test_pages_that_do_not_exist_and_visitors_not_signed_in_leave_no_denial(client, login_as, audit_events):
    client.get("/tickets/PD-000001")
    login_as("technician", "sam")
    client.get("/no/such/page")
    client.get("/static/missing.css")
    assert audit_events("access.denied") == []
