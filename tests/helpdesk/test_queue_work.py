"""Working the queue: bulk changes, take, header sorting, saved views, seen marks, live counts."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from audit.trail.models import AuditEvent
from core.extensions import db
from core.timeutil import utcnow
from helpdesk.models import SavedView, Ticket


def _link(number: str) -> str:
    """How a ticket appears as a link in a list."""
    return f'/tickets/{number}"'


def _id(number: str) -> str:
    """The form value of a ticket's checkbox."""
    return str(int(number.split("-")[1]))


def test_bulk_change_sets_every_field_with_one_event_per_ticket(client, login_as, make_user, file_ticket,
                                                                category_id, ticket_row, audit_events):
    sam = make_user("technician", "pacs.sam")
    login_as("technician", "pacs.kim")
    numbers = [file_ticket(title=f"Priors missing {i}") for i in range(3)]
    untouched = file_ticket(title="Not selected")
    response = client.post("/tickets/bulk", data={
        "ticket": [_id(n) for n in numbers], "assignee": str(sam.id), "status": "waiting",
        "priority": "P2", "category": str(category_id("worklist")), "back": "/tickets?status=all"})
    assert response.status_code == 302 and response.headers["Location"] == "/tickets?status=all"
    for number in numbers:
        ticket = ticket_row(number)
        assert (ticket.assignee_id, ticket.status, ticket.priority, ticket.category_id) == (
            sam.id, "waiting", "P2", category_id("worklist"))
        (event,) = audit_events("ticket.update", number)
        assert event["details"]["changes"]["assignee"] == [None, "pacs.sam"]
        assert event["details"]["changes"]["status"] == ["new", "waiting"]
    assert ticket_row(untouched).status == "new" and audit_events("ticket.update", untouched) == []
    assert "3 tickets changed." in client.get("/tickets?status=all").data.decode()


def test_bulk_change_with_one_closed_ticket_changes_nothing_and_names_it(client, login_as, file_ticket,
                                                                         category_id, ticket_row,
                                                                         audit_events):
    login_as("technician")
    first, closed, last = (file_ticket(title=t) for t in ("First", "Closed one", "Last"))
    client.post(f"/tickets/{closed}/update", data={"status": "closed", "priority": "P3",
                                                  "category_id": str(category_id()), "assignee_id": ""})
    response = client.post("/tickets/bulk", data={"ticket": [_id(first), _id(closed), _id(last)],
                                                  "priority": "P1"}, follow_redirects=True)
    page = response.data.decode()
    assert f"Nothing was changed. {closed}: This ticket is closed" in page
    assert [ticket_row(n).priority for n in (first, last)] == ["P3", "P3"]
    assert audit_events("ticket.update", first) == [] and audit_events("ticket.update", last) == []


def test_bulk_change_without_a_selection_or_a_change_is_refused(client, login_as, file_ticket, ticket_row):
    login_as("technician")
    number = file_ticket()
    nothing = client.post("/tickets/bulk", data={"priority": "P1"}, follow_redirects=True).data.decode()
    assert "Select at least one ticket." in nothing
    no_change = client.post("/tickets/bulk", data={"ticket": [_id(number)]}, follow_redirects=True)
    assert "Choose what to change" in no_change.data.decode()
    assert client.post("/tickets/bulk", data={"ticket": ["1;drop"], "priority": "P1"}).status_code == 400
    assert ticket_row(number).priority == "P3"


def test_only_technicians_change_tickets_in_bulk(client, login_as, file_ticket, ticket_row):
    login_as("requester")
    number = file_ticket()
    for role in ("requester", "compliance"):
        login_as(role)
        response = client.post("/tickets/bulk", data={"ticket": [_id(number)], "priority": "P1"})
        assert response.status_code == 403
    assert ticket_row(number).priority == "P3"


def test_take_from_the_queue_row_and_the_ticket_page(client, login_as, file_ticket, ticket_row, audit_events):
    tech = login_as("technician", "pacs.lee")
    first, second = file_ticket(title="First"), file_ticket(title="Second")
    queue = client.get("/tickets").data.decode()
    assert f'/tickets/{first}/take"' in queue
    response = client.post(f"/tickets/{first}/take", data={"back": "/tickets"})
    assert response.headers["Location"] == "/tickets"
    assert (ticket_row(first).assignee_id, ticket_row(first).status) == (tech.id, "open")
    assert f'/tickets/{first}/take"' not in client.get("/tickets").data.decode()
    assert "Take" in client.get(f"/tickets/{second}").data.decode()
    assert client.post(f"/tickets/{second}/take").headers["Location"] == f"/tickets/{second}"
    assert ticket_row(second).assignee_id == tech.id
    assert audit_events("ticket.update", second)[0]["details"]["changes"]["assignee"] == [None, "pacs.lee"]


