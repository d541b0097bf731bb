"""Shared fixtures: a real database per test (SQLite file, or PostgreSQL when configured)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from app import create_app
from audit.reports.services import wait_for_reports
from core.auth.models import Role, User
from core.auth.services import NewUser, create_user
from core.extensions import db
from core.reference_data import load_reference_data
from inventory.verification.services import wait_for_pending_checks

PG_URL = os.environ.get("PACSDESK_TEST_DATABASE_URL")
PASSWORD = "correct-horse-battery-staple"
CHEAP_ARGON2 = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}


def test_overrides(instance: Path, database_url: str) -> dict:
    """Configuration every test app gets."""
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "PACSDESK_INSTANCE_PATH": str(instance),
        "SECRET_KEY": "test-secret-key",
        "WTF_CSRF_ENABLED": False,
        "RATELIMIT_ENABLED": False,
        "PASSWORD_HASH_PARAMS": CHEAP_ARGON2,
    }


def _pg_url() -> str:
    """The PostgreSQL URL in SQLAlchemy's psycopg form."""
    assert PG_URL
    for prefix in ("postgresql://", "postgres://"):
        if PG_URL.startswith(prefix):
            return "postgresql+psycopg://" + PG_URL[len(prefix):]
    return PG_URL


def _reset_postgres(url: str) -> None:
    """Drop everything in the test database's public schema."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def truncate_postgres(url: str) -> None:
    """Empty every table (triggers off for the cleanup only)."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        names = [t.name for t in db.metadata.sorted_tables]
        conn.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's PACSDESK_* settings."""
    for name in list(os.environ):
        if name.startswith("PACSDESK_") and not name.startswith(("PACSDESK_TEST_",
                                                                   "PACSDESK_REQUIRE_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def database_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Build the schema once: an SQLite file to copy, or the PostgreSQL database itself."""
    if PG_URL:
        url = _pg_url()
        _reset_postgres(url)
        target = url
    else:
        target = f"sqlite:///{tmp_path_factory.mktemp('template') / 'template.db'}"
    instance = tmp_path_factory.mktemp("template-instance")
    app = create_app(test_overrides(instance, target))
    with app.app_context():
        db.create_all()
        load_reference_data()
        db.session.commit()
        db.engine.dispose()
    return target


@pytest.fixture
def database_url(database_template: str, tmp_path: Path) -> Iterator[str]:
    """A database with the full schema and no rows, private to this test."""
    if PG_URL:
        yield database_template
        truncate_postgres(database_template)
        return
    source = Path(database_template.removeprefix("sqlite:///"))
    target = tmp_path / "pacsdesk.db"
    shutil.copy(source, target)
    yield f"sqlite:///{target}"


@pytest.fixture
def app_config(tmp_path: Path, database_url: str) -> dict:
    """Overrides for this test's app; tests may add to it before using ``app``."""
    instance = tmp_path / "instance"
    instance.mkdir(exist_ok=True)
    return test_overrides(instance, database_url)


@pytest.fixture
def app(app_config: dict) -> Iterator[Flask]:
    """The app on this test's database."""
    application = create_app(app_config)
    if PG_URL:
        with application.app_context():
            load_reference_data()
            db.session.commit()
    yield application
    # Background work the test started (a node's check after save, a report build) ends in
    # this test's database, never in the next test's (PostgreSQL's is emptied and reused).
    assert wait_for_pending_checks(60), "a node check started by this test is still running"
    wait_for_reports()
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A browser-like test client."""
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    """A CLI runner with the app loaded."""
    return app.test_cli_runner()


@pytest.fixture
def make_user(app: Flask):
    """Create a user with a known password: ``make_user("technician", "sam")``."""

    def factory(role: str = "requester", username: str | None = None, **fields) -> User:
        with app.app_context():
            name = username or f"{role}{db.session.query(User).count() + 1}"
            user = create_user(NewUser(username=name, role=Role(role), password=PASSWORD,
                                       **fields))
            db.session.commit()
            db.session.refresh(user)
            db.session.expunge(user)
            return user

    return factory


class AuthActions:
    """Log a test client in and out."""

    def __init__(self, client: FlaskClient) -> None:
        self._client = client

    def login(self, username: str, password: str = PASSWORD, next_url: str | None = None):
        """Post the login form."""
        url = "/login" + (f"?next={next_url}" if next_url else "")
        return self._client.post(url, data={"username": username, "password": password})

    def logout(self):
        """Post the logout form."""
        return self._client.post("/logout")


@pytest.fixture
def auth(client: FlaskClient) -> AuthActions:
    """Log-in helper bound to ``client``."""
    return AuthActions(client)


@pytest.fixture
def login_as(make_user, auth: AuthActions):
    """Create a user of ``role`` and log the client in as them; returns the user."""

    def factory(role: str, username: str | None = None, **fields) -> User:
        user = make_user(role, username, **fields)
        response = auth.login(user.username)
        assert response.status_code == 302, response.data[:500]
        return user

    return factory
