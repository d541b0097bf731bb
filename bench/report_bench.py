"""Access-audit report benchmark: a year holding 1,000,000 events, with a 10,000-row appendix.

Bulk-inserts correctly chained events (``audit.chain.event_hash``), then generates the
access-audit PDF for the whole period in a fresh process (so its peak memory is the
report's own) and checks it against the targets: at most 30 s, under 1 GB. Then renders
the same appendix rows twice in this run: as the report does (its first page laid out by
WeasyPrint, the following pages written directly as monospace text) and naively as one
WeasyPrint HTML table, and prints both rates and their ratio (target 10x).

    python bench/report_bench.py                          # temporary SQLite file
    python bench/report_bench.py --database-url postgresql://user@host/db

On PostgreSQL the benchmark works in a scratch schema that it drops afterwards.
"""

from __future__ import annotations

import argparse
import html
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import create_app
from audit.chain import canonical_details, event_hash, verify_chain
from audit.models import GENESIS_HASH, AuditEvent
from audit.reports import access_audit, services
from audit.reports.registry import ReportRequest
from core.auth.models import User
from core.config import load_config
from core.extensions import db
from core.pdf import Listing, PageFrame, html_to_pdf

TIME_TARGET = 30.0
MEMORY_TARGET_MB = 1024
RATIO_TARGET = 10.0
PERIOD = (date(2025, 1, 1), date(2025, 12, 31))
BATCH = 20_000
COLUMNS = ("seq", "occurred_at", "user_id", "username", "user_role", "client_address", "action",
           "object_type", "object_id", "outcome", "details", "prev_hash", "hash")
ACTIONS = (("ticket.view", 40), ("ticket.update", 14), ("user.login", 10), ("user.logout", 8),
           ("ticket.comment", 8), ("attachment.download", 5), ("asset.update", 5),
           ("user.login_failed", 3), ("ticket.create", 4), ("audit.search", 1),
           ("report.generate", 1), ("user.locked", 1))


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="sqlite:///file.db or postgresql://... "
                        "(default: a temporary SQLite file)")
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the period")
    parser.add_argument("--appendix", type=int, default=10_000, help="rows in the detail appendix")
    return parser.parse_args()


def make_app(url: str, instance: str, schema: str | None) -> Any:
    """The real application on ``url`` (in ``schema`` on PostgreSQL)."""
    os.environ.update(PACSDESK_DATABASE_URL=url, PACSDESK_INSTANCE_PATH=instance,
                      PACSDESK_SECRET_KEY="bench", PACSDESK_TIMEZONE="America/Chicago",
                      PACSDESK_ORGANIZATION="Benchmark Regional Hospital")
    overrides: dict[str, Any] = {}
    if schema:
        overrides["SQLALCHEMY_ENGINE_OPTIONS"] = {
            "connect_args": {"options": f"-csearch_path={schema}"}, "pool_size": 2}
    return create_app(overrides)


def seed_users(rng: random.Random) -> list[tuple[int, str, str]]:
    """Four hundred accounts, some disabled; returns (id, username, role)."""
    roles = ["requester"] * 6 + ["technician"] * 3 + ["compliance"]
    users = []
    for i in range(400):
        user = User(username=f"user{i:03d}", full_name=f"Bench User {i}", role=rng.choice(roles),
                    password_hash="x", is_disabled=i % 40 == 0,
                    disabled_at=datetime(2025, 6, 1, tzinfo=UTC) if i % 40 == 0 else None)
        db.session.add(user)
        users.append(user)
    db.session.flush()
    result = [(u.id, u.username, u.role) for u in users]
    db.session.commit()
    return result