def test_every_column_header_sorts_both_ways(client, login_as, make_user, file_ticket):
    login_as("technician")
    alpha = file_ticket(title="Alpha scanner")
    zulu = file_ticket(title="Zulu scanner")
    asc = client.get("/tickets?sort=title&dir=asc").data.decode()
    assert asc.index(_link(alpha)) < asc.index(_link(zulu))
    assert 'aria-sort="ascending"' in asc and "sort=title&amp;dir=desc" in asc
    desc = client.get("/tickets?sort=title&dir=desc").data.decode()
    assert desc.index(_link(zulu)) < desc.index(_link(alpha))
    newest = client.get("/tickets?sort=number").data.decode()
    assert newest.index(_link(zulu)) < newest.index(_link(alpha))
    for column in ("due", "priority", "status", "category", "requester", "assignee", "filed", "updated"):
        for direction in ("asc", "desc"):
            page = client.get(f"/tickets?sort={column}&dir={direction}&cols=category,updated")
            assert page.status_code == 200 and _link(alpha) in page.data.decode(), (column, direction)


def test_sorting_by_requester_follows_names(client, login_as, file_ticket):
    login_as("requester", "zz.requester", full_name="Zoe Young")
    young = file_ticket(title="From Zoe")
    login_as("requester", "aa.requester", full_name="Adam Baker")
    baker = file_ticket(title="From Adam")
    login_as("technician")
    page = client.get("/tickets?sort=requester&dir=asc").data.decode()
    assert page.index(_link(baker)) < page.index(_link(young))
    page = client.get("/tickets?sort=requester&dir=desc").data.decode()
    assert page.index(_link(young)) < page.index(_link(baker))


def test_saved_views_keep_filters_sort_and_columns_and_sharing_decides_who_sees_them(
        app, client, login_as, file_ticket):
    login_as("technician", "pacs.ana")
    p1 = file_ticket(title="Urgent worklist", priority="P1")
    p3 = file_ticket(title="Slow viewer", priority="P3")
    response = client.post("/tickets/views", data={
        "name": "My P1s", "back": "/tickets?priority=P1&sort=title&dir=desc&cols=priority,assignee"})
    assert response.status_code == 302
    shared = client.post("/tickets/views", data={"name": "Team P3", "shared": "y",
                                                 "back": "/tickets?priority=P3"})
    assert shared.status_code == 302
    with app.app_context():
        views = {v.name: (v.id, v.params, v.shared) for v in db.session.execute(select(SavedView)).scalars()}
    mine_id, params, is_shared = views["My P1s"]
    assert params == {"status": "active", "priority": "P1", "sort": "title", "dir": "desc",
                      "cols": "priority,assignee"} and not is_shared
    page = client.get(f"/tickets?view={mine_id}").data.decode()
    assert _link(p1) in page and _link(p3) not in page
    assert 'aria-sort="descending"' in page and 'data-sort="assignee"' in page
    assert 'data-sort="filed"' not in page
    login_as("technician", "pacs.ben")
    queue = client.get("/tickets").data.decode()
    assert "Team P3" in queue and "My P1s" not in queue
    assert _link(p1) not in client.get(f"/tickets?view={views['Team P3'][0]}").data.decode()
    assert _link(p1) in client.get(f"/tickets?view={mine_id}").data.decode()  # not hers: ignored
    assert client.post(f"/tickets/views/{mine_id}/delete").status_code == 302
    with app.app_context():
        assert db.session.get(SavedView, mine_id) is not None


def test_a_view_needs_a_name(client, login_as):
    login_as("technician")
    page = client.post("/tickets/views", data={"name": "", "back": "/tickets"}, follow_redirects=True)
    assert "View name: give the view a name" in page.data.decode()


def _switch(auth, username: str) -> None:
    """Log in again as an existing user."""
    auth.logout()
    assert auth.login(username).status_code == 302


