"""The technicians' queue: filters, word search, sorting, pagination, export, dashboard, audit."""

from __future__ import annotations

import pytest
from flask import render_template
from flask_login import login_user

from core.extensions import db
from helpdesk import queries, search
from helpdesk.queries import dashboard_figures


def _link(number: str) -> str:
    """How a ticket appears as a link in a list."""
    return f'/tickets/{number}"'


def test_filters_by_status_priority_category_assignee_and_asset(client, auth, login_as, make_user,
                                                                file_ticket, category_id, ticket_row):
    tech = login_as("technician", "pacs.sam")
    worklist = file_ticket(title="Worklist empty", category_id=str(category_id("worklist")),
                           priority="P1")
    priors = file_ticket(title="Priors gone", priority="P3")
    client.post(f"/tickets/{priors}/update", data={
        "status": "waiting", "priority": "P3", "category_id": str(category_id()),
        "assignee_id": str(tech.id)})
    page = client.get("/tickets?status=waiting").data.decode()
    assert _link(priors) in page and _link(worklist) not in page
    page = client.get("/tickets?priority=P1").data.decode()
    assert _link(worklist) in page and _link(priors) not in page
    page = client.get(f"/tickets?category={category_id('worklist')}").data.decode()
    assert _link(worklist) in page and _link(priors) not in page
    page = client.get("/tickets?assignee=me").data.decode()
    assert _link(priors) in page and _link(worklist) not in page
    page = client.get("/tickets?assignee=none").data.decode()
    assert _link(worklist) in page and _link(priors) not in page
    page = client.get("/tickets?asset=NO-SUCH-TAG").data.decode()
    assert "No tickets match" in page
    page = client.get("/tickets?status=bogus&priority=P9&sort=evil&assignee=x;drop").data.decode()
    assert _link(priors) in page and _link(worklist) in page


def test_word_search_covers_number_title_and_description(client, login_as, file_ticket):
    login_as("technician")
    a = file_ticket(title="Viewer freezes", description="On RR-3 when scrolling tomosynthesis")
    b = file_ticket(title="CD import fails", description="No DICOMDIR on the disc 100%_sure")
    assert _link(a) in client.get("/tickets?q=TOMOSYNTHESIS").data.decode()
    assert _link(b) not in client.get("/tickets?q=tomosynthesis").data.decode()
    assert _link(a) in client.get("/tickets?q=viewer+rr-3").data.decode()
    assert _link(a) not in client.get("/tickets?q=viewer+dicomdir").data.decode()
    assert _link(b) in client.get(f"/tickets?q={b}").data.decode()
    assert _link(a) not in client.get(f"/tickets?q={b}").data.decode()
    assert _link(b) in client.get("/tickets?q=100%25_sure").data.decode()
    assert _link(a) not in client.get("/tickets?q=%25").data.decode()


def test_sorting_and_pagination(client, login_as, file_ticket):
    login_as("technician")
    numbers = [file_ticket(title=f"Ticket {i}", priority="P3") for i in range(27)]
    first = client.get("/tickets?sort=newest").data.decode()
    assert _link(numbers[-1]) in first and _link(numbers[0]) not in first
    assert "27 results" in first
    second = client.get("/tickets?sort=newest&page=2").data.decode()
    assert _link(numbers[0]) in second
    oldest = client.get("/tickets?sort=oldest").data.decode()
    assert oldest.index(_link(numbers[0])) < oldest.index(_link(numbers[1]))


def test_export_is_csv_without_descriptions_and_audited(client, login_as, file_ticket, audit_events):
    login_as("technician")
    number = file_ticket(title="=HYPERLINK(\"x\")", description="secret description",
                         accession_number="ACC9")
    export = client.get("/tickets/export.csv")
    text = export.data.decode()
    assert export.mimetype == "text/csv"
    assert number in text and "secret description" not in text and "ACC9" not in text
    assert "'=HYPERLINK" in text
    assert audit_events("ticket.export")[0]["details"]["count"] == 1


