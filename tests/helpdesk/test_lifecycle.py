"""Resolving, reopening within the window, auto-close by job and CLI, closed tickets stay closed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from audit.trail.history import history_of
from core.extensions import db
from core.jobs.registry import job_kinds
from helpdesk.jobs import close_resolved_tickets
from helpdesk.models import Ticket

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
def resolved_ticket(client, auth, make_user, file_ticket, ticket_row):
    """A ticket filed by dr.okafor and resolved by pacs.sam at T0; nobody logged in after."""
    make_user("requester", "dr.okafor")
    make_user("technician", "pacs.sam")
    with time_machine.travel(T0, tick=False):
        auth.login("dr.okafor")
        number = file_ticket()
        auth.logout()
        auth.login("pacs.sam")
        client.post(f"/tickets/{number}/reply", data={"body": "Resent the study."})
        client.post(f"/tickets/{number}/update", data={
            "status": "resolved", "priority": "P3", "assignee_id": "",
            "category_id": str(ticket_row(number).category_id)})
        auth.logout()
    assert ticket_row(number).resolved_at == T0
    return number


def test_requester_reopens_within_the_window(client, auth, resolved_ticket, ticket_row, audit_events):
    with time_machine.travel(T0 + timedelta(days=6), tick=False):
        auth.login("dr.okafor")
        page = client.get(f"/tickets/{resolved_ticket}").data.decode()
        assert "Reopen ticket" in page
        assert client.post(f"/tickets/{resolved_ticket}/reopen").status_code == 302
    ticket = ticket_row(resolved_ticket)
    assert ticket.status == "open" and ticket.resolved_at is None
    assert audit_events("ticket.update", resolved_ticket)[-1]["details"]["reopened"] is True


def test_requester_cannot_reopen_after_the_window(client, auth, resolved_ticket, ticket_row):
    with time_machine.travel(T0 + timedelta(days=7, minutes=1), tick=False):
        auth.login("dr.okafor")
        response = client.post(f"/tickets/{resolved_ticket}/reopen", follow_redirects=True)
        assert b"The time to reopen this ticket has passed" in response.data
    assert ticket_row(resolved_ticket).status == "resolved"


def test_autoclose_job_closes_after_the_configured_days_and_audits_as_system(
        app, resolved_ticket, ticket_row, audit_events):
    with app.app_context(), time_machine.travel(T0 + timedelta(days=6), tick=False):
        assert close_resolved_tickets() == []
    with app.app_context(), time_machine.travel(T0 + timedelta(days=7, seconds=1), tick=False):
        assert job_kinds(app)["helpdesk.autoclose"].every(app) == 3600
        assert close_resolved_tickets() == [resolved_ticket]
        db.session.remove()
    ticket = ticket_row(resolved_ticket)
    assert ticket.status == "closed" and ticket.closed_at == T0 + timedelta(days=7, seconds=1)
    event = audit_events("ticket.update", resolved_ticket)[-1]
    assert event["user_id"] is None and event["details"]["autoclosed"] is True
    with app.app_context():
        last = history_of("ticket", int(resolved_ticket[3:]))[-1]
        assert (last.field, last.new_value, last.user_id) == ("status", "closed", None)


def test_autoclose_days_are_configurable_and_the_cli_reports(app, app_config, resolved_ticket, runner,
                                                             ticket_row):
    app.config["PACSDESK_AUTOCLOSE_DAYS"] = 2
    with time_machine.travel(T0 + timedelta(days=2, hours=1), tick=False):
        result = runner.invoke(args=["helpdesk", "autoclose"])
    assert result.exit_code == 0, result.output
    assert f"Closed 1 resolved ticket: {resolved_ticket}" in result.output
    assert ticket_row(resolved_ticket).status == "closed"


def test_closed_ticket_takes_no_reply_reopen_or_change(client, auth, app, resolved_ticket, ticket_row):
    with app.app_context(), time_machine.travel(T0 + timedelta(days=8), tick=False):
        close_resolved_tickets()
    with time_machine.travel(T0 + timedelta(days=8, hours=1), tick=False):
        auth.login("dr.okafor")
        page = client.get(f"/tickets/{resolved_ticket}").data.decode()
        assert "This ticket is closed" in page and "Reopen ticket" not in page
        reply = client.post(f"/tickets/{resolved_ticket}/reply", data={"body": "again"})
        assert reply.status_code == 400 and b"closed" in reply.data
        client.post(f"/tickets/{resolved_ticket}/reopen")
        auth.logout()
        auth.login("pacs.sam")
        update = client.post(f"/tickets/{resolved_ticket}/update", data={
            "status": "open", "priority": "P1", "assignee_id": "",
            "category_id": str(ticket_row(resolved_ticket).category_id)})
        assert update.status_code == 400
    with app.app_context():
        ticket = db.session.get(Ticket, int(resolved_ticket[3:]))
        assert ticket.status == "closed" and ticket.priority == "P3"


def test_history_timeline_shows_who_changed_what(client, auth, resolved_ticket, make_user):
    auth.login("pacs.sam")
    page = client.get(f"/tickets/{resolved_ticket}").data.decode()
    assert "Sam" in page or "pacs.sam" in page
    assert "Status: <span class=\"text-muted\">New</span> → <strong>Open</strong>" in page
    assert "Status: <span class=\"text-muted\">Open</span> → <strong>Resolved</strong>" in page
