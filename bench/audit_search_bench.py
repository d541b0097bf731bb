"""Audit search and retention benchmark: 1,000,000 events beside 10,000, measured in the same run.

Builds a chain of correctly chained events (``audit.trail.chain.event_hash``, bulk insert), then
times, through the application's own search service (``audit.trail.search.search_events``, which
also records the search as an audit event and commits, as the page does):

* a filtered search: one user, one local month, newest first, first page;
* a word search in the details: an accession number that occurs in a handful of events,
  a ticket number (a few dozen), and words that are in every event.

The first search of each kind compiles its statements, once per process; it is timed apart,
so the percentiles show a server that has been running.

Then runs retention (``audit.retention.engine.run_retention``) with a 6-year policy over a chain
whose older half is past it, in a fresh process so its peak memory is its own; it purges
through ``audit.trail.chain.purge_through`` in batches; the chain is verified afterwards.

    python bench/audit_search_bench.py                          # temporary SQLite files
    python bench/audit_search_bench.py --database-url postgresql://user@host/db

On PostgreSQL each size works in a scratch schema that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from typing import Any

import benchlib  # first: it puts the project on sys.path

from audit.retention import engine as retention
from audit.trail import search
from audit.trail.chain import verify_chain
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
    rare: list[str] = []

    def event(seq: int) -> benchlib.Event:
        at = old_start + old_step * seq if seq <= half else young_start + young_step * (seq - half)
        user = rng.randrange(1, USERS + 1)
        accession = f"A{rng.randrange(10**9):09d}"
        if seq % (total // 5) == 7:
            rare.append(accession)
        ticket = f"HD-{seq % 40000:06d}"
        return (at, user, f"user{user:03d}", ROLES[user % 4], f"10.{user % 250}.{seq % 250}.7",
                ACTIONS[seq % len(ACTIONS)], "ticket", ticket, "success",
                {"ticket": ticket, "accession": accession, "field": "status",
                 "note": "priors missing in reading room"})

    benchlib.append_events(total, event, BATCH)
    benchlib.analyze()
    return rare


def timed(flt: search.AuditFilter) -> tuple[float, int]:
    """Milliseconds for one search through the service, committed as the page commits it."""

    def call() -> int:
        page = search.search_events(flt)
        db.session.commit()
        return len(page.events)

    return benchlib.timed_ms(call)


def measure_searches(total: int, now: datetime, rare: list[str], runs: int,
                     rng: random.Random) -> dict[str, dict[str, float]]:
    """p50/p95 of each kind of search, after a first search of each; that first one's total time."""
    _, _, young_start, _ = layout(total, now)
    kinds: dict[str, list[float]] = {"user + month": [], "word (accession)": [], "word (ticket)": [],
                                     "word (in every event)": []}
    found: dict[str, int] = dict.fromkeys(kinds, 0)
    months = [(young_start + timedelta(days=30 * k)).date().replace(day=1) for k in range(2, 60)]
    # The first search of each kind compiles its statements, once per process: timed apart.
    month_end = (months[0] + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    first = sum(timed(flt)[0] for flt in (
        search.AuditFilter(username="user001", date_from=months[0], date_to=month_end),
        search.AuditFilter(words=rare[0]), search.AuditFilter(words="HD-000001"),
        search.AuditFilter(words="reading room")))
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
    stats = {k: {"p50": statistics.median(v), "p95": benchlib.p95(v), "rows": found[k] / runs}
             for k, v in kinds.items()}
    return stats | {"first search of each kind": {"total": first}}


def purge_child(url: str, instance: str, schema: str | None) -> dict[str, Any]:
    """In a fresh process: run retention over the chain; report time, counts and peak memory."""
    app = benchlib.make_app(url, instance, schema)
    with app.app_context():
        retention.update_policy("audit_events", 6, 0, 0, "created", True)
        db.session.commit()
        elapsed_ms, report = benchlib.timed_ms(lambda: retention.run_retention("benchmark"))
        peak = benchlib.peak_rss_mb()
        verify_ms, check = benchlib.timed_ms(verify_chain)
        db.session.remove()
        db.engine.dispose()
    return {"seconds": elapsed_ms / 1000, "purged": report.total, "peak_mb": peak, "chain_ok": check.ok,
            "remaining": check.count, "verify_s": verify_ms / 1000}


def one_size(database_url: str | None, name: str, total: int, runs: int) -> dict[str, Any]:
    """Build, search and purge one chain in its own scratch database."""
    rng = random.Random(total)
    now = datetime.now(UTC)
    with benchlib.scratch_database(database_url, name) as (url, schema), \
            tempfile.TemporaryDirectory() as instance:
        app = benchlib.make_app(url, instance, schema)
        with app.app_context():
            db.create_all()
            built_ms, rare = benchlib.timed_ms(lambda: build(total, now, rng))
            searches = measure_searches(total, now, rare, runs, rng)
            db.session.remove()
            db.engine.dispose()
        purge = benchlib.in_fresh_process(purge_child, url, instance, schema)
    return {"events": total, "build_s": built_ms / 1000, "searches": searches, "purge": purge}


def report(small: dict[str, Any], large: dict[str, Any], dialect: str) -> bool:
    """Print both sizes side by side; True when the large one meets every target."""
    print(f"database: {dialect}")
    print(f"built: {small['events']:,} events in {small['build_s']:.1f} s; "
          f"{large['events']:,} events in {large['build_s']:.1f} s (bulk insert, not measured)")
    print(f"{'measure':34} {small['events']:>14,} {large['events']:>14,}   ratio  target")
    met = True
    for kind in large["searches"]:
        for stat in [stat for stat in ("p50", "p95", "total") if stat in small["searches"][kind]]:
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
    database_url = None if (args.database_url or "").startswith("sqlite") else args.database_url
    small = one_size(database_url, "search_bench_small", args.small, args.runs)
    large = one_size(database_url, "search_bench_large", args.events, args.runs)
    return 0 if report(small, large, "postgresql" if database_url else "sqlite") else 1


if __name__ == "__main__":
    sys.exit(main())