def test_ticket_view_is_audited_with_the_imaging_identifiers(client, login_as, file_ticket,
                                                            audit_events):
    user = login_as("technician")
    number = file_ticket(accession_number="ACC777", patient_id="MRN1")
    client.get(f"/tickets/{number}")
    client.get(f"/tickets/{number}")
    views = audit_events("ticket.view", number)
    assert len(views) == 2
    assert views[-1]["user_id"] == user.id
    assert views[-1]["details"] == {"accession_number": "ACC777", "patient_id": "MRN1"}


def test_changes_are_audited_with_the_changed_fields(client, login_as, file_ticket, category_id,
                                                     audit_events, make_user):
    sam = make_user("technician", "pacs.sam")
    login_as("technician")
    number = file_ticket(priority="P3")
    client.post(f"/tickets/{number}/update", data={
        "status": "open", "priority": "P2", "category_id": str(category_id("hardware")),
        "assignee_id": str(sam.id)})
    changes = audit_events("ticket.update", number)[0]["details"]["changes"]
    assert changes == {"priority": ["P3", "P2"], "category": ["priors_missing", "hardware"],
                       "assignee": [None, "pacs.sam"], "status": ["new", "open"]}
    client.post(f"/tickets/{number}/reply", data={"body": "ok"})
    assert audit_events("ticket.comment", number)[0]["details"]["internal"] is False


def test_assignee_must_be_a_technician(client, login_as, make_user, file_ticket, category_id, ticket_row):
    requester = make_user("requester", "clerk.patel")
    login_as("technician")
    number = file_ticket()
    response = client.post(f"/tickets/{number}/update", data={
        "status": "open", "priority": "P3", "category_id": str(category_id()),
        "assignee_id": str(requester.id)})
    assert response.status_code == 400
    assert ticket_row(number).assignee_id is None


def test_dashboard_panel_figures(app, client, login_as, file_ticket):
    tech = login_as("technician")
    file_ticket(priority="P1")
    file_ticket(priority="P3")
    with app.test_request_context("/"):
        login_user(db.session.merge(tech))
        data = dashboard_figures()
        assert data["by_priority"] == {"P1": 1, "P2": 0, "P3": 1, "P4": 0}
        assert data["open_total"] == 2 and data["opened_7d"] == 2 and data["breached"] == 0
        html = render_template("helpdesk/_dashboard_panel.html", data=data)
        assert "breached now" in html and "P1" in html


def test_navigation_shows_each_role_its_help_desk_links(client, login_as):
    login_as("requester")
    page = client.get("/my/tickets").data.decode()
    assert "New ticket" in page and "My tickets" in page and 'href="/tickets"' not in page
    login_as("technician")
    assert 'href="/tickets"' in client.get("/my/tickets").data.decode()


@pytest.mark.parametrize("common_from", [1, 2000])
def test_common_and_rare_words_find_the_same_tickets(client, login_as, file_ticket, monkeypatch,
                                                     common_from):
    monkeypatch.setattr(search, "COMMON_WORD", common_from)
    login_as("technician")
    both = file_ticket(title="Hanging protocol lost", description="Mammography tomosynthesis")
    one = file_ticket(title="Hanging monitor arm", description="Loose screw")
    page = client.get("/tickets?q=hang+tomo&status=all").data.decode()
    assert _link(both) in page and _link(one) not in page
    page = client.get("/tickets?q=hanging&status=all").data.decode()
    assert _link(both) in page and _link(one) in page and "2 results" in page


def test_search_total_is_capped_and_says_so(client, login_as, file_ticket, monkeypatch):
    monkeypatch.setattr(queries, "COUNT_CAP", 2)
    login_as("technician")
    for _ in range(3):
        file_ticket(title="Printer jam")
    page = client.get("/tickets?q=printer").data.decode()
    assert "More than 2 results" in page


def test_home_page_shows_technicians_the_help_desk_panel_and_not_requesters(client, login_as,
                                                                            file_ticket):
    login_as("technician")
    file_ticket(priority="P1")
    home = client.get("/").data.decode()
    assert "Help desk" in home and "breached now" in home
    login_as("requester")
    assert "breached now" not in client.get("/").data.decode()
