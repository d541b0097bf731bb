"""Help desk fixtures: categories by code, filing tickets through the browser or the services."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from audit.trail.models import AuditEvent
from core.extensions import db
from helpdesk.models import Category, Ticket


@pytest.fixture
def category_id(app):
    """Look a seeded category's id up by code."""

    def lookup(code: str = "priors_missing") -> int:
        with app.app_context():
            return db.session.execute(select(Category.id).where(Category.code == code)).scalar_one()

    return lookup


@pytest.fixture
def file_ticket(client, category_id):
    """Post the new-ticket form as the logged-in user; returns the ticket number."""

    def post(**fields) -> str:
        data = {"title": "Priors missing in reading room 2", "description": "CT chest priors absent.",
                "category_id": str(category_id()), "impact": "one", "urgency": "hours"}
        data.update(fields)
        response = client.post("/tickets/new", data=data, content_type="multipart/form-data")
        assert response.status_code == 302, response.data.decode()[:3000]
        return response.headers["Location"].rsplit("/", 1)[-1]

    return post


@pytest.fixture
def ticket_row(app):
    """Load a ticket by number as plain attributes."""

    def load(number: str) -> Ticket:
        with app.app_context():
            ticket = db.session.get(Ticket, int(number.split("-")[1]))
            assert ticket is not None
            db.session.expunge(ticket)
            return ticket

    return load


@pytest.fixture
def audit_events(app):
    """The audit events of an action, oldest first, as dicts with parsed details."""

    def events(action: str, object_id: str | None = None) -> list[dict]:
        with app.app_context():
            query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
            if object_id is not None:
                query = query.where(AuditEvent.object_id == object_id)
            return [{"user_id": e.user_id, "username": e.username, "object_id": e.object_id,
                     "details": json.loads(e.details)} for e in db.session.execute(query).scalars()]

    return events


@pytest.fixture
def login_as(make_user, auth):
    """Like the shared fixture, but logs the previous user out first so tests can switch users."""

    def factory(role: str, username: str | None = None, **fields):
        auth.logout()
        user = make_user(role, username, **fields)
        response = auth.login(user.username)
        assert response.status_code == 302, response.data[:500]
        return user

    return factory
