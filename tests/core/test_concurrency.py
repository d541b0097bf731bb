"""Many people at once: readers never wait for the write lock, writers never fail on it, the chain holds."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable

import pytest
from flask import Flask
from sqlalchemy import func, select

from audit.trail.chain import verify_chain
from audit.trail.models import AuditEvent
from core.extensions import db
from helpdesk.models import Category, Ticket, TicketComment
from tests.conftest import PASSWORD

READERS, WRITERS, READS_EACH, WRITES_EACH = 8, 2, 12, 6


def _client(app: Flask, username: str):
    """A test client of its own, logged in as ``username``."""
    client = app.test_client()
    response = client.post("/login", data={"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.data[:300]
    return client


def _run_all(work: list[Callable[[], None]], timeout: float = 300) -> list[BaseException]:
    """Start every callable in its own thread at once; the exceptions they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(work))

    def run(job: Callable[[], None]) -> None:
        try:
            start.wait()
            job()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread never finished"
    return errors


def _file(client, category: int, title: str) -> str:
    """File a ticket through the form; its number."""
    response = client.post("/tickets/new", data={
        "title": title, "description": "Priors missing on the reading room workstation.",
        "category_id": str(category), "impact": "one", "urgency": "hours"})
    assert response.status_code == 302, response.data[:500]
    return response.headers["Location"].rsplit("/", 1)[-1]


def test_eight_readers_beside_two_writers_lose_nothing_and_keep_one_chain(app, make_user):
    make_user("technician", "pacs.sam")
    with app.app_context():
        category = db.session.execute(select(Category.id).order_by(Category.id).limit(1)).scalar_one()
    seed = _client(app, "pacs.sam")
    numbers = [_file(seed, category, f"Seed ticket {i}") for i in range(3)]
    with app.app_context():
        events_before = db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()

    def reader(n: int) -> Callable[[], None]:
        def read() -> None:
            client = _client(app, "pacs.sam")
            pages = ["/tickets", f"/tickets/{numbers[n % 3]}", "/assets", "/", "/tickets?q=priors"]
            for i in range(READS_EACH):
                url = pages[i % len(pages)]
                response = client.get(url)
                assert response.status_code == 200, (url, response.status_code)
        return read

    def writer(n: int) -> Callable[[], None]:
        def write() -> None:
            client = _client(app, "pacs.sam")
            for i in range(WRITES_EACH):
                number = _file(client, category, f"Writer {n} ticket {i}")
                response = client.post(f"/tickets/{number}/reply", data={"body": f"Writer {n} reply {i}"})
                assert response.status_code == 302, response.data[:500]
        return write

    errors = _run_all([reader(n) for n in range(READERS)] + [writer(n) for n in range(WRITERS)])
    assert not errors, errors[:3]
    with app.app_context():
        titles = set(db.session.execute(select(Ticket.title)).scalars())
        replies = set(db.session.execute(select(TicketComment.body)).scalars())
        events = db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
        chain = verify_chain()
    for n in range(WRITERS):
        for i in range(WRITES_EACH):
            assert f"Writer {n} ticket {i}" in titles
            assert f"Writer {n} reply {i}" in replies
    assert chain.ok, chain.summary()
    # Every ticket page view, filing and reply was audited, and the chain holds all of them.
    assert events >= events_before + READERS * (READS_EACH // 5) + WRITERS * WRITES_EACH * 2
    assert chain.count == events


def _sqlite_path(app: Flask) -> str:
    """The test database's file (these tests are about SQLite's single write lock)."""
    return app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")


@pytest.mark.sqlite_only
def test_pages_that_only_read_are_served_while_another_process_holds_the_write_lock(app, make_user):
    path = _sqlite_path(app)
    make_user("technician", "pacs.sam")
    client = _client(app, "pacs.sam")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    answers: dict[str, int] = {}

    def read() -> None:
        for url in ("/tickets", "/assets", "/", "/healthz"):
            answers[url] = client.get(url).status_code

    reading = threading.Thread(target=read)
    reading.start()
    reading.join(timeout=10)
    finished = not reading.is_alive()
    holder.execute("ROLLBACK")
    holder.close()
    reading.join()
    assert finished, "a page that only reads waited for the write lock"
    assert answers == {"/tickets": 200, "/assets": 200, "/": 200, "/healthz": 200}


@pytest.mark.sqlite_only
def test_a_writer_waits_for_the_lock_and_then_writes(app, make_user):
    """A filing that finds the lock taken waits for it (no "database is locked") and is saved."""
    path = _sqlite_path(app)
    make_user("technician", "pacs.sam")
    client = _client(app, "pacs.sam")
    with app.app_context():
        category = db.session.execute(select(Category.id).order_by(Category.id).limit(1)).scalar_one()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    numbers: list[str] = []
    filing = threading.Thread(target=lambda: numbers.append(_file(client, category, "Filed while locked")))
    filing.start()
    filing.join(timeout=0.5)
    waited = filing.is_alive()
    holder.execute("ROLLBACK")
    holder.close()
    filing.join(timeout=30)
    assert waited, "the filing did not wait for the lock"
    assert numbers, "the filing failed"
    with app.app_context():
        assert db.session.execute(select(Ticket.title)).scalars().all() == ["Filed while locked"]
        assert verify_chain().ok


@pytest.mark.sqlite_only
def test_a_transaction_that_read_before_another_wrote_still_writes(app):
    """Reading first, then writing after a concurrent commit, never fails on a stale snapshot."""
    from audit import record

    _sqlite_path(app)
    with app.app_context():
        seen = db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
        other = threading.Thread(target=lambda: _append_elsewhere(app))
        other.start()
        other.join()
        record("test.fixture", object_type="ticket", object_id=1, username="test-fixture")
        db.session.commit()
        assert db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one() == seen + 2
        assert verify_chain().ok


def _append_elsewhere(app: Flask) -> None:
    """Append and commit one audit event on another connection."""
    from audit import record

    with app.app_context():
        record("test.fixture", object_type="ticket", object_id=2, username="test-fixture")
        db.session.commit()
        db.session.remove()
