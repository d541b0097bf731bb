"""Filing a ticket in the browser: numbers, validation, escaping, priorities, audit."""

from __future__ import annotations

from helpdesk.models import TicketStatus


def test_requester_files_ticket_and_lands_on_its_page(client, login_as, file_ticket, ticket_row,
                                                       audit_events):
    user = login_as("requester", "dr.okafor")
    number = file_ticket(accession_number="ACC123", location="Reading room 2")
    assert number == "PD-000001"
    page = client.get(f"/tickets/{number}")
    assert page.status_code == 200
    assert b"Priors missing in reading room 2" in page.data
    ticket = ticket_row(number)
    assert ticket.requester_id == user.id
    assert ticket.status == TicketStatus.NEW
    created = audit_events("ticket.create", number)
    assert created[0]["user_id"] == user.id
    assert created[0]["details"]["accession_number"] == "ACC123"


def test_description_keeps_line_breaks_and_html_is_escaped_everywhere(client, login_as, file_ticket):
    login_as("requester")
    script = "<script>alert(1)</script>"
    number = file_ticket(title=f"Broken {script}", description=f"line one\nline two {script}",
                         location=script, callback_phone="<b>1</b>")
    page = client.get(f"/tickets/{number}").data.decode()
    assert script not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "line one\nline two" in page
    mine = client.get("/my/tickets").data.decode()
    assert script not in mine


def test_empty_and_oversized_titles_are_refused_with_a_clear_error(client, login_as, category_id,
                                                                     app):
    login_as("requester")
    base = {"description": "x", "category_id": str(category_id()), "impact": "one",
            "urgency": "hours"}
    empty = client.post("/tickets/new", data={**base, "title": "   "})
    assert empty.status_code == 400
    assert b"This field is required" in empty.data
    huge = client.post("/tickets/new", data={**base, "title": "x" * 10000})
    assert huge.status_code == 400
    assert b"200 characters" in huge.data
    assert client.get("/my/tickets").data.count(b"PD-0000") == 0


def test_unknown_category_or_impact_posted_by_hand_is_refused(client, login_as, category_id):
    login_as("requester")
    base = {"title": "t", "description": "d", "category_id": str(category_id()), "impact": "one",
            "urgency": "hours"}
    assert client.post("/tickets/new", data={**base, "category_id": "99999"}).status_code == 400
    assert client.post("/tickets/new", data={**base, "category_id": "abc"}).status_code == 400
    assert client.post("/tickets/new", data={**base, "impact": "world_ends"}).status_code == 400


def test_requester_cannot_set_priority_or_assignee_when_filing(client, login_as, file_ticket,
                                                               ticket_row, make_user):
    tech = make_user("technician", "pacs.sam")
    login_as("requester")
    number = file_ticket(impact="minor", urgency="later", priority="P1", assignee_id=str(tech.id))
    ticket = ticket_row(number)
    assert ticket.priority == "P4"
    assert ticket.assignee_id is None


def test_impact_and_urgency_suggest_the_initial_priority(client, login_as, file_ticket, ticket_row):
    login_as("requester")
    assert ticket_row(file_ticket(impact="care_stopped", urgency="now")).priority == "P1"
    assert ticket_row(file_ticket(impact="one", urgency="now")).priority == "P2"


def test_technician_may_set_priority_when_filing(client, login_as, file_ticket, ticket_row):
    login_as("technician")
    assert ticket_row(file_ticket(impact="minor", urgency="later", priority="P2")).priority == "P2"


def test_invalid_study_uid_and_unknown_asset_are_named(client, login_as, category_id):
    login_as("requester")
    base = {"title": "t", "description": "d", "category_id": str(category_id()), "impact": "one",
            "urgency": "hours"}
    bad_uid = client.post("/tickets/new", data={**base, "study_instance_uid": "1.2.abc"})
    assert bad_uid.status_code == 400 and b"Study instance UID" in bad_uid.data
    bad_asset = client.post("/tickets/new", data={**base, "asset_tag": "NOPE-1"})
    assert bad_asset.status_code == 400
    assert b"Asset tag: not one of the devices you can choose" in bad_asset.data


def test_new_ticket_page_is_open_to_every_role(client, login_as):
    for role in ("requester", "technician", "compliance", "admin"):
        login_as(role)
        assert client.get("/tickets/new").status_code == 200
        client.post("/logout")


def test_technician_files_on_behalf_of_a_caller(client, login_as, make_user, file_ticket, ticket_row,
                                                audit_events):
    caller = make_user("requester", "ed.nurse.brown")
    tech = login_as("technician", "pacs.sam")
    number = file_ticket(requester_username="ED.Nurse.Brown")
    assert ticket_row(number).requester_id == caller.id
    event = audit_events("ticket.create", number)[0]
    assert event["user_id"] == tech.id and event["details"]["requester"] == "ed.nurse.brown"
    unknown = client.post("/tickets/new", data={
        "title": "t", "description": "d", "category_id": "1", "impact": "one", "urgency": "hours",
        "requester_username": "nobody"})
    assert unknown.status_code == 400 and b"no active account" in unknown.data


def test_requester_cannot_file_on_behalf_of_someone_else(client, login_as, make_user, file_ticket,
                                                        ticket_row):
    make_user("requester", "dr.lindqvist")
    me = login_as("requester", "dr.okafor")
    assert ticket_row(file_ticket(requester_username="dr.lindqvist")).requester_id == me.id
