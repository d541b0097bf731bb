"""A database that goes away: a clear 503 when nothing was saved, never a 500 for a saved change."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select

from audit.trail.models import AuditEvent
from core.extensions import db
from helpdesk.models import Category, Ticket
from tests.conftest import PASSWORD
from tests.helpers import require_postgres

SAVED = "Your change was saved"
NOT_SAVED = "nothing was saved; try again"
UNKNOWN = "whether it was saved is not known"


def _ticket_form(app, title: str) -> dict:
    with app.app_context():
        category = db.session.execute(select(Category.id).limit(1)).scalar_one()
    return {"title": title, "description": "Priors absent.", "category_id": str(category),
            "impact": "one", "urgency": "hours"}


def _make_database_unreachable(database_url: str) -> None:
    """Put a folder where the SQLite file was: every new connection fails to open it."""
    path = Path(database_url.removeprefix("sqlite:///"))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.mkdir()


@pytest.mark.sqlite_only  # breaks the SQLite file; the PostgreSQL test terminates backends instead
def test_an_unreachable_database_answers_503_nothing_saved_with_retry_after(app, client, make_user,
                                                                            database_url):
    make_user("requester", "dr.okafor")
    client.post("/login", data={"username": "dr.okafor", "password": PASSWORD})
    form = _ticket_form(app, "Priors missing")
    with app.app_context():
        db.engine.dispose()
    _make_database_unreachable(database_url)

    post = client.post("/tickets/new", data=form)
    page = client.get("/tickets/new")
    health = client.get("/healthz")

    assert post.status_code == 503 and post.headers["Retry-After"] == "5"
    assert "The database was unavailable, nothing was saved; try again." in post.data.decode()
    assert page.status_code == 503 and NOT_SAVED in page.data.decode()
    assert health.status_code == 503 and health.json["database"] == "unavailable"


@pytest.mark.postgres
def test_terminated_backends_during_filing_never_lie_about_what_was_saved(app, make_user):
    url = require_postgres()
    for name in ("tech.a", "tech.b", "tech.c", "tech.d"):
        make_user("technician", name)
    form = _ticket_form(app, "")
    answers: dict[str, tuple[int, str]] = {}
    done = threading.Event()
    killed = [0]

    def file_tickets(username: str) -> None:
        client = app.test_client()
        while client.post("/login", data={"username": username, "password": PASSWORD}).status_code != 302:
            time.sleep(0.05)   # the login itself met a terminated backend: try again, as a user would
        for i in range(25):
            title = f"Priors missing {username} {i}"
            response = client.post("/tickets/new", data={**form, "title": title})
            redirected = response.status_code == 302
            body = response.headers.get("Location", "") if redirected else response.data.decode()
            answers[title] = (response.status_code, body)

    def terminate_backends() -> None:
        rng = random.Random(12)
        with psycopg.connect(url, autocommit=True, application_name="fault-injector") as conn:
            while not done.is_set():
                rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE application_name = 'pacsdesk' AND pid <> pg_backend_pid() "
                                    "AND datname = current_database()").fetchall()
                killed[0] += sum(1 for (ok,) in rows if ok)
                time.sleep(rng.uniform(0.1, 0.4))

    filers = [threading.Thread(target=file_tickets, args=(f"tech.{c}",)) for c in "abcd"]
    killer = threading.Thread(target=terminate_backends)
    killer.start()
    for thread in filers:
        thread.start()
    for thread in filers:
        thread.join(timeout=240)
    done.set()
    killer.join(timeout=10)

    assert len(answers) == 100 and killed[0] > 0
    statuses = {code for code, _ in answers.values()}
    assert statuses <= {302, 200, 503}, statuses
    succeeded = {t for t, (code, body) in answers.items()
                 if (code == 302 and "/tickets/PD-" in body) or (code == 200 and SAVED in body)}
    failed = {t for t, (code, body) in answers.items() if code == 503 and NOT_SAVED in body}
    unknown = {t for t, (code, body) in answers.items() if code == 503 and UNKNOWN in body}
    assert succeeded | failed | unknown == set(answers) and succeeded
    with app.app_context():
        tickets = {t.title: t for t in db.session.execute(select(Ticket)).scalars()}
        audited = set(db.session.execute(select(AuditEvent.object_id).where(
            AuditEvent.action == "ticket.create")).scalars())
        missing = [title for title in succeeded if title not in tickets
                   or tickets[title].number not in audited]
        assert not missing, f"answered success but not saved with its audit event: {missing}"
        saved_anyway = sorted(failed & set(tickets))
        assert not saved_anyway, f"answered failure but saved: {saved_anyway}"


@pytest.mark.postgres
def test_a_backend_terminated_between_two_requests_costs_the_user_nothing(app, client, make_user):
    url = require_postgres()
    make_user("technician", "tech.a")
    assert client.post("/login", data={"username": "tech.a", "password": PASSWORD}).status_code == 302
    assert client.get("/tickets").status_code == 200  # the pool now holds this request's connection
    with psycopg.connect(url, autocommit=True, application_name="fault-injector") as conn:
        pids = [pid for (pid,) in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'pacsdesk' "
            "AND datname = current_database()")]
        assert pids
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 10
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)",
                           (pids,)).fetchone() != (0,) and time.monotonic() < deadline:
            time.sleep(0.02)

    pages = [client.get("/tickets") for _ in range(3)]

    assert [page.status_code for page in pages] == [200, 200, 200]
    assert NOT_SAVED not in pages[0].data.decode()
