"""Audit search and retention benchmark: 1,000,000 events beside 10,000, measured in the same run.

Builds a chain of correctly chained events (``audit.chain.event_hash``, bulk insert), then
times, through the application's own search service (``audit.search.search_events``, which
also records the search as an audit event and commits, as the page does):

* a filtered search: one user, one local month, newest first, first page;
* a word search in the details: an accession number that occurs in a handful of events,
  a ticket number (a few dozen), and words that are in every event.

Then runs retention (``audit.retention.run_retention``) with a 6-year policy over a chain
whose older half is past it, in a fresh process so its peak memory is its own; it purges
through ``audit.chain.purge_through`` in batches; the chain is verified afterwards.

    python bench/audit_search_bench.py                          # temporary SQLite files
    python bench/audit_search_bench.py --database-url postgresql://user@host/db

On PostgreSQL each size works in a scratch schema that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import create_app
from audit import retention, search
from audit.chain import canonical_details, event_hash, verify_chain
from audit.models import GENESIS_HASH, AuditEvent
from core.config import load_config
from core.extensions import db

SEARCH_TARGET_MS = 300.0
PURGE_TARGET_S = 60.0
MEMORY_TARGET_MB = 300.0
BATCH = 20_000
USERS = 300
ACTIONS = ("ticket.view", "ticket.view", "ticket.view", "ticket.update", "user.login", "user.logout",
           "ticket.comment", "attachment.download", "asset.update", "user.login_failed")
ROLES = ("requester", "technician", "compliance", "admin")


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="postgresql://... (default: temporary SQLite files)")
    parser.add_argument("--events", type=int, default=1_000_000, help="large chain (default 1,000,000)")
    parser.add_argument("--small", type=int, default=10_000, help="small chain (default 10,000)")
    parser.add_argument("--runs", type=int, default=40, help="searches of each kind (default 40)")
    return parser.parse_args()


def make_app(url: str, instance: str, schema: str | None):
    """The real application on ``url`` (in ``schema`` on PostgreSQL)."""
    os.environ.update(PACSDESK_DATABASE_URL=url, PACSDESK_INSTANCE_PATH=instance,
                      PACSDESK_SECRET_KEY="bench", PACSDESK_SCHEDULER="false")
    overrides: dict[str, Any] = {}
    if schema:
        overrides["SQLALCHEMY_ENGINE_OPTIONS"] = {
            "connect_args": {"options": f"-csearch_path={schema}"}, "pool_size": 2}
    return create_app(overrides)


def layout(total: int, now: datetime) -> tuple[datetime, timedelta, datetime, timedelta]:
    """The older half spans 8 to 6 years ago, the younger half 6 years ago to yesterday."""
    old_start = now - timedelta(days=8 * 365)
    young_start = now - timedelta(days=6 * 365 - 2)
    half = total // 2
    return (old_start, (timedelta(days=2 * 365 - 4)) / max(half, 1), young_start,
            (now - timedelta(days=1) - young_start) / max(total - half, 1))


def build(total: int, now: datetime, rng: random.Random) -> list[str]:
    """Bulk-insert ``total`` chained events; returns a few rare accession numbers present."""
    old_start, old_step, young_start, young_step = layout(total, now)
    half = total // 2
    prev = GENESIS_HASH
    rare: list[str] = []
    rows: list[dict[str, Any]] = []
    for seq in range(1, total + 1):
        at = old_start + old_step * seq if seq <= half else young_start + young_step * (seq - half)
        user = rng.randrange(1, USERS + 1)
        action = ACTIONS[seq % len(ACTIONS)]
        accession = f"A{rng.randrange(10**9):09d}"
        if seq % (total // 5) == 7:
            rare.append(accession)
        details = canonical_details({"ticket": f"HD-{seq % 40000:06d}", "accession": accession,
                                     "field": "status", "note": "priors missing in reading room"})
        values = (seq, at, user, f"user{user:03d}", ROLES[user % 4], f"10.{user % 250}.{seq % 250}.7",
                  action, "ticket", f"HD-{seq % 40000:06d}", "success", details, prev)
        prev = event_hash(*values)
        rows.append({"seq": seq, "occurred_at": at, "user_id": user, "username": values[3],
                     "user_role": values[4], "client_address": values[5], "action": action,
                     "object_type": "ticket", "object_id": values[8], "outcome": "success",
                     "details": details, "prev_hash": values[11], "hash": prev})
        if len(rows) == BATCH:
            db.session.execute(insert(AuditEvent), rows)
            db.session.commit()
            rows = []
    if rows:
        db.session.execute(insert(AuditEvent), rows)
        db.session.commit()
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE audit_event"))
    else:
        db.session.execute(text("ANALYZE"))
        db.session.commit()
    return rare


def timed(flt: search.AuditFilter) -> tuple[float, int]:
    """Milliseconds for one search through the service, committed as the page commits it."""
    started = time.perf_counter()
    page = search.search_events(flt)
    db.session.commit()
    return (time.perf_counter() - started) * 1000, len(page.events)


def p95(values: list[float]) -> float:
    """95th percentile."""
    return statistics.quantiles(values, n=20)[18] if len(values) > 1 else values[0]


def measure_searches(total: int, now: datetime, rare: list[str], runs: int,
                     rng: random.Random) -> dict[str, dict[str, float]]:
    """p50/p95 of each kind of search."""
    _, _, young_start, _ = layout(total, now)
    kinds: dict[str, list[float]] = {"user + month": [], "word (accession)": [], "word (ticket)": [],
                                     "word (in every event)": []}
    found: dict[str, int] = dict.fromkeys(kinds, 0)
    months = [(young_start + timedelta(days=30 * k)).date().replace(day=1) for k in range(2, 60)]
    timed(search.AuditFilter(words="warm-up"))
    for _ in range(runs):
        start = rng.choice(months)
        end = (start + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        flt = search.AuditFilter(username=f"user{rng.randrange(1, USERS + 1):03d}", date_from=start,
                                 date_to=end)
        for kind, query in (("user + month", flt),
                            ("word (accession)", search.AuditFilter(words=rng.choice(rare))),
                            ("word (ticket)", search.AuditFilter(
                                words=f"HD-{rng.randrange(40000):06d}")),
                            ("word (in every event)", search.AuditFilter(words="reading room"))):
            ms, n = timed(query)
            kinds[kind].append(ms)
            found[kind] += n
    return {k: {"p50": statistics.median(v), "p95": p95(v), "rows": found[k] / runs}
            for k, v in kinds.items()}


def purge_child(url: str, instance: str, schema: str | None, out: Any) -> None:
    """In a fresh process: run retention over the chain; report time, counts and peak memory."""
    app = make_app(url, instance, schema)
    with app.app_context():
        retention.update_policy("audit_events", 6, 0, 0, "created", True)
        db.session.commit()
        started = time.perf_counter()
        report = retention.run_retention("benchmark")
        elapsed = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        check_started = time.perf_counter()
        check = verify_chain()
        out.put({"seconds": elapsed, "purged": report.total, "peak_mb": peak, "chain_ok": check.ok,
                 "remaining": check.count, "verify_s": time.perf_counter() - check_started})
        db.session.remove()
        db.engine.dispose()


def one_size(url: str, schema: str | None, total: int, runs: int) -> dict[str, Any]:
    """Build, search and purge one chain."""
    rng = random.Random(total)
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as instance:
        app = make_app(url, instance, schema)
        with app.app_context():
            db.create_all()
            started = time.perf_counter()
            rare = build(total, now, rng)
            built = time.perf_counter() - started
            searches = measure_searches(total, now, rare, runs, rng)
            db.session.remove()
            db.engine.dispose()
        queue: Any = multiprocessing.get_context("spawn").Queue()
        child = multiprocessing.get_context("spawn").Process(
            target=purge_child, args=(url, instance, schema, queue))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"the retention process failed (exit {child.exitcode})")
        purge = queue.get(timeout=10)
    return {"events": total, "build_s": built, "searches": searches, "purge": purge}


def report(small: dict[str, Any], large: dict[str, Any], dialect: str) -> bool:
    """Print both sizes side by side; True when the large one meets every target."""
    print(f"database: {dialect}")
    print(f"built: {small['events']:,} events in {small['build_s']:.1f} s; "
          f"{large['events']:,} events in {large['build_s']:.1f} s (bulk insert, not measured)")
    print(f"{'measure':34} {small['events']:>14,} {large['events']:>14,}   ratio  target")
    met = True
    for kind in large["searches"]:
        for stat in ("p50", "p95"):
            a, b = small["searches"][kind][stat], large["searches"][kind][stat]
            target = f"< {SEARCH_TARGET_MS:.0f} ms" if stat == "p95" else ""
            if stat == "p95":
                met &= b < SEARCH_TARGET_MS
            print(f"{kind + ' ' + stat + ' (ms)':34} {a:14.1f} {b:14.1f} {b / a:7.1f}  {target}")
    sp, lp = small["purge"], large["purge"]
    print(f"{'retention: events purged':34} {sp['purged']:14,} {lp['purged']:14,}")
    print(f"{'retention: seconds':34} {sp['seconds']:14.2f} {lp['seconds']:14.2f} "
          f"{lp['seconds'] / sp['seconds']:7.1f}  < {PURGE_TARGET_S:.0f} s")
    print(f"{'retention: peak memory (MB, RSS)':34} {sp['peak_mb']:14.0f} {lp['peak_mb']:14.0f} "
          f"{lp['peak_mb'] / sp['peak_mb']:7.1f}  < {MEMORY_TARGET_MB:.0f} MB")
    print(f"{'chain verifies after the purge':34} {sp['chain_ok']!s:>14} {lp['chain_ok']!s:>14}"
          f"   ({lp['remaining']:,} events left, verified in {lp['verify_s']:.1f} s)")
    met &= (lp["seconds"] < PURGE_TARGET_S and lp["peak_mb"] < MEMORY_TARGET_MB and lp["chain_ok"]
            and sp["chain_ok"])
    print("targets: " + ("met" if met else "MISSED"))
    return met


def main() -> int:
    """Entry point; exit status 1 when a target is missed."""
    args = parse_args()
    for name in [n for n in os.environ if n.startswith("PACSDESK_")]:
        del os.environ[name]
    if not args.database_url or args.database_url.startswith("sqlite"):
        with tempfile.TemporaryDirectory() as folder:
            small = one_size(f"sqlite:///{folder}/small.db", None, args.small, args.runs)
            large = one_size(f"sqlite:///{folder}/large.db", None, args.events, args.runs)
        return 0 if report(small, large, "sqlite") else 1
    admin_url = load_config({"PACSDESK_DATABASE_URL": args.database_url, "PACSDESK_SECRET_KEY": "bench",
                             "PACSDESK_INSTANCE_PATH": tempfile.gettempdir()})["SQLALCHEMY_DATABASE_URI"]
    admin = create_engine(admin_url)
    results = []
    try:
        for total in (args.small, args.events):
            schema = f"search_bench_{uuid.uuid4().hex[:8]}"
            with admin.begin() as connection:
                connection.execute(text(f"CREATE SCHEMA {schema}"))
            try:
                results.append(one_size(args.database_url, schema, total, args.runs))
            finally:
                with admin.begin() as connection:
                    connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    finally:
        admin.dispose()
    return 0 if report(results[0], results[1], "postgresql") else 1


if __name__ == "__main__":
    sys.exit(main())
