"""Mail benchmark: 1,000 notifications queued and delivered to a local SMTP server, and the cost of
e-mail to filing a ticket.

1. Queue 1,000 notifications (``notify`` in the caller's transaction, as a service does), then
   deliver them with the ``mail.deliver`` code path (which writes their outbox messages first)
   to an aiosmtpd server on loopback (one SMTP conversation per message, as in production):
   notifications queued per second and messages delivered per second.
2. File tickets through the app (Flask test client, the real form and view) with e-mail on and
   with e-mail off, alternating in the same run: the 50th and 95th percentiles and their ratio.
   Asking for e-mail must be cheap (writing the outbox and sending are the job's), so the
   difference should stay under 10%.

    python bench/mail_bench.py [--notifications 1000] [--tickets 200] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import benchlib  # first: it puts the project on sys.path
from aiosmtpd.controller import Controller
from flask import Flask
from sqlalchemy import select

from core.auth.models import Role, User
from core.auth.services import NewUser, create_user
from core.extensions import db
from core.mail.compose import Notice
from core.notifications import notify
from core.notifications.delivery import deliver_due
from core.notifications.models import EmailState, Notification
from core.reference_data import load_reference_data
from helpdesk.models import Category

PASSWORD = "bench-password-long-enough"
TECHNICIANS = 5


@dataclass
class Counter:
    """aiosmtpd handler that counts what it accepts."""

    received: int = 0
    recipients: set[str] = field(default_factory=set)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Accept and count the message."""
        self.received += 1
        self.recipients.update(envelope.rcpt_tos)
        return "250 2.0.0 Ok"


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def mail_env(port: int) -> dict[str, str]:
    """Settings for a relay on loopback without TLS (the server is local to this benchmark)."""
    return {"PACSDESK_MAIL_URL": f"smtp://127.0.0.1:{port}?starttls=false",
            "PACSDESK_MAIL_FROM": "PACS Desk <pacsdesk@hospital.example>",
            "PACSDESK_BASE_URL": "https://pacsdesk.hospital.example"}


def prepare(app: Flask) -> None:
    """Schema, reference data, a requester and the technicians, all with addresses."""
    with app.app_context():
        db.create_all()
        load_reference_data()
        create_user(NewUser(username="requester", role=Role.REQUESTER, password=PASSWORD,
                            email="requester@hospital.example"))
        for n in range(TECHNICIANS):
            create_user(NewUser(username=f"tech{n}", role=Role.TECHNICIAN, password=PASSWORD,
                                email=f"tech{n}@hospital.example"))
        db.session.commit()


def throughput(url: str, schema: str | None, port: int, counter: Counter, count: int) -> dict[str, float]:
    """Queue ``count`` notifications, then deliver them; rates per second."""
    with tempfile.TemporaryDirectory() as instance:
        app = benchlib.make_app(url, instance, schema, mail_env(port))
        prepare(app)
        with app.app_context():
            people = list(db.session.execute(
                select(User).where(User.role == Role.TECHNICIAN)).scalars())
            notice = Notice(subject="Benchmark notice", paragraphs=("Something happened in PACS Desk.",),
                            link_path="/notifications")
            started = time.perf_counter()
            for n in range(count):
                notify("inventory.node_down", [people[n % len(people)]], notice)
                if n % 100 == 99:
                    db.session.commit()
            db.session.commit()
            queued = time.perf_counter() - started
            started = time.perf_counter()
            summary = deliver_due(app.config["PACSDESK_MAIL"])
            sent = time.perf_counter() - started
            db.engine.dispose()
    if summary.get("sent") != count or counter.received != count:
        raise SystemExit(f"expected {count} messages, the server got {counter.received} ({summary})")
    return {"queued_per_s": count / queued, "delivered_per_s": count / sent, "queue_s": queued,
            "deliver_s": sent}