def test_queue_marks_tickets_unread_and_changed_since_last_opened(client, auth, login_as, file_ticket):
    requester = login_as("requester", "dr.mark")
    number = file_ticket(title="Marked ticket")
    login_as("technician", "pacs.mo")
    assert "Unread" in client.get("/tickets").data.decode()
    client.get(f"/tickets/{number}")
    queue = client.get("/tickets").data.decode()
    assert "Unread" not in queue and ">Changed<" not in queue
    _switch(auth, requester.username)
    client.post(f"/tickets/{number}/reply", data={"body": "Any news?"})
    _switch(auth, "pacs.mo")
    assert ">Changed<" in client.get("/tickets").data.decode()


def test_counts_endpoint_answers_without_counting_as_activity(app, client, login_as, file_ticket):
    me = login_as("technician")
    number = file_ticket(title="Counted")
    client.post(f"/tickets/{number}/take")
    file_ticket(title="Unassigned one")
    earlier = (utcnow() - timedelta(minutes=4)).isoformat()
    with client.session_transaction() as session:
        session["last_seen"] = earlier
    counts = client.get("/tickets/counts.json").get_json()
    assert counts == {"active": 2, "new": 1, "unassigned": 1, "mine": 1, "breached": 0}
    with client.session_transaction() as session:
        assert session["last_seen"] == earlier
    client.post("/session/keepalive")
    with client.session_transaction() as session:
        assert session["last_seen"] > earlier
    assert me.id


def test_counts_endpoint_is_for_staff_only(client, login_as):
    login_as("requester")
    assert client.get("/tickets/counts.json").status_code == 403


def test_word_search_and_asset_filter_are_audited_with_their_terms(client, login_as, file_ticket, app):
    login_as("technician", "pacs.search")
    file_ticket(title="MRN 123456 cannot be found")

    def searches():
        with app.app_context():
            return [e.details for e in db.session.execute(
                select(AuditEvent).where(AuditEvent.action == "ticket.search")).scalars()]

    client.get("/tickets?status=all")
    assert searches() == []
    client.get("/tickets?q=123456&asset=CT-02")
    client.get("/my/tickets?q=scanner")
    found = [json.loads(d) if isinstance(d, str) else d for d in searches()]
    assert found == [{"terms": {"q": "123456", "asset": "CT-02"}, "own_tickets_only": False},
                     {"terms": {"q": "scanner"}, "own_tickets_only": True}]


def test_my_tickets_lists_those_waiting_on_me_first(client, auth, login_as, file_ticket, category_id):
    requester = login_as("requester", "dr.wait")
    waiting = file_ticket(title="Waiting on me")
    newest = file_ticket(title="Newest")
    login_as("technician")
    client.post(f"/tickets/{waiting}/update", data={"status": "waiting", "priority": "P3",
                                                   "category_id": str(category_id()), "assignee_id": ""})
    _switch(auth, requester.username)
    page = client.get("/my/tickets").data.decode()
    assert page.index(_link(waiting)) < page.index(_link(newest))


def test_requesters_home_shows_needs_action_then_open_tickets_then_training(client, auth, login_as,
                                                                            file_ticket, category_id, app):
    requester = login_as("requester", "dr.home")
    waiting = file_ticket(title="Please answer")
    open_one = file_ticket(title="Still open")
    login_as("technician")
    client.post(f"/tickets/{waiting}/update", data={"status": "waiting", "priority": "P3",
                                                   "category_id": str(category_id()), "assignee_id": ""})
    _switch(auth, requester.username)
    home = client.get("/").data.decode()
    assert "Use the navigation above" not in home
    headings = ("Needs your action", "Your open tickets", "Training due")
    needs, mine, training = (home.index(h) for h in headings)
    assert needs < mine < training
    assert home.index(waiting) < mine < home.index(open_one)
    with app.app_context():
        assert db.session.get(Ticket, int(open_one.split("-")[1])).status == "new"


def test_each_row_of_my_tickets_and_the_queue_links_to_its_ticket_page(client, login_as, file_ticket):
    login_as("requester", "dr.okafor")
    number = file_ticket(title="Priors missing in reading room 4")
    mine = client.get("/my/tickets").data.decode()
    assert f'<a href="/tickets/{number}">{number}</a>' in mine
    assert "Priors missing in reading room 4" in client.get(f"/tickets/{number}").data.decode()
    login_as("technician", "pacs.lee")
    queue = client.get("/tickets").data.decode()
    assert f'<a href="/tickets/{number}">{number}</a>' in queue
    assert f'formaction="/tickets/{number}/take"' in queue
