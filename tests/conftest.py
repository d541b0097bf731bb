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
from audit.trail.guards import drop_audit_guards, install_audit_guards
from core import audit_sink
from core.auth.models import Role, User
from core.auth.services import NewUser, create_user
from core.extensions import db
from core.reference_data import load_reference_data


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out, rather than skip, the tests that belong to the other database's run.

    A run without PACSDESK_TEST_DATABASE_URL leaves out the PostgreSQL tests (the PostgreSQL run
    has them); the PostgreSQL run leaves out the tests about SQLite itself. Tests using the
    ``scratch_postgres`` or ``sqlite_only`` fixtures are marked by those fixtures' names.
    """
    on_postgres = bool(os.environ.get("PACSDESK_TEST_DATABASE_URL"))
    kept, left_out = [], []
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        postgres = item.get_closest_marker("postgres") or "scratch_postgres" in fixtures
        sqlite = item.get_closest_marker("sqlite_only") or "sqlite_only" in fixtures
        (left_out if (postgres and not on_postgres) or (sqlite and on_postgres) else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


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
        # Tests sign in with a password alone; the MFA tests turn the requirement on themselves.
        "PACSDESK_MFA_REQUIRED_ROLES": frozenset(),
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


def forget_setup_events(url: str) -> None:
    """Give tests an empty audit trail over the reference data that setup audited.

    ``pacsdesk setup`` audits the categories, courses and policies it seeds (tests of setup and of
    the audit hook prove it); the tests' database template stands for an installed instance
    whose setup lies before the trail they look at, so those events are removed here, with the
    append-only triggers off for this fixture's statement only.
    """
    engine = create_engine(url)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text("DELETE FROM audit_event"))
        else:
            drop_audit_guards(conn)
            conn.execute(text("DELETE FROM audit_event"))
            install_audit_guards(conn)
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
    forget_setup_events(target)
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


FIXTURE_ACTIONS = {"test.fixture": "Data written directly by a test fixture"}


@pytest.fixture
def app(app_config: dict) -> Iterator[Flask]:
    """The app on this test's database (its fixtures may audit what they write as ``test.fixture``)."""
    application = create_app(app_config)
    audit_sink.register_actions(application, FIXTURE_ACTIONS)
    if PG_URL:
        with application.app_context():
            load_reference_data()
            db.session.commit()
            db.engine.dispose()
        forget_setup_events(app_config["SQLALCHEMY_DATABASE_URI"])
    yield application
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
def run_jobs(app: Flask):
    """Run every due queued job now, in this thread, through the worker's own code path."""
    from core.jobs.worker import work_until_idle

    def run(kinds: list[str] | None = None) -> list:
        return work_until_idle(app, kinds)

    return run


@pytest.fixture
def queue_job(app: Flask):
    """Queue a job as the app would (committed); returns its id: ``queue_job("audit.retention")``."""
    from core.jobs.queue import enqueue

    def queue(kind: str, params: dict | None = None, **kwargs) -> int:
        with app.app_context():
            job = enqueue(kind, params, **kwargs)
            db.session.commit()
            return job.id

    return queue


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
