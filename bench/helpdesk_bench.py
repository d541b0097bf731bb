"""Help desk benchmark: queue, word search and ticket page with 100,000 tickets and 1,000,000 audit events.

Each request goes through the real app (Flask test client, signed in as a technician) and
is timed first on an empty database (the baseline) and then after a bulk load; the script
prints the 50th and 95th percentiles and the ratio to the baseline.

    python bench/helpdesk_bench.py                        # SQLite file in a temporary folder
    python bench/helpdesk_bench.py --database-url postgresql://user@host/bench_db

The PostgreSQL database given is emptied first (its public schema is dropped).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app
from audit.chain import canonical_details, chain_head, event_hash
from audit.models import AuditEvent
from core.auth.models import Role
from core.auth.services import NewUser, create_user
from core.config import _database_url
from core.extensions import db
from core.reference_data import load_reference_data
from helpdesk.models import Category, Ticket, TicketChange, TicketComment
from helpdesk.search import TicketWord, words_of
from helpdesk.sla import DEFAULT_SLAS

PASSWORD = "bench-password-long-enough"
TARGET_MS = 150.0
VOCABULARY = ("priors missing study images worklist viewer workstation slow freeze login locked report "
         "interface HL7 order CD burn import printer monitor router archive node modality CT MR US "
         "mammography tomosynthesis hanging protocol DICOM association rejected timeout reading room "
         "emergency radiologist technologist accession patient series compression cache storage "
         "query retrieve send route forward error message screen crash restart update")
WORDS = VOCABULARY.split()
STATUSES = (("closed", 0.80), ("resolved", 0.03), ("waiting", 0.03), ("open", 0.08), ("new", 0.06))
BATCH = 10000


def _sentence(rng: random.Random, n: int) -> str:
    """``n`` random words from the help desk vocabulary."""
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _status(rng: random.Random) -> str:
    """A status drawn with the weights of a real help desk (mostly closed)."""
    roll, total = rng.random(), 0.0
    for status, weight in STATUSES:
        total += weight
        if roll < total:
            return status
    return "closed"


def _batched(rows: Iterator[dict], size: int = BATCH) -> Iterator[list[dict]]:
    """Group an iterator of rows into lists of ``size``."""
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _bulk_insert(model: type, rows: list[dict]) -> None:
    """Insert rows fast: COPY on PostgreSQL, executemany on SQLite."""
    if not rows:
        return
    if db.engine.dialect.name != "postgresql":
        db.session.execute(insert(model), rows)
        return
    columns = list(rows[0])
    cursor = db.session.connection().connection.dbapi_connection.cursor()
    with cursor.copy(f"COPY {model.__tablename__} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def load_tickets(count: int, requester_ids: list[int], tech_ids: list[int], rng: random.Random) -> None:
    """Bulk-insert ``count`` tickets with two replies and one history line each."""
    categories = [c.id for c in db.session.execute(db.select(Category)).scalars()]
    now = datetime.now(UTC)
    start_id = (db.session.execute(text("SELECT max(id) FROM ticket")).scalar() or 0) + 1

    def tickets() -> Iterator[dict]:
        for ticket_id in range(start_id, start_id + count):
            created = now - timedelta(minutes=rng.randint(1, 3 * 365 * 24 * 60))
            status = _status(rng)
            priority = rng.choice(("P1", "P2", "P3", "P3", "P4"))
            response, resolution = DEFAULT_SLAS[priority]
            response_due = created + timedelta(minutes=response)
            resolution_due = created + timedelta(minutes=resolution)
            done = created + timedelta(hours=rng.randint(1, 72))
            rare = " kerberos" if ticket_id % 1000 == 0 else ""
            yield {
                "id": ticket_id, "title": (_sentence(rng, 6) + rare)[:200], "description": _sentence(rng, 45),
                "category_id": rng.choice(categories), "priority": priority, "status": status,
                "impact": "one", "urgency": "hours", "requester_id": rng.choice(requester_ids),
                "assignee_id": rng.choice(tech_ids) if status != "new" else None, "asset_id": None,
                "location": "Reading room", "callback_phone": "x1234",
                "accession_number": f"ACC{ticket_id}" if ticket_id % 5 == 0 else "",
                "patient_id": "", "study_instance_uid": "", "dedup_key": None,
                "created_at": created, "updated_at": done,
                "first_responded_at": created + timedelta(minutes=5) if status != "new" else None,
                "response_due_at": response_due, "resolution_due_at": resolution_due,
                "sla_due_at": (response_due if status == "new" else resolution_due)
                if status in ("new", "open") else None,
                "queue_rank": 0 if status in ("new", "open") else 1,
                "waiting_since": done if status == "waiting" else None, "paused_seconds": 0,
                "resolved_at": done if status in ("resolved", "closed") else None,
                "closed_at": done + timedelta(days=7) if status == "closed" else None,
            }

    for batch in _batched(tickets()):
        _bulk_insert(Ticket, batch)
        _bulk_insert(TicketWord, [{"word": w, "ticket_id": t["id"]} for t in batch
                                  for w in words_of(f"{t['title']}\n{t['description']}")])
        comments = [{"ticket_id": t["id"], "author_id": author, "is_internal": internal,
                     "body": _sentence(rng, 25), "created_at": t["created_at"] + timedelta(minutes=k)}
                    for t in batch for k, (author, internal) in
                    enumerate(((t["requester_id"], False), (rng.choice(tech_ids), rng.random() < 0.3)))]
        _bulk_insert(TicketComment, comments)
        changes = [{"ticket_id": t["id"], "changed_at": t["updated_at"], "user_id": rng.choice(tech_ids),
                    "field": "status", "old_value": "new", "new_value": t["status"]}
                   for t in batch if t["status"] != "new"]
        _bulk_insert(TicketChange, changes)
        db.session.commit()


def load_audit_events(count: int, rng: random.Random) -> None:
    """Append ``count`` correctly chained audit events after the current head."""
    head_seq, head_hash, _ = chain_head()
    start = datetime.now(UTC) - timedelta(days=3 * 365)
    step = timedelta(days=3 * 365) / max(count, 1)
    actions = ("ticket.view", "ticket.view", "ticket.view", "ticket.update", "ticket.comment",
               "user.login", "attachment.download")
    prev = head_hash

    def events() -> Iterator[dict]:
        nonlocal prev
        for k in range(1, count + 1):
            seq = head_seq + k
            at = start + step * k
            action = rng.choice(actions)
            object_id = f"PD-{rng.randint(1, 100000):06d}"
            details = canonical_details({"bench": True})
            digest = event_hash(seq, at, 1, "bench.tech", "technician", "10.0.0.1", action, "ticket",
                                object_id, "success", details, prev)
            yield {"seq": seq, "occurred_at": at, "user_id": 1, "username": "bench.tech",
                   "user_role": "technician", "client_address": "10.0.0.1", "action": action,
                   "object_type": "ticket", "object_id": object_id, "outcome": "success",
                   "details": details, "prev_hash": prev, "hash": digest}
            prev = digest

    for batch in _batched(events(), 20000):
        _bulk_insert(AuditEvent, batch)
        db.session.commit()


def timed(call: Callable[[], object], runs: int) -> list[float]:
    """Milliseconds per call, after three warm-up calls."""
    for _ in range(3):
        call()
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def p95(samples: list[float]) -> float:
    """95th percentile."""
    return statistics.quantiles(samples, n=20, method="inclusive")[-1]


def measure(client, ticket_number: str, runs: int) -> dict[str, list[float]]:
    """Time each benchmarked request; every response must be a 200."""

    def get(url: str) -> Callable[[], object]:
        def call() -> object:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
            return response
        return call

    return {
        "queue, status=open, first page": timed(get("/tickets?status=open"), runs),
        "queue, default (open work, due first)": timed(get("/tickets"), runs),
        "word search 'tomosynthesis', all statuses": timed(get("/tickets?q=tomosynthesis&status=all"),
                                                           runs),
        "word search 'hanging protocol', open work": timed(get("/tickets?q=hanging+protocol"), runs),
        "word search, rare word, all statuses": timed(get("/tickets?q=kerberos&status=all"), runs),
        "ticket page (audited view)": timed(get(f"/tickets/{ticket_number}"), runs),
        "my tickets page": timed(get("/my/tickets"), runs),
    }


def _reset_postgres(url: str) -> None:
    """Drop and recreate the public schema of the benchmark database."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="PostgreSQL URL of a database to wipe and use")
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--audit-events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pacsdesk-bench-"))
    if args.database_url:
        url = _database_url(args.database_url)
        _reset_postgres(url)
    else:
        url = f"sqlite:///{workdir / 'bench.db'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "PACSDESK_INSTANCE_PATH": str(workdir),
                      "SECRET_KEY": "bench", "WTF_CSRF_ENABLED": False, "RATELIMIT_ENABLED": False,
                      "PACSDESK_SESSION_IDLE_MINUTES": 1440,
                      "PASSWORD_HASH_PARAMS": {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}})
    rng = random.Random(args.seed)
    with app.app_context():
        db.create_all()
        load_reference_data()
        tech = create_user(NewUser(username="bench.tech", role=Role.TECHNICIAN, password=PASSWORD))
        requester = create_user(NewUser(username="bench.requester", role=Role.REQUESTER, password=PASSWORD))
        db.session.commit()
        tech_id, requester_id = tech.id, requester.id
        category = db.session.execute(
            db.select(Category.id).where(Category.code == "viewer_workstation")).scalar_one()
    client = app.test_client()
    client.post("/login", data={"username": "bench.tech", "password": PASSWORD})
    response = client.post("/tickets/new", data={
        "title": "Hanging protocol lost after tomosynthesis update", "description": "Reading room 2.",
        "category_id": str(category), "impact": "one", "urgency": "hours"})
    baseline_ticket = response.headers["Location"].rsplit("/", 1)[-1]
    baseline = measure(client, baseline_ticket, args.runs)

    began = time.perf_counter()
    with app.app_context():
        requester_ids = [requester_id, *[
            create_user(NewUser(username=f"bench.req{i}", role=Role.REQUESTER, password=PASSWORD)).id
            for i in range(50)]]
        tech_ids = [tech_id, *[
            create_user(NewUser(username=f"bench.tech{i}", role=Role.TECHNICIAN, password=PASSWORD)).id
            for i in range(8)]]
        db.session.commit()
        load_tickets(args.tickets, requester_ids, tech_ids, rng)
        load_audit_events(args.audit_events, rng)
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("SELECT setval(pg_get_serial_sequence('ticket', 'id'), max(id)) "
                                    "FROM ticket"))
            db.session.commit()
            # What autovacuum does on a live system: statistics and the visibility map.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
        else:
            db.session.execute(text("ANALYZE"))
            db.session.commit()
        total_tickets = db.session.execute(text("SELECT count(*) FROM ticket")).scalar()
        total_events = db.session.execute(text("SELECT count(*) FROM audit_event")).scalar()
    load_seconds = time.perf_counter() - began
    loaded_ticket = f"PD-{args.tickets // 2:06d}"
    loaded = measure(client, loaded_ticket, args.runs)
    with app.app_context():
        db.engine.dispose()
    shutil.rmtree(workdir, ignore_errors=True)

    dialect = "PostgreSQL" if args.database_url else "SQLite"
    print(f"\nHelp desk benchmark on {dialect}: {total_tickets:,} tickets, {total_events:,} audit events "
          f"(loaded in {load_seconds:.0f} s), {args.runs} runs per request, target p95 < {TARGET_MS:.0f} ms")
    print(f"{'request':48} {'empty p50':>10} {'empty p95':>10} {'full p50':>10} {'full p95':>10} "
          f"{'ratio':>6}  ok")
    failed = False
    for name, samples in loaded.items():
        base = baseline[name]
        ok = p95(samples) < TARGET_MS
        failed |= not ok
        print(f"{name:48} {statistics.median(base):10.1f} {p95(base):10.1f} "
              f"{statistics.median(samples):10.1f} {p95(samples):10.1f} {p95(samples) / p95(base):6.1f}"
              f"  {'yes' if ok else 'NO'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
