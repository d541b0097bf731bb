"""PACS access log benchmark: ingest over TCP and UDP, "who accessed this patient", the patient report.

1. Ingest: ``--processes`` receiver processes share one TCP port (SO_REUSEPORT) and store what
   ``--connections`` senders push at once (``--messages``, default 1,000,000, octet-counted
   RFC 5424 frames, each a different user and one of 50,000 patients). Sustained messages per
   second stored, beside the baseline: the same receivers storing each message with an INSERT of
   its own. Every message is accounted for: stored or quarantined, none missing.
2. UDP at 2,000 messages a second for ``--udp-seconds``: the share dropped.
3. "Who accessed this patient", on a database of its own: ``--query-rows`` rows (default
   10,000,000 on PostgreSQL, 1,000,000 on SQLite) bulk-loaded directly (COPY on PostgreSQL),
   spread over a year, in batches sealed into the audit chain as a receiver seals them; p95 of
   the search for random patients (target 300 ms), beside the same search on a column without
   an index.
4. The nightly full chain verification (every batch re-hashed), then the patient imaging access
   PDF over that year (target 30 s; it runs and cites its own incremental verification), beside
   the same report for a patient nobody opened (the fixed cost).

    python bench/atna_bench.py [--messages N] [--query-rows N]          # temporary SQLite file
    python bench/atna_bench.py --database-url postgresql://user@host/db  # scratch schema, dropped after
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import random
import resource
import socket
import sys
import tempfile
import threading
import time
import zlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import benchlib  # first: it puts the project on sys.path
from sqlalchemy import func, select

from audit.atna import search
from audit.atna.models import AtnaBatch, AtnaMessage, AtnaQuarantine, ensure_partitions
from audit.atna.store import row_digest, seal_batch
from audit.reports.services import build_pdf, validate_request
from audit.trail.chain_verification import run_verification
from core.extensions import db

SAMPLES = Path(__file__).resolve().parents[1] / "tests/audit/atna/samples"
SAMPLE = SAMPLES / "dicom_110103_instances_accessed.xml"
PATIENTS = 50_000
QUERY_TARGET_MS = 300.0
REPORT_TARGET_S = 30.0
YEAR = (date(2025, 1, 1), date(2025, 12, 31))


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--baseline-messages", type=int, default=None,
                        help="messages for the INSERT-per-message baseline (default: a fifth of --messages)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--udp-seconds", type=float, default=10.0)
    parser.add_argument("--query-rows", type=int, default=None)
    parser.add_argument("--queries", type=int, default=200)
    return parser.parse_args()


def compact_sample() -> str:
    """The 110103 sample on one line, with placeholders for the user and the patient."""
    xml = " ".join(line.strip() for line in SAMPLE.read_text().splitlines())
    return xml.replace('UserID="dr.lee"', 'UserID="{user}"').replace("MRN-000417", "{patient}")


def frames(first: int, count: int, template: str) -> bytes:
    """``count`` octet-counted RFC 5424 frames, message numbers from ``first``."""
    out = []
    for n in range(first, first + count):
        body = ("<110>1 2026-01-01T00:00:00Z bench ARCHIVE1 - IHE+RFC-3881 - "
                + template.format(user=f"bench{n}", patient=f"P{n % PATIENTS}")).encode()
        out.append(f"{len(body)} ".encode() + body)
    return b"".join(out)


def receiver_main(url: str, schema: str | None, instance: str, listen: str, bulk: bool, stop: Any,
                  ready: Any) -> None:
    """One receiver process (spawned): serve until ``stop`` is set."""
    from audit.atna.process import serve_receiver

    app = benchlib.make_app(url, instance, schema, settings={"PACSDESK_ATNA_LISTEN": listen,
                                                             "PACSDESK_ATNA_QUEUE_MESSAGES": "20000"})
    serve_receiver(app, stop, reuse_port=True, ready=ready, bulk=bulk)


def free_port(kind: int) -> int:
    """A free loopback port of the socket ``kind``."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Receivers:
    """``count`` receiver processes on shared TCP and UDP ports."""

    def __init__(self, url: str, schema: str | None, instance: str, count: int, bulk: bool) -> None:
        self.tcp, self.udp = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
        listen = f"tcp://127.0.0.1:{self.tcp},udp://127.0.0.1:{self.udp}"
        context = multiprocessing.get_context("spawn")
        self.stop = context.Event()
        self.processes = []
        for _ in range(count):
            ready = context.Event()
            process = context.Process(target=receiver_main,
                                      args=(url, schema, instance, listen, bulk, self.stop, ready))
            process.start()
            if not ready.wait(60):
                raise SystemExit("a receiver did not start")
            self.processes.append(process)

    def close(self) -> None:
        """Stop every receiver (they store what they read and seal their batches)."""
        self.stop.set()
        for process in self.processes:
            process.join(120)


