"""Who sees what: requesters only their own tickets, internal notes only for staff, compliance reads."""

from __future__ import annotations

import io

import pytest

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def others_ticket(client, auth, login_as, file_ticket):
    """A ticket filed by dr.okafor with a public attachment, then logged out."""
    login_as("requester", "dr.okafor")
    number = file_ticket(attachments=(io.BytesIO(PNG), "screen.png"))
    auth.logout()
    return number


def _routes(number: str, attachment_id: int = 1) -> list[tuple[str, str]]:
    """Every route that takes a ticket number."""
    return [("get", f"/tickets/{number}"), ("post", f"/tickets/{number}/reply"),
            ("post", f"/tickets/{number}/update"), ("post", f"/tickets/{number}/reopen"),
            ("get", f"/tickets/{number}/attachments/{attachment_id}")]


def test_requester_gets_404_for_another_requesters_ticket_on_every_route(client, login_as,
                                                                          others_ticket):
    login_as("requester", "dr.lindqvist")
    for method, url in _routes(others_ticket):
        response = getattr(client, method)(url, data={"body": "hi", "status": "closed"})
        assert response.status_code == 404, (method, url, response.status_code)


def test_requester_status_change_on_someone_elses_ticket_changes_nothing(client, login_as,
                                                                        others_ticket, ticket_row):
    login_as("requester", "dr.lindqvist")
    client.post(f"/tickets/{others_ticket}/update", data={"status": "closed", "priority": "P1"})
    ticket = ticket_row(others_ticket)
    assert ticket.status == "new"


def test_unknown_or_malformed_numbers_are_404(client, login_as):
    login_as("technician")
    for number in ("PD-999999", "PD-1", "123", "PD-00000X", "..%2F..%2Fetc"):
        assert client.get(f"/tickets/{number}").status_code == 404


def test_requester_search_and_export_never_show_another_requesters_ticket(client, login_as,
                                                                           others_ticket):
    login_as("requester", "dr.lindqvist")
    link = f'/tickets/{others_ticket}"'.encode()
    listing = client.get(f"/my/tickets?q={others_ticket}&status=all")
    assert link not in listing.data and b"No tickets match" in listing.data
    listing = client.get("/my/tickets?q=Priors&status=all")
    assert link not in listing.data and b"No tickets match" in listing.data
    export = client.get("/my/tickets/export.csv?status=all")
    assert export.status_code == 200
    assert others_ticket.encode() not in export.data


def test_requester_cannot_open_the_queue_or_its_export(client, login_as):
    login_as("requester")
    assert client.get("/tickets").status_code == 403
    assert client.get("/tickets/export.csv").status_code == 403


def test_requester_gets_403_on_work_route_of_own_ticket(client, login_as, file_ticket, ticket_row):
    login_as("requester")
    number = file_ticket()
    assert client.post(f"/tickets/{number}/update", data={"status": "closed"}).status_code == 403
    assert ticket_row(number).status == "new"


def test_anonymous_visitors_are_sent_to_login(client, others_ticket):
    for method, url in _routes(others_ticket):
        response = getattr(client, method)(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_compliance_officer_reads_but_cannot_change(client, login_as, others_ticket, ticket_row):
    login_as("compliance", "privacy.garcia")
    assert client.get("/tickets").status_code == 200
    assert client.get(f"/tickets/{others_ticket}").status_code == 200
    assert client.get(f"/tickets/{others_ticket}/attachments/1").status_code == 200
    page = client.get(f"/tickets/{others_ticket}").data
    assert b"Work this ticket" not in page
    assert client.post(f"/tickets/{others_ticket}/reply", data={"body": "x"}).status_code == 403
    assert client.post(f"/tickets/{others_ticket}/update",
                       data={"status": "closed", "priority": "P1"}).status_code == 403
    assert client.post(f"/tickets/{others_ticket}/reopen").status_code == 403
    assert ticket_row(others_ticket).status == "new"


def test_internal_notes_never_reach_the_requester(client, auth, login_as, others_ticket):
    login_as("technician", "pacs.sam")
    secret = "router rejects from MR2, suspect workstation RR-3"
    response = client.post(f"/tickets/{others_ticket}/reply",
                           data={"body": secret, "internal": "y",
                                 "attachments": (io.BytesIO(b"router log\n"), "router.log")},
                           content_type="multipart/form-data")
    assert response.status_code == 302
    client.post(f"/tickets/{others_ticket}/reply", data={"body": "We are on it."})
    staff_page = client.get(f"/tickets/{others_ticket}").data.decode()
    assert secret in staff_page and "router.log" in staff_page
    auth.logout()
    auth.login("dr.okafor")
    page = client.get(f"/tickets/{others_ticket}").data.decode()
    assert "We are on it." in page
    assert secret not in page and "router.log" not in page and "Internal note" not in page
    assert client.get(f"/tickets/{others_ticket}/attachments/2").status_code == 404
    for url in ("/my/tickets?status=all", "/my/tickets/export.csv?status=all",
                "/my/tickets?q=router&status=all", "/"):
        assert secret.encode() not in client.get(url).data


def test_requester_cannot_post_an_internal_note(client, login_as, file_ticket):
    login_as("requester")
    number = file_ticket()
    client.post(f"/tickets/{number}/reply", data={"body": "visible to all", "internal": "y"})
    login_as("technician")
    page = client.get(f"/tickets/{number}").data.decode()
    assert "visible to all" in page and "Internal note</span>" not in page


def test_attachment_of_another_ticket_is_404_under_this_ticket_number(client, login_as, others_ticket,
                                                                      file_ticket):
    login_as("requester", "dr.lindqvist")
    mine = file_ticket()
    assert client.get(f"/tickets/{mine}/attachments/1").status_code == 404


def test_change_routes_refuse_posts_without_a_csrf_token(app, client, login_as, file_ticket,
                                                         ticket_row):
    login_as("technician")
    number = file_ticket()
    app.config["WTF_CSRF_ENABLED"] = True
    for url, data in ((f"/tickets/{number}/reply", {"body": "forged"}),
                      (f"/tickets/{number}/update", {"status": "closed", "priority": "P1"}),
                      (f"/tickets/{number}/reopen", {})):
        assert client.post(url, data=data).status_code == 400
    ticket = ticket_row(number)
    assert (ticket.status, ticket.priority) == ("new", "P3")
    assert b"forged" not in client.get(f"/tickets/{number}").data
