"""Audit trail benchmark: keyed appends against plain inserts, full and incremental verification.

Appends go through ``audit.record`` (the application's own code path: chain lock, tail read,
HMAC seal, insert), each event in its own transaction, and are compared with plain inserts of
rows of the same shape into a scratch table without the chain, in the same run. Verification
walks a chain of ``--verify-events`` events built by bulk insert of correctly sealed rows
(best of three walks, as the machine may be busy), beside a plain read of the same rows.
Then the head is anchored, 1,000 events are appended through ``audit.record``, and the
incremental verification that the hourly job runs (walk from the anchored head, anchor the
new head, record the run) is timed beside the full walk of the same trail.

    python bench/audit_bench.py                       # temporary SQLite file
    python bench/audit_bench.py --database-url postgresql://user@host/db

On PostgreSQL the benchmark works in a scratch schema that it drops afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta

import benchlib  # first: it puts the project on sys.path
from sqlalchemy import MetaData, Table

from audit import record
from audit.trail.chain import canonical_details, chain_head, verify_chain
from audit.trail.chain_verification import anchor_head, keep_verification, run_verification
from audit.trail.models import AuditEvent
from audit.trail.verify import ChainVerification
from audit.trail.walk import event_rows
from core import audit_sink
from core.database import snapshot_connection
from core.extensions import db
from core.timeutil import utcnow

APPEND_TARGET = 0.5
VERIFY_TARGET = 100_000
INCREMENTAL_TARGET = 1.0  # seconds, after INCREMENTAL_EVENTS new events
INCREMENTAL_EVENTS = 1_000
BATCH = 10_000
VERIFY_RUNS = 3

BENCH_ACTIONS = {"bench.event": "Benchmark event"}


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="sqlite:///file.db or postgresql://... "
                        "(default: a temporary SQLite file)")
    parser.add_argument("--appends", type=int, default=2000,
                        help="events appended by each method (default 2000)")
    parser.add_argument("--verify-events", type=int, default=1_000_000,
                        help="events in the chain that is verified (default 1,000,000)")
    return parser.parse_args()


def plain_table() -> Table:
    """A table with the audit event's columns and indexes, and no chain, lock or trigger."""
    table = AuditEvent.__table__.to_metadata(MetaData(), name="bench_plain_event")
    for item in (*table.indexes, *table.constraints):
        if item.name:
            item.name = str(item.name).replace("audit_event", "bench_plain_event")
    return table


def append_chained(n: int, offset: int) -> float:
    """Append ``n`` events through audit.record, one transaction each; seconds taken."""
    started = time.perf_counter()
    for i in range(offset, offset + n):
        record("bench.event", object_type="ticket", object_id=i, user=None, username="bench.user",
               client_address="10.20.30.40", details={"ticket": i, "field": "status"})
        db.session.commit()
    return time.perf_counter() - started


def append_plain(table: Table, n: int, offset: int) -> float:
    """Insert ``n`` rows of the same shape, one transaction each; seconds taken."""
    statement = table.insert()
    started = time.perf_counter()
    for i in range(offset, offset + n):
        db.session.execute(statement, {
            "seq": i + 1, "occurred_at": datetime.now(UTC), "user_id": None,
            "username": "bench.user", "user_role": None, "client_address": "10.20.30.40",
            "action": "bench.event", "object_type": "ticket", "object_id": str(i),
            "outcome": "success", "details": canonical_details({"ticket": i, "field": "status"}),
            "prev_hash": "0" * 64, "hash": uuid.uuid4().hex * 2})
        db.session.commit()
    return time.perf_counter() - started


def extend_chain(total: int) -> None:
    """Bulk-insert correctly chained events until the chain holds ``total`` events."""
    moment = datetime.now(UTC)

    def event(seq: int) -> benchlib.Event:
        return (moment + timedelta(microseconds=seq), 7, "tech.sam", "technician", "10.20.30.40",
                "bench.event", "ticket", str(seq % 5000), "success",
                {"ticket": seq % 5000, "field": "status"})

    benchlib.append_events(max(0, total - chain_head()[2]), event, BATCH)