def children_cpu() -> float:
    """CPU seconds used by the receiver processes that ended so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stored_count() -> tuple[int, int]:
    """(messages, quarantined) stored so far."""
    db.session.rollback()
    messages = db.session.execute(select(func.count()).select_from(AtnaMessage)).scalar_one()
    quarantined = db.session.execute(select(func.count()).select_from(AtnaQuarantine)).scalar_one()
    db.session.rollback()
    return messages, quarantined


def send_tcp(port: int, total: int, connections: int, first: int) -> None:
    """Push ``total`` messages over ``connections`` TCP connections at once."""
    template = compact_sample()
    share = [total // connections + (1 if i < total % connections else 0) for i in range(connections)]

    def sender(index: int, count: int, start: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            done = 0
            while done < count:
                step = min(1000, count - done)
                sock.sendall(frames(start + done, step, template))
                done += step

    starts = [first + sum(share[:i]) for i in range(connections)]
    threads = [threading.Thread(target=sender, args=(i, share[i], starts[i])) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def ingest(url: str, schema: str | None, instance: str, processes: int, total: int, connections: int,
           bulk: bool, first: int) -> dict[str, float]:
    """Messages per second stored while ``total`` arrive over TCP; checks every one is accounted for."""
    before = sum(stored_count())
    cpu_before = children_cpu()
    receivers = Receivers(url, schema, instance, processes, bulk)
    started = time.perf_counter()
    try:
        send_tcp(receivers.tcp, total, connections, first)
        sent = time.perf_counter()
        deadline = time.monotonic() + max(600, total / 200)
        while sum(stored_count()) - before < total:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
    finally:
        receivers.close()
    cpu = children_cpu() - cpu_before
    messages, quarantined = stored_count()
    distinct = db.session.execute(select(func.count(func.distinct(AtnaMessage.user_id))).where(
        AtnaMessage.user_id.like("bench%"))).scalar_one()
    db.session.rollback()
    return {"rate": total / elapsed, "seconds": elapsed, "send_seconds": sent - started,
            "stored": messages + quarantined - before, "distinct_users": distinct, "quarantined": quarantined,
            "per_cpu_second": total / cpu if cpu else 0.0}


def udp_share_dropped(url: str, schema: str | None, instance: str, processes: int, seconds: float) -> dict:
    """Send 2,000 datagrams a second for ``seconds``; the share not stored."""
    template = compact_sample()
    receivers = Receivers(url, schema, instance, processes, True)
    before = sum(stored_count())
    sent = 0
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                due = int((time.monotonic() - started) * 2000)
                while sent < due:
                    body = ("<110>1 2026-01-01T00:00:00Z bench ARCHIVE1 - - - "
                            + template.format(user=f"udp{sent}", patient=f"P{sent % PATIENTS}")).encode()
                    sock.sendto(body, ("127.0.0.1", receivers.udp))
                    sent += 1
                time.sleep(0.001)
        time.sleep(3)
    finally:
        receivers.close()
    stored = sum(stored_count()) - before
    return {"sent": sent, "stored": stored, "dropped_share": 1 - stored / sent if sent else 0.0}


def seal_loaded(rows: list[dict[str, Any]]) -> None:
    """Give ``rows`` a sealed batch of their own as a receiver would: its row and ``atna.batch`` event."""
    now = datetime.now(UTC)
    batch = AtnaBatch(receiver="bench-load", opened_at=now, updated_at=now)
    db.session.add(batch)
    db.session.flush()
    hasher = hashlib.sha256()
    for row in rows:
        row["batch_id"] = batch.id
        hasher.update(row_digest(row))
    seal_batch(batch.id, batch.receiver, count=len(rows), quarantined=0, first=rows[0]["received_at"],
               last=rows[-1]["received_at"], digest=hasher.hexdigest(), sources={"ARCHIVE1": len(rows)})


def bulk_load(rows: int) -> list[str]:
    """Load ``rows`` messages spread over the year straight into the table, in sealed batches of 50,000.

    Returns sample patients. Each batch is sealed into the audit chain as a receiver seals what
    it stored, so the chain verification the reports cite has a consistent log to check.
    """
    rng = random.Random(7)
    xml_z = zlib.compress(SAMPLE.read_bytes(), 6)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    span = 365 * 86400
    ensure_partitions(db.session.connection(), date(2025, 1, 1), 13)
    db.session.commit()
    patients = max(rows // 20, 1)
    chunk: list[dict[str, Any]] = []
    for n in range(rows):
        at = start + timedelta(seconds=span * n / rows)
        patient = rng.randrange(patients)
        chunk.append({
            "id": n + 1, "received_at": at, "batch_id": 0, "event_time": at, "event_offset": 0,
            "event_id": "110103" if n % 10 else "110112", "event_type": None, "action": "R", "outcome": 0,
            "source_id": "ARCHIVE1", "sender_host": "10.0.0.5", "sender_name": "archive1", "transport": "tls",
            "asset_id": None, "user_id": f"user{rng.randrange(2000)}", "user_name": None,
            "user_host": f"10.1.{n % 250}.{n % 200}", "patient_id": f"Q{patient}",
            "patient_name": f"PATIENT^{patient}", "study_uid": f"1.2.826.0.1.{patient}.{n % 3}",
            "accession": f"A{patient}-{n % 3}", "xml_z": xml_z})
        if len(chunk) == 50_000 or n == rows - 1:
            seal_loaded(chunk)
            benchlib.bulk_insert(AtnaMessage, chunk)
            db.session.commit()
            chunk = []
    benchlib.analyze()
    return [f"Q{rng.randrange(patients)}" for _ in range(1000)]


def query_and_report(url: str, schema: str | None, instance: str, postgres: bool, args: argparse.Namespace
                     ) -> None:
    """Parts 3 and 4 on their own database: load, search, verify as the nightly job does, report."""
    app = benchlib.make_app(url, instance, schema)
    query_rows = args.query_rows or (10_000_000 if postgres else 1_000_000)
    with app.app_context():
        db.create_all()
        db.session.commit()
        load_started = time.perf_counter()
        patients = bulk_load(query_rows)
        how = "COPY" if postgres else "executemany"
        print(f"query data: {query_rows:,} rows bulk-loaded directly ({how}) in sealed batches of 50,000 "
              f"over 2025 in {time.perf_counter() - load_started:.0f} s")
        rng = random.Random(11)

        def who(patient: str) -> Any:
            flt = search.AccessFilter(patient_id=patient)
            return db.session.execute(search.access_query(flt).limit(search.PAGE_SIZE)).all()

        timings = benchlib.samples_ms(lambda: who(rng.choice(patients)), args.queries)

        def unindexed() -> Any:
            wanted = rng.choice(patients).lower()
            return db.session.execute(select(AtnaMessage.id).where(
                func.lower(AtnaMessage.patient_id) == wanted).order_by(AtnaMessage.event_time.desc())
                .limit(50)).all()

        naive = benchlib.samples_ms(unindexed, 5, warm_ups=1)
        print(f"who accessed this patient: p95 {benchlib.p95(timings):.1f} ms over {args.queries} "
              "patients "
              f"(target {QUERY_TARGET_MS:.0f} ms); baseline without the index: p95 "
              f"{benchlib.p95(naive):.0f} ms -> x{benchlib.p95(naive) / benchlib.p95(timings):.0f}")
        busiest = db.session.execute(select(AtnaMessage.patient_id, func.count()).where(
            AtnaMessage.patient_id.in_(patients[:200])).group_by(AtnaMessage.patient_id)
            .order_by(func.count().desc()).limit(1)).first()
        db.session.commit()
        started = time.perf_counter()
        nightly = run_verification("scheduler", full=True)
        db.session.commit()
        took = time.perf_counter() - started
        print(f"nightly full chain verification (every batch re-hashed): {took:.1f} s, "
              f"{'intact' if nightly.ok else 'BROKEN: ' + str(nightly.problem)}")
        cases = (("busiest sampled patient", busiest[0]), ("a patient nobody opened", "NOBODY"))
        for label, patient in cases:
            request = validate_request("patient-imaging-access", YEAR[0], YEAR[1], obj=f"patient:{patient}")
            started = time.perf_counter()
            pdf = build_pdf(request)
            elapsed = time.perf_counter() - started
            note = f"{busiest[1]} accesses" if patient != "NOBODY" else "baseline"
            print(f"patient imaging access report over 2025, {label} ({note}): {elapsed:.1f} s, "
                  f"{len(pdf):,} bytes (target {REPORT_TARGET_S:.0f} s; its own incremental verification "
                  "included)")
        db.session.remove()
        db.engine.dispose()


def main() -> None:
    """Run every part and print the figures beside their baselines."""
    args = parse_args()
    with benchlib.scratch_database(args.database_url, "atnabench") as (url, schema), \
            tempfile.TemporaryDirectory() as instance:
        app = benchlib.make_app(url, instance, schema)
        postgres = url.startswith("postgres")
        baseline_messages = args.baseline_messages or max(args.messages // 5, 1000)
        with app.app_context():
            db.create_all()
            db.session.commit()
            print(f"database: {'PostgreSQL' if postgres else 'SQLite'}; {args.processes} receiver processes, "
                  f"{args.connections} TCP connections")
            fast = ingest(url, schema, instance, args.processes, args.messages, args.connections, True, 0)
            slow = ingest(url, schema, instance, args.processes, baseline_messages, args.connections, False,
                          args.messages)
            target = 5000 if postgres else 2000
            print(f"ingest over TCP: {args.messages:,} messages in {fast['seconds']:.1f} s = "
                  f"{fast['rate']:,.0f} stored/s (target {target:,}/s; senders done after "
                  f"{fast['send_seconds']:.1f} s); baseline INSERT per message: {slow['rate']:,.0f}/s "
                  f"({baseline_messages:,} messages) -> x{fast['rate'] / slow['rate']:.1f}")
            print(f"  receiver processes' CPU: {fast['per_cpu_second']:,.0f} messages per CPU-second "
                  f"(baseline {slow['per_cpu_second']:,.0f}); the database server's CPU comes on top")
            missing = args.messages + baseline_messages - fast["stored"] - slow["stored"]
            print(f"  accounted for: {fast['stored'] + slow['stored']:,} stored or quarantined of "
                  f"{args.messages + baseline_messages:,} sent; {missing} missing; "
                  f"{slow['distinct_users']:,} distinct senders' message numbers stored")
            if args.messages != 1_000_000:
                print(f"  extrapolated to 1,000,000 messages at this rate: {1_000_000 / fast['rate']:.0f} s")
            udp = udp_share_dropped(url, schema, instance, args.processes, args.udp_seconds)
            print(f"UDP at 2,000 messages/s for {args.udp_seconds:.0f} s: {udp['sent']:,} sent, "
                  f"{udp['stored']:,} stored, {udp['dropped_share']:.2%} dropped")
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    with benchlib.scratch_database(args.database_url, "atnaquery") as (url, schema), \
            tempfile.TemporaryDirectory() as instance:
        query_and_report(url, schema, instance, url.startswith("postgres"), args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