def event_rows(n: int, users: list[tuple[int, str, str]], rng: random.Random):
    """Chained events spread over the period, mostly in daytime, in batches of row tuples."""
    start = datetime(2025, 1, 1, 6, tzinfo=UTC)
    span = (datetime(2026, 1, 1, 5, tzinfo=UTC) - start).total_seconds()
    names, weights = zip(*ACTIONS, strict=True)
    prev, batch = GENESIS_HASH, []
    step = span / n
    for seq in range(1, n + 1):
        at = start + timedelta(seconds=seq * step)
        user_id, username, role = users[rng.randrange(len(users))]
        action = rng.choices(names, weights)[0]
        outcome = "failure" if action in ("user.login_failed", "user.locked") else "success"
        ticket = f"PD-{rng.randrange(1, 60000):06d}"
        details = canonical_details({"accession_number": f"ACC{seq:08d}"}
                                    if action == "ticket.view" and seq % 3 == 0 else {})
        address = f"10.{seq % 7}.{seq % 13}.{seq % 250}"
        row = (seq, at, user_id, username, role, address, action, "ticket", ticket, outcome,
               details, prev)
        prev = event_hash(*row)
        batch.append((*row, prev))
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def seed_events(n: int, users: list[tuple[int, str, str]]) -> None:
    """Bulk-insert ``n`` chained events (COPY on PostgreSQL, executemany on SQLite)."""
    rng = random.Random(2025)
    if db.engine.dialect.name == "postgresql":
        connection = db.session.connection().connection.driver_connection
        with connection.cursor() as cursor, cursor.copy(
                f"COPY audit_event ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for batch in event_rows(n, users, rng):
                for row in batch:
                    copy.write_row(row)
        db.session.commit()
        # A real trail was written long ago: vacuum sets the hint bits and visibility map a
        # freshly loaded table lacks, so the report's first scan is not charged for them.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE audit_event"))
        return
    for batch in event_rows(n, users, rng):
        db.session.execute(insert(AuditEvent), [dict(zip(COLUMNS, row, strict=True)) for row in batch])
        db.session.commit()
    db.session.execute(text("ANALYZE"))
    db.session.commit()


def report_child(url: str, instance: str, schema: str | None, appendix: int, queue: Any) -> None:
    """Generate the report in a fresh process; send back timings, size and peak memory."""
    app = make_app(url, instance, schema)
    stages: list[tuple[float, str]] = []
    with app.app_context():
        started = time.perf_counter()
        request = ReportRequest(kind="access-audit", report_id="benchmark", start=PERIOD[0],
                                end=PERIOD[1], requested_by="benchmark", appendix_limit=appendix)
        pdf = services.build_pdf(request, lambda pct, stage: stages.append(
            (time.perf_counter() - started, stage)))
        elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({"seconds": elapsed, "bytes": len(pdf), "peak_mb": peak_mb, "stages": stages,
               "pdf": pdf})


def appendix_rows(limit: int) -> list[tuple[str, ...]]:
    """The rows the report's appendix lists, formatted as it formats them."""
    rows = db.session.execute(
        select(AuditEvent.occurred_at, AuditEvent.username, AuditEvent.user_role, AuditEvent.action,
               AuditEvent.object_type, AuditEvent.object_id, AuditEvent.client_address,
               AuditEvent.outcome, AuditEvent.details)
        .order_by(AuditEvent.occurred_at, AuditEvent.seq).limit(limit))
    return [(access_audit._when(r[0]), r[1], r[2], r[3], f"{r[4]}:{r[5]}", r[6], r[7],
             access_audit._details_text(r[8], 60)) for r in rows]


def render_rates(rows: list[tuple[str, ...]]) -> tuple[float, float]:
    """Rows per second: the report's appendix listing, then one naive HTML table."""
    head = "".join(f"<th>{title}</th>" for title, _ in access_audit.APPENDIX_COLUMNS)
    frame = PageFrame("Benchmark Regional Hospital", "Access audit report", "Report benchmark")
    started = time.perf_counter()
    listing = Listing(access_audit.APPENDIX_COLUMNS, rows)
    fast = html_to_pdf(f'<section class="appendix">{listing.__html__()}</section>',
                       listing=listing, frame=frame)
    fast_rate = len(rows) / (time.perf_counter() - started)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                   for row in rows)
    started = time.perf_counter()
    naive = html_to_pdf(f'<section class="appendix"><table><thead><tr>{head}</tr></thead>'
                        f"<tbody>{body}</tbody></table></section>")
    naive_rate = len(rows) / (time.perf_counter() - started)
    assert fast.startswith(b"%PDF") and naive.startswith(b"%PDF")
    return fast_rate, naive_rate