def read_rate() -> float:
    """Events per second of reading the rows the walk reads, checking nothing (the walk's floor)."""
    db.session.close()
    started = time.perf_counter()
    count = 0
    with snapshot_connection() as connection, closing(event_rows(connection, 1, BATCH)) as batches:
        for batch in batches:
            count += len(batch)
    return count / (time.perf_counter() - started)


def incremental(full: ChainVerification, full_seconds: float) -> bool:
    """Anchor the fully walked head, append INCREMENTAL_EVENTS events, time the hourly run."""
    anchor, note = anchor_head(full)
    keep_verification(full, "bench", None, utcnow(), anchor, note)
    db.session.commit()
    append_chained(INCREMENTAL_EVENTS, 10_000_000)
    db.session.close()
    started = time.perf_counter()
    run = run_verification("bench")
    db.session.commit()
    elapsed = time.perf_counter() - started
    print(f"incremental verify:  {elapsed:10.3f} s   ({run.walked:,} events walked from "
          f"#{run.from_seq:,} of {run.count:,}, anchored as #{run.anchor_n}, run recorded; "
          f"intact={run.ok}) (target < {INCREMENTAL_TARGET:.0f} s; full walk of the same "
          f"trail: {full_seconds:.2f} s)")
    return run.ok and run.mode == "incremental" and elapsed < INCREMENTAL_TARGET


def run(url: str, appends: int, verify_events: int, schema: str | None) -> bool:
    """Run the measurements and print them; True when every target is met."""
    with tempfile.TemporaryDirectory() as instance:
        app = benchlib.make_app(url, instance, schema)
        audit_sink.register_actions(app, BENCH_ACTIONS)
        with app.app_context():
            db.create_all()
            table = plain_table()
            table.create(db.engine)
            record("bench.event", user=None, details={"warm": True})
            db.session.commit()
            chained = plain = 0.0
            rounds = 10
            per_round = max(1, appends // rounds)
            for r in range(rounds):
                plain += append_plain(table, per_round, r * per_round)
                chained += append_chained(per_round, r * per_round)
            done = per_round * rounds
            chained_rate, plain_rate = done / chained, done / plain
            ratio = chained_rate / plain_rate
            print(f"database:            {db.engine.dialect.name}")
            print(f"keyed appends:       {chained_rate:10,.0f} events/s "
                  f"({done} events, one transaction each, through audit.record)")
            print(f"plain inserts:       {plain_rate:10,.0f} events/s "
                  f"({done} rows, one transaction each, same columns, no chain)")
            print(f"ratio keyed/plain:   {ratio:10.2f}   (target >= {APPEND_TARGET})")
            built = time.perf_counter()
            extend_chain(verify_events)
            print(f"built chain:         {verify_events:,} events in "
                  f"{time.perf_counter() - built:.1f} s (bulk insert, not measured)")
            timings, cpu = [], []
            for _ in range(VERIFY_RUNS):
                db.session.close()
                started, started_cpu = time.perf_counter(), time.process_time()
                result = verify_chain()
                timings.append(time.perf_counter() - started)
                cpu.append(time.process_time() - started_cpu)
            elapsed = min(timings)
            verify_rate = result.count / elapsed
            print(f"verify:              {verify_rate:10,.0f} events/s "
                  f"({result.count:,} events in {elapsed:.2f} s, best of "
                  f"{', '.join(f'{t:.2f}' for t in timings)} s; intact={result.ok}) "
                  f"(target >= {VERIFY_TARGET:,})")
            print(f"verify, CPU of this process: {result.count / min(cpu):,.0f} events/s "
                  f"(a busy machine lowers the wall-clock rate above)")
            print(f"plain read of rows:  {read_rate():10,.0f} events/s (same rows, nothing checked)")
            incremental_met = incremental(result, elapsed)
            print(f"load average:        {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
                  f"on {os.cpu_count()} CPUs")
            db.session.remove()
            db.engine.dispose()
    met = result.ok and ratio >= APPEND_TARGET and verify_rate >= VERIFY_TARGET and incremental_met
    print("targets:             " + ("met" if met else "MISSED"))
    return met


def main() -> int:
    """Entry point; exit status 1 when a target is missed."""
    args = parse_args()
    with benchlib.scratch_database(args.database_url, "audit_bench") as (url, schema):
        return 0 if run(url, args.appends, args.verify_events, schema) else 1


if __name__ == "__main__":
    sys.exit(main())
