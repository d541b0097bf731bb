"""SLA due times per priority, the pause while waiting on the requester, breaches (frozen clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 2 a.m.: the SLA clock is 24x7


@pytest.fixture
def app_config(app_config):
    """Sessions survive the hours these tests skip over."""
    app_config["PACSDESK_SESSION_IDLE_MINUTES"] = 1440
    return app_config


@pytest.fixture
def people(make_user):
    """A requester and a technician."""
    return make_user("requester", "dr.okafor"), make_user("technician", "pacs.sam")


def _as(auth, username):
    """Switch the logged-in user."""
    auth.logout()
    assert auth.login(username).status_code == 302


def test_p1_due_times_follow_the_defaults_and_first_response_moves_the_target(
        client, auth, people, file_ticket, ticket_row):
    with time_machine.travel(T0, tick=False) as clock:
        _as(auth, "dr.okafor")
        number = file_ticket(impact="care_stopped", urgency="now")
        ticket = ticket_row(number)
        assert ticket.priority == "P1"
        assert ticket.response_due_at == T0 + timedelta(minutes=15)
        assert ticket.resolution_due_at == T0 + timedelta(hours=4)
        assert ticket.sla_due_at == T0 + timedelta(minutes=15)
        clock.shift(timedelta(minutes=10))
        _as(auth, "pacs.sam")
        client.post(f"/tickets/{number}/reply", data={"body": "On my way."})
        ticket = ticket_row(number)
        assert ticket.first_responded_at == T0 + timedelta(minutes=10)
        assert ticket.status == "open"
        assert ticket.sla_due_at == T0 + timedelta(hours=4)


@pytest.mark.parametrize(("priority", "response", "resolution"), [
    ("P2", timedelta(hours=1), timedelta(hours=8)),
    ("P3", timedelta(hours=4), timedelta(days=3)),
    ("P4", timedelta(days=1), timedelta(days=10)),
])
def test_each_priority_has_its_default_targets(client, login_as, file_ticket, ticket_row, priority,
                                               response, resolution):
    with time_machine.travel(T0, tick=False):
        login_as("technician")
        ticket = ticket_row(file_ticket(priority=priority))
        assert ticket.response_due_at - T0 == response
        assert ticket.resolution_due_at - T0 == resolution


def test_clock_pauses_while_waiting_on_the_requester(client, auth, people, file_ticket, ticket_row):
    with time_machine.travel(T0, tick=False) as clock:
        _as(auth, "dr.okafor")
        number = file_ticket(impact="care_stopped", urgency="now")
        clock.shift(timedelta(minutes=5))
        _as(auth, "pacs.sam")
        client.post(f"/tickets/{number}/reply", data={"body": "Which workstation?"})
        clock.shift(timedelta(minutes=55))
        client.post(f"/tickets/{number}/update", data={"status": "waiting", "priority": "P1",
                                                      "category_id": str(ticket_row(number).category_id),
                                                      "assignee_id": ""})
        ticket = ticket_row(number)
        assert ticket.status == "waiting" and ticket.sla_due_at is None
        clock.shift(timedelta(hours=5))  # past the 4 h resolution target, but paused
        page = client.get(f"/tickets/{number}").data.decode()
        assert "Clock paused" in page and "3 h left" in page
        assert number not in client.get("/tickets?sla=breached").data.decode()
        _as(auth, "dr.okafor")
        client.post(f"/tickets/{number}/reply", data={"body": "RR-3, the left one."})
        ticket = ticket_row(number)
        assert ticket.status == "open"
        assert ticket.paused_seconds == 5 * 3600
        assert ticket.resolution_due_at == T0 + timedelta(hours=9)
        assert ticket.sla_due_at == T0 + timedelta(hours=9)


def test_breached_and_breaching_filters_and_dashboard(client, auth, people, file_ticket, ticket_row):
    with time_machine.travel(T0, tick=False) as clock:
        _as(auth, "dr.okafor")
        late = file_ticket(title="Late one", impact="care_stopped", urgency="now")   # P1: 15 min
        soon = file_ticket(title="Soon one", impact="one", urgency="now")            # P2: 1 h
        calm = file_ticket(title="Calm one", impact="minor", urgency="later")        # P4: 1 day
        clock.shift(timedelta(minutes=20))
        _as(auth, "pacs.sam")
        breached = client.get("/tickets?sla=breached").data.decode()
        assert late in breached and soon not in breached and calm not in breached
        breaching = client.get("/tickets?sla=soon").data.decode()
        assert late in breaching and soon in breaching and calm not in breaching
        queue = client.get("/tickets").data.decode()
        assert queue.index(late) < queue.index(soon) < queue.index(calm)
        assert "overdue" in queue


def test_priority_change_recomputes_due_times_from_creation(client, login_as, file_ticket, ticket_row):
    with time_machine.travel(T0, tick=False) as clock:
        login_as("technician")
        number = file_ticket(priority="P4")
        clock.shift(timedelta(minutes=30))
        client.post(f"/tickets/{number}/update", data={
            "status": "open", "priority": "P1", "category_id": str(ticket_row(number).category_id),
            "assignee_id": ""})
        ticket = ticket_row(number)
        assert ticket.priority == "P1"
        assert ticket.resolution_due_at == T0 + timedelta(hours=4)


def test_admin_sla_change_applies_to_new_tickets(client, login_as, file_ticket, ticket_row,
                                                 audit_events):
    login_as("admin")
    data = {"p1_response": "10", "p1_resolution": "120", "p2_response": "60", "p2_resolution": "480",
            "p3_response": "240", "p3_resolution": "4320", "p4_response": "1440",
            "p4_resolution": "14400"}
    assert client.post("/helpdesk/sla", data=data).status_code == 302
    assert audit_events("helpdesk.sla_changed")[0]["details"]["changes"]["P1"] == [[15, 240], [10, 120]]
    with time_machine.travel(T0, tick=False):
        login_as("technician")
        ticket = ticket_row(file_ticket(priority="P1"))
    assert ticket.resolution_due_at == T0 + timedelta(hours=2)
    login_as("admin", "admin2")
    bad = client.post("/helpdesk/sla", data={**data, "p2_resolution": "30"})
    assert bad.status_code == 400 and b"resolution cannot come before" in bad.data


def test_only_admins_configure_service_levels_and_categories(client, login_as):
    login_as("technician")
    assert client.get("/helpdesk/sla").status_code == 403
    assert client.get("/helpdesk/categories").status_code == 403