def run(url: str, events: int, appendix: int, schema: str | None) -> bool:
    """Seed, generate, compare; print the figures; True when every target is met."""
    with tempfile.TemporaryDirectory() as instance:
        app = make_app(url, instance, schema)
        with app.app_context():
            db.create_all()
            seeded = time.perf_counter()
            users = seed_users(random.Random(7))
            seed_events(events, users)
            print(f"database:           {db.engine.dialect.name}")
            print(f"seeded:             {events:,} chained events over {PERIOD[0]} to {PERIOD[1]} "
                  f"in {time.perf_counter() - seeded:.1f} s (not measured)")
            db.session.remove()
        queue: Any = multiprocessing.get_context("spawn").Queue()
        child = multiprocessing.get_context("spawn").Process(
            target=report_child, args=(url, instance, schema, appendix, queue))
        child.start()
        result = queue.get()
        child.join()
        for at, stage in result["stages"]:
            print(f"  {at:6.2f} s  {stage}")
        print(f"report:             {result['seconds']:.2f} s, {result['bytes'] / 1e6:.1f} MB PDF, "
              f"peak memory {result['peak_mb']:.0f} MB "
              f"(targets: <= {TIME_TARGET:.0f} s, < {MEMORY_TARGET_MB} MB)")
        report_path = Path(instance) / "bench.pdf"
        report_path.write_bytes(result["pdf"])
        with app.app_context():
            chain = verify_chain()
            rows = appendix_rows(appendix)
            fast_rate, naive_rate = render_rates(rows)
            db.session.remove()
            db.engine.dispose()
    ratio = fast_rate / naive_rate
    print(f"appendix rows:      {fast_rate:8,.0f} rows/s  report's appendix listing ({len(rows):,} rows)")
    print(f"naive table:        {naive_rate:8,.0f} rows/s  one HTML table, same rows, same stylesheet")
    print(f"ratio:              {ratio:8.1f}x  (target >= {RATIO_TARGET:.0f}x)")
    met = (chain.ok and result["seconds"] <= TIME_TARGET and result["peak_mb"] < MEMORY_TARGET_MB
           and ratio >= RATIO_TARGET)
    print("targets:            " + ("met" if met else "MISSED"))
    return met


def main() -> int:
    """Entry point; exit status 1 when a target is missed."""
    args = parse_args()
    for name in [n for n in os.environ if n.startswith("PACSDESK_")]:
        del os.environ[name]
    if not args.database_url:
        with tempfile.TemporaryDirectory() as folder:
            return 0 if run(f"sqlite:///{folder}/bench.db", args.events, args.appendix, None) else 1
    if args.database_url.startswith("sqlite"):
        path = Path(args.database_url.removeprefix("sqlite:///"))
        if path.exists():
            print(f"refusing to benchmark into an existing file: {path}", file=sys.stderr)
            return 2
        return 0 if run(args.database_url, args.events, args.appendix, None) else 1
    schema = f"report_bench_{uuid.uuid4().hex[:8]}"
    admin_url = load_config({"PACSDESK_DATABASE_URL": args.database_url,
                             "PACSDESK_SECRET_KEY": "bench",
                             "PACSDESK_INSTANCE_PATH": tempfile.gettempdir()})[
        "SQLALCHEMY_DATABASE_URI"]
    admin = create_engine(admin_url)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        return 0 if run(args.database_url, args.events, args.appendix, schema) else 1
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


if __name__ == "__main__":
    sys.exit(main())