def filing_app(url: str, schema: str | None, instance: str, env: dict[str, str]) -> tuple[Flask, Any, int]:
    """An app, a signed-in requester's client and the category to file under."""
    app = benchlib.make_app(url, instance, schema, env, config={
        "WTF_CSRF_ENABLED": False, "RATELIMIT_ENABLED": False, "PACSDESK_SESSION_IDLE_MINUTES": 1440})
    prepare(app)
    client = app.test_client()
    response = client.post("/login", data={"username": "requester", "password": PASSWORD})
    assert response.status_code == 302
    with app.app_context():
        category = db.session.execute(select(Category.id).where(Category.code == "other")).scalar_one()
    return app, client, category


def file_once(client: Any, category: int, n: int) -> None:
    """File one ticket through the form."""
    response = client.post("/tickets/new", data={
        "title": f"Viewer slow in reading room {n % 9}", "description": "It takes a minute to open a study.",
        "category_id": str(category), "impact": "one", "urgency": "hours"})
    assert response.status_code == 302, response.status_code


def read_flashes(client: Any) -> None:
    """Take the filing's message out of the session, as the page a browser follows the redirect to does.

    Left there, every filing's message would pile up in the cookie (e-mail on writes a longer
    one), and each request would pay for decoding and signing all of them.
    """
    with client.session_transaction() as session:
        flashed = session.pop("_flashes", [])
    assert len(flashed) == 1 and flashed[0][1].startswith("Ticket "), flashed


def filing(url_on: tuple[str, str | None], url_off: tuple[str, str | None], port: int,
           tickets: int) -> dict[str, list[float]]:
    """Milliseconds to file a ticket with e-mail on and off, alternating."""
    with tempfile.TemporaryDirectory() as on_dir, tempfile.TemporaryDirectory() as off_dir:
        on_app, on_client, on_category = filing_app(*url_on, on_dir, mail_env(port))
        off_app, off_client, off_category = filing_app(*url_off, off_dir, {})
        samples: dict[str, list[float]] = {"on": [], "off": []}
        pair = [("on", on_client, on_category), ("off", off_client, off_category)]
        for n in range(-5, tickets):  # five warm-ups each; who goes first alternates
            for name, client, category in (pair if n % 2 else pair[::-1]):
                elapsed, _ = benchlib.timed_ms(partial(file_once, client, category, n))
                read_flashes(client)
                if n >= 0:
                    samples[name].append(elapsed)
        with on_app.app_context():
            waiting = db.session.execute(select(Notification.id).where(
                Notification.email == EmailState.WAITING)).all()
            db.engine.dispose()
        with off_app.app_context():
            db.engine.dispose()
    expected = (tickets + 5) * (1 + TECHNICIANS)
    if len(waiting) != expected:
        raise SystemExit(f"expected {expected} e-mails asked for with e-mail on, found {len(waiting)}")
    return samples


def main() -> None:
    """Run both parts and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notifications", type=int, default=1000)
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    counter = Counter()
    port = free_port()
    controller = Controller(counter, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with benchlib.scratch_database(args.database_url, "mail") as (url, schema):
            rates = throughput(url, schema, port, counter, args.notifications)
        print(f"{args.notifications} notifications: queued in {rates['queue_s']:.2f} s "
              f"({rates['queued_per_s']:.0f}/s), delivered in {rates['deliver_s']:.2f} s "
              f"({rates['delivered_per_s']:.0f} messages/s, one SMTP conversation each)")
        with benchlib.scratch_database(args.database_url, "mailon") as on, \
                benchlib.scratch_database(args.database_url, "mailoff") as off:
            samples = filing(on, off, port, args.tickets)
    finally:
        controller.stop()
    on_p95, off_p95 = benchlib.p95(samples["on"]), benchlib.p95(samples["off"])
    for name in ("off", "on"):
        print(f"filing a ticket, e-mail {name:>3}: p50 {statistics.median(samples[name]):6.1f} ms, "
              f"p95 {benchlib.p95(samples[name]):6.1f} ms ({len(samples[name])} tickets, "
              f"{1 + TECHNICIANS if name == 'on' else 0} e-mails asked for each)")
    difference = (on_p95 / off_p95 - 1) * 100
    print(f"p95 with e-mail on vs off: {on_p95 / off_p95:.2f}x ({difference:+.1f}%; target under +10%)")


if __name__ == "__main__":
    main()
