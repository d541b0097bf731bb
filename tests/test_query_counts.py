"""Pages do their work once: a page's number of queries does not grow with the rows it shows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask
from sqlalchemy import event, select

from core.auth.models import Role, User
from core.auth.services import NewUser, create_user
from core.extensions import db
from helpdesk import services as helpdesk_services
from helpdesk.models import Category, Ticket
from inventory import services as inventory_services
from inventory.asset_rules import AssetData
from tests.conftest import PASSWORD


@contextmanager
def counted(app: Flask) -> Iterator[list[str]]:
    """The SQL statements run on the app's engine while the block runs."""
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _user(role: Role, name: str) -> User:
    """A user created in the current transaction."""
    return create_user(NewUser(username=name, role=role, password=PASSWORD, full_name=name.title()))


def _grow(app: Flask, first: int, count: int) -> None:
    """Add ``count`` tickets and assets, each with its own requester, technician, asset and replies."""
    with app.app_context():
        categories = db.session.execute(select(Category.id).order_by(Category.id)).scalars().all()
        for n in range(first, first + count):
            requester = _user(Role.REQUESTER, f"requester{n}")
            tech = _user(Role.TECHNICIAN, f"tech{n}")
            node = n % 2 == 0
            inventory_services.create_asset(AssetData(
                asset_tag=f"AS-{n:03d}", name=f"Asset {n}", kind="dicom_node" if node else "workstation",
                location=f"Room {n}", department=f"Dept {n}", assigned_user_id=requester.id,
                hostname=f"host{n}.hospital.example", ae_title=f"AE{n}" if node else None,
                port=104 if node else None, dicom_role="both" if node else None,
                dicom_type="modality" if node else None, modality="CT" if node else None,
                verify_enabled=False), user=tech)
            ticket = helpdesk_services.create_ticket(helpdesk_services.NewTicket(
                title=f"Priors missing {n}", description="Reading room workstation.",
                category_id=categories[n % len(categories)], impact="one", urgency="hours",
                asset_tag=f"AS-{n:03d}", requester_username=requester.username), tech)
            helpdesk_services.update_ticket(ticket, tech, status="open", assignee_id=tech.id)
            helpdesk_services.add_reply(ticket, requester, f"Still missing {n}")
            helpdesk_services.add_reply(ticket, tech, f"Looking {n}", internal=True)
        db.session.commit()


def _grow_replies(app: Flask, number: str, first: int, count: int) -> None:
    """Add ``count`` replies, each by a different person, and a status change per reply."""
    with app.app_context():
        ticket = db.session.get(Ticket, int(number.split("-")[1]))
        assert ticket is not None
        for n in range(first, first + count):
            author = _user(Role.TECHNICIAN, f"replier{n}")
            helpdesk_services.add_reply(ticket, author, f"Reply {n}", internal=n % 2 == 0)
            helpdesk_services.update_ticket(ticket, author, status="waiting" if n % 2 else "open",
                                            assignee_id=author.id)
        db.session.commit()


def _queries(app: Flask, client, url: str) -> int:
    """How many statements one view of ``url`` runs (after a first view, so caches are warm)."""
    assert client.get(url).status_code == 200
    with counted(app) as statements:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(statements)


@pytest.mark.parametrize("role", ["technician", "admin"])
def test_lists_and_dashboard_run_as_many_queries_for_twelve_rows_as_for_two(app, client, login_as, role):
    login_as(role, "viewer")
    pages = ["/tickets", "/tickets?status=all&q=priors", "/assets", "/"]
    _grow(app, 1, 2)
    few = {url: _queries(app, client, url) for url in pages}
    _grow(app, 3, 10)
    many = {url: _queries(app, client, url) for url in pages}
    assert many == few


def test_ticket_page_runs_as_many_queries_for_twelve_replies_as_for_two(app, client, login_as):
    login_as("technician", "viewer")
    _grow(app, 1, 1)
    number = "PD-000001"
    _grow_replies(app, number, 100, 2)
    few = _queries(app, client, f"/tickets/{number}")
    _grow_replies(app, number, 200, 10)
    many = _queries(app, client, f"/tickets/{number}")
    assert many == few


def test_audit_search_runs_as_many_queries_for_forty_events_as_for_four(app, client, login_as):
    from audit import record

    login_as("compliance", "viewer")

    def add(count: int) -> None:
        with app.app_context():
            for n in range(count):
                record("test.fixture", object_type="ticket", object_id=f"PD-{n:06d}", user=None,
                       username=f"someone{n}", details={"note": "priors"})
            db.session.commit()

    add(4)
    few = _queries(app, client, "/audit?q=priors")
    add(36)
    many = _queries(app, client, "/audit?q=priors")
    assert many == few
