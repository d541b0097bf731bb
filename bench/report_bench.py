"""Access-audit report benchmark: a year holding 1,000,000 events, with a 10,000-row appendix.

Bulk-inserts correctly chained events (``audit.trail.chain.event_hash``), then generates the
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
import random
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import benchlib  # first: it puts the project on sys.path
from sqlalchemy import insert, select

from audit.reports import access_audit, services
from audit.reports.registry import ReportRequest
from audit.trail.chain import verify_chain
from audit.trail.models import AuditEvent
from core.auth.models import User
from core.extensions import db
from core.pdf import Listing, PageFrame, html_to_pdf

TIME_TARGET = 30.0
MEMORY_TARGET_MB = 1024
RATIO_TARGET = 10.0
PERIOD = (date(2025, 1, 1), date(2025, 12, 31))
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


SETTINGS = {"PACSDESK_TIMEZONE": "America/Chicago", "PACSDESK_ORGANIZATION": "Benchmark Regional Hospital"}


def seed_users(rng: random.Random) -> list[tuple[int, str, str]]:
    """Four hundred accounts, some disabled; returns (id, username, role).

    Loaded below the ORM, as a restore would, like the events: the accounts' own audit events
    are not what the report is timed on.
    """
    roles = ["requester"] * 6 + ["technician"] * 3 + ["compliance"]
    db.session.connection().execute(insert(User.__table__), [
        {"username": f"user{i:03d}", "full_name": f"Bench User {i}", "role": rng.choice(roles),
         "password_hash": "x", "is_disabled": i % 40 == 0,
         "disabled_at": datetime(2025, 6, 1, tzinfo=UTC) if i % 40 == 0 else None} for i in range(400)])
    result = [(user_id, username, str(role)) for user_id, username, role in db.session.execute(
        select(User.id, User.username, User.role).order_by(User.id))]
    db.session.commit()
    return result


def seed_events(n: int, users: list[tuple[int, str, str]]) -> None:
    """Bulk-insert ``n`` chained events spread over the period, mostly in daytime."""
    rng = random.Random(2025)
    start = datetime(2025, 1, 1, 6, tzinfo=UTC)
    step = (datetime(2026, 1, 1, 5, tzinfo=UTC) - start).total_seconds() / n
    names, weights = zip(*ACTIONS, strict=True)

    def event(seq: int) -> benchlib.Event:
        user_id, username, role = users[rng.randrange(len(users))]
        action = rng.choices(names, weights)[0]
        outcome = "failure" if action in ("user.login_failed", "user.locked") else "success"
        ticket = f"PD-{rng.randrange(1, 60000):06d}"
        details = ({"accession_number": f"ACC{seq:08d}"} if action == "ticket.view" and seq % 3 == 0
                   else {})
        return (start + timedelta(seconds=seq * step), user_id, username, role,
                f"10.{seq % 7}.{seq % 13}.{seq % 250}", action, "ticket", ticket, outcome, details)

    benchlib.append_events(n, event)
    # A real trail was written long ago: vacuum sets the hint bits and visibility map a
    # freshly loaded table lacks, so the report's first scan is not charged for them.
    benchlib.analyze()


def report_child(url: str, instance: str, schema: str | None, appendix: int) -> dict[str, Any]:
    """Generate the report in a fresh process; return timings, size and peak memory."""
    app = benchlib.make_app(url, instance, schema, SETTINGS)
    stages: list[tuple[float, str]] = []
    with app.app_context():
        started = time.perf_counter()
        request = ReportRequest(kind="access-audit", report_id="benchmark", start=PERIOD[0],
                                end=PERIOD[1], requested_by="benchmark", appendix_limit=appendix)
        pdf = services.build_pdf(request, lambda pct, stage: stages.append(
            (time.perf_counter() - started, stage)))
        elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "bytes": len(pdf), "peak_mb": benchlib.peak_rss_mb(), "stages": stages,
            "pdf": pdf}


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
        app = benchlib.make_app(url, instance, schema, SETTINGS)
        with app.app_context():
            db.create_all()
            seeded = time.perf_counter()
            users = seed_users(random.Random(7))
            seed_events(events, users)
            print(f"database:           {db.engine.dialect.name}")
            print(f"seeded:             {events:,} chained events over {PERIOD[0]} to {PERIOD[1]} "
                  f"in {time.perf_counter() - seeded:.1f} s (not measured)")
            db.session.remove()
        result = benchlib.in_fresh_process(report_child, url, instance, schema, appendix)
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
    with benchlib.scratch_database(args.database_url, "report_bench") as (url, schema):
        return 0 if run(url, args.events, args.appendix, schema) else 1


if __name__ == "__main__":
    sys.exit(main())
