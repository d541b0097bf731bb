"""Notification fixtures: the app with e-mail on through a real aiosmtpd (STARTTLS and AUTH) on loopback."""

from __future__ import annotations

import email
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import default
from urllib.parse import quote

import pytest
from sqlalchemy import select

from core.extensions import db
from core.notifications.models import Notification, OutboxMessage
from helpdesk.models import Category
from tests.core.mail.conftest import SMTP_PASSWORD, SMTP_USER, SmtpServer, smtp_server, test_ca

__all__ = ["smtp_server", "test_ca"]

SENDER = "St. Example Hospital <pacsdesk@hospital.example>"
BASE_URL = "https://pacsdesk.hospital.example"


def mail_settings(server: SmtpServer, port: int | None = None) -> dict[str, str]:
    """The PACSDESK_MAIL_* overrides that reach ``server`` (STARTTLS, the test account)."""
    url = (f"smtp://{quote(SMTP_USER, safe='')}:{quote(SMTP_PASSWORD, safe='')}@127.0.0.1:"
           f"{port or server.port}?timeout=5")
    return {"PACSDESK_MAIL_URL": url, "PACSDESK_MAIL_FROM": SENDER, "PACSDESK_BASE_URL": BASE_URL,
            "PACSDESK_MAIL_CA_FILE": server.ca_file, "PACSDESK_ORGANIZATION": "St. Example Hospital"}


@pytest.fixture
def mail_server(smtp_server: Callable[..., SmtpServer], request: pytest.FixtureRequest) -> SmtpServer:
    """aiosmtpd requiring STARTTLS and AUTH; ``@pytest.mark.smtp(rcpt_replies=...)`` changes its answers."""
    marker = request.node.get_closest_marker("smtp")
    return smtp_server("starttls", **(marker.kwargs if marker else {}))


@pytest.fixture
def app_config(app_config: dict, request: pytest.FixtureRequest) -> dict:
    """E-mail on through ``mail_server``, unless the test is marked ``mail_off``."""
    if request.node.get_closest_marker("mail_off") is None:
        app_config.update(mail_settings(request.getfixturevalue("mail_server")))
    return app_config


def pytest_configure(config: pytest.Config) -> None:
    """Declare this folder's markers."""
    config.addinivalue_line("markers", "mail_off: the app runs with e-mail off")
    config.addinivalue_line("markers", "smtp(**options): answers of the test SMTP server")


@pytest.fixture
def delivered(mail_server: SmtpServer) -> Callable[[], list[EmailMessage]]:
    """The messages the SMTP server accepted so far, parsed."""

    def messages() -> list[EmailMessage]:
        return [email.message_from_bytes(m.content, policy=default) for m in mail_server.messages]  # type: ignore[misc]

    return messages


def body_text(message: EmailMessage) -> str:
    """The plain-text and HTML parts of ``message`` together, decoded."""
    return "\n".join(part.get_content() for part in message.walk() if part.get_content_maintype() == "text")


@pytest.fixture
def outbox(app) -> Callable[[], list[OutboxMessage]]:
    """The outbox rows, oldest first, detached."""

    def rows() -> list[OutboxMessage]:
        with app.app_context():
            found = list(db.session.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars())
            for row in found:
                db.session.expunge(row)
            return found

    return rows


@pytest.fixture
def notifications_of(app) -> Callable[[int], list[Notification]]:
    """A user's notifications, oldest first, detached."""

    def rows(user_id: int) -> list[Notification]:
        with app.app_context():
            found = list(db.session.execute(select(Notification).where(Notification.user_id == user_id)
                                            .order_by(Notification.id)).scalars())
            for row in found:
                db.session.expunge(row)
            return found

    return rows


@pytest.fixture
def switch_to(make_user, auth):
    """Create a user and log the client in as them, logging out whoever was in."""

    def factory(role: str, username: str, **fields):
        auth.logout()
        user = make_user(role, username, **fields)
        assert auth.login(user.username).status_code == 302
        return user

    return factory


@pytest.fixture
def login(auth):
    """Log the client in as an existing user (after logging out)."""

    def as_user(user) -> None:
        auth.logout()
        assert auth.login(user.username).status_code == 302

    return as_user


@pytest.fixture
def file_ticket(client, app):
    """Post the new-ticket form as the logged-in user; returns (response, number)."""

    def post(**fields):
        with app.app_context():
            category = db.session.execute(select(Category.id).where(Category.code == "other")).scalar_one()
        data = {"title": "Viewer freezes on reading room 2", "description": "It freezes after login.",
                "category_id": str(category), "impact": "one", "urgency": "hours"}
        data.update(fields)
        response = client.post("/tickets/new", data=data, content_type="multipart/form-data")
        assert response.status_code == 302, response.data.decode()[:3000]
        return response, response.headers["Location"].rsplit("/", 1)[-1]

    return post
