"""Load benchmark: pages through `pacsdesk serve` at 1, 8 and 32 concurrent clients on a full database.

Builds a database of 100,000 tickets (two replies, words and a history line each), 1,000,000
chained audit events and 2,000 assets with bulk inserts, starts `pacsdesk serve` on it (its
default workers and threads, no job worker), logs a technician and a compliance officer in over
real HTTP, and sends each page from 1, 8 and 32 clients (threads spread over four processes,
each on its own connection, opened again whenever the server closed it): the queue, a word
search, a ticket page (an audited view: a write per request), the asset list, the audit search
(audited too) and /healthz. It prints requests/s, p50, p95, p99 and errors, and checks the
targets against the 1-client figures of the same run:

* at 8 clients, p95 at most 4 times the 1-client p95 and throughput at least 1.7 times;
* at 32 clients, no errors and p99 under 1 s; /healthz p99 under 50 ms.

    python bench/load_bench.py                      # SQLite file in a temporary folder
    python bench/load_bench.py --database-url postgresql://user@host/db
    python bench/load_bench.py --small              # 5,000 tickets, 50,000 events, fewer requests

On PostgreSQL the benchmark works in a scratch schema that it drops afterwards.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import benchlib  # first: it puts the project on sys.path
import helpdesk_bench
from sqlalchemy import text

from core.auth.models import Role
from core.auth.services import NewUser, create_user
from core.config import available_cores, default_web_threads, default_web_workers
from core.extensions import db
from core.reference_data import load_reference_data
from inventory.models import Asset

PASSWORD = "bench-password-long-enough"
CONCURRENCY = (1, 8, 32)
P95_RATIO_MAX = 4.0
THROUGHPUT_RATIO_MIN = 1.7
P99_MAX_MS = 1000.0
HEALTHZ_P99_MAX_MS = 50.0
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    """One page at one concurrency: latencies in ms, errors, wall time."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def pct(self, q: float) -> float:
        """The ``q``-th percentile of the latencies (inclusive method)."""
        if len(self.latencies) < 2:
            return self.latencies[0] if self.latencies else float("nan")
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(q) - 1]

    @property
    def throughput(self) -> float:
        """Answered requests per second."""
        return len(self.latencies) / self.seconds if self.seconds else 0.0


def load_assets(count: int, user_ids: list[int], rng: random.Random) -> None:
    """Bulk-insert ``count`` assets, a third of them DICOM nodes."""
    now = datetime.now(UTC)
    rows = []
    for n in range(1, count + 1):
        node = n % 3 == 0
        rows.append({
            "asset_tag": f"{'CT' if node else 'WS'}-{n:05d}",
            "name": f"{'Scanner' if node else 'Workstation'} {n}",
            "kind": "dicom_node" if node else "workstation", "status": "in_service",
            "location": f"Building {n % 7} room {n % 40}",
            "department": rng.choice(("Radiology", "CT", "MRI", "ED")),
            "assigned_user_id": rng.choice(user_ids), "manufacturer": "Vendor", "model": f"M{n % 13}",
            "serial_number": f"SN{n:06d}", "hostname": f"host{n}.hospital.example",
            "ip_address": f"10.{n // 250 % 250}.{n % 250}.5", "os_version": "10", "purchase_date": None,
            "warranty_end": None, "notes": "", "holds_phi": False, "ae_title": f"AE{n}" if node else None,
            "port": 104 if node else None, "tls": False, "dicom_role": "both" if node else None,
            "dicom_type": "modality" if node else None, "modality": "CT" if node else None,
            "verify_enabled": False, "created_at": now, "updated_at": now})
    benchlib.bulk_insert(Asset, rows)
    db.session.commit()


def build(url: str, instance: str, schema: str | None, args: argparse.Namespace) -> float:
    """Create the schema, the users and the full database; seconds the load took."""
    rng = random.Random(args.seed)
    app = benchlib.make_app(url, instance, schema, settings=SETTINGS)
    with app.app_context():
        db.create_all()
        load_reference_data()
        db.session.commit()
        began = time.perf_counter()
        tech = create_user(NewUser(username="bench.tech", role=Role.TECHNICIAN, password=PASSWORD))
        create_user(NewUser(username="bench.compliance", role=Role.COMPLIANCE, password=PASSWORD))
        requesters = [create_user(NewUser(username=f"bench.req{i}", role=Role.REQUESTER,
                                          password=PASSWORD)).id for i in range(50)]
        techs = [tech.id, *[create_user(NewUser(username=f"bench.tech{i}", role=Role.TECHNICIAN,
                                                password=PASSWORD)).id for i in range(8)]]
        db.session.commit()
        helpdesk_bench.load_tickets(args.tickets, requesters, techs, rng)
        helpdesk_bench.load_audit_events(args.audit_events, rng)
        load_assets(args.assets, requesters + techs, rng)
        if db.engine.dialect.name == "postgresql":
            for table in ("ticket", "asset", "user_account"):
                db.session.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) "
                                        f"FROM {table}"))
            db.session.commit()
        benchlib.analyze()
        seconds = time.perf_counter() - began
        db.session.remove()
        db.engine.dispose()
    return seconds


# The server's settings: long sessions (clients reuse one login), password-only logins.
SETTINGS = {"PACSDESK_SESSION_IDLE_MINUTES": "1440", "PACSDESK_MFA_REQUIRED_ROLES": "none"}


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(url: str, schema: str | None, instance: str, port: int) -> subprocess.Popen[bytes]:
    """Start `pacsdesk serve` on the database with its default workers and threads; wait until it answers."""
    if schema:
        url += ("&" if "?" in url else "?") + "options=" + quote(f"-csearch_path={schema}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACSDESK_")}
    env.update(SETTINGS, PACSDESK_DATABASE_URL=url, PACSDESK_INSTANCE_PATH=instance,
               PACSDESK_SECRET_KEY="bench", PACSDESK_WORKER="false")
    log = Path(instance) / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "core.cli", "serve", "--port", str(port)],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("pacsdesk serve exited:\n" + log.read_text()[-3000:])
        try:
            status, _ = request(http.client.HTTPConnection("127.0.0.1", port, timeout=5), "/healthz", "")
            if status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.3)
    server.kill()
    raise SystemExit("pacsdesk serve did not answer within 60 s")


def request(conn: http.client.HTTPConnection, path: str, cookie: str) -> tuple[int, bytes]:
    """GET ``path`` with the session cookie; status and body."""
    conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
    response = conn.getresponse()
    return response.status, response.read()


def login(port: int, username: str) -> str:
    """Log in through the form (with its CSRF token); the session cookie to send."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/login")
    response = conn.getresponse()
    page = response.read().decode()
    cookie = (response.getheader("Set-Cookie") or "").split(";", 1)[0]
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    token = token or re.search(r'value="([^"]+)"[^>]*name="csrf_token"', page)
    assert token, "no CSRF token on the login page"
    body = urlencode({"csrf_token": token.group(1), "username": username, "password": PASSWORD})
    conn.request("POST", "/login", body=body, headers={
        "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    response = conn.getresponse()
    response.read()
    assert response.status == 302, f"login of {username} answered {response.status}"
    cookie = (response.getheader("Set-Cookie") or "").split(";", 1)[0]
    conn.close()
    return cookie


CLIENT_PROCESSES = 4  # clients are spread over processes, so the client's own GIL adds no queueing


def _client_process(port: int, cookie: str, work: list[list[str]], start: Any, out: Any) -> None:
    """In a client process: one thread per list of paths, each on its own keep-alive connection."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(mine: list[str]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        start.wait()
        for path in mine:
            began = time.perf_counter()
            try:
                status, _ = request(conn, path, cookie)
                error = None if status == 200 else f"HTTP {status} on {path}"
            except (OSError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__} on {path}"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            ms = (time.perf_counter() - began) * 1000
            with lock:
                if error:
                    errors.append(error)
                else:
                    latencies.append(ms)
        conn.close()

    threads = [threading.Thread(target=client, args=(mine,)) for mine in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put((latencies, errors))


def run_load(port: int, cookie: str, paths: Iterator[str], clients: int, total: int) -> Result:
    """``total`` requests from ``clients`` clients (threads over a few processes), all starting at once."""
    share = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]
    work = [[next(paths) for _ in range(n)] for n in share]
    processes = min(clients, CLIENT_PROCESSES)
    context = multiprocessing.get_context("fork")
    start = context.Barrier(clients + 1)
    out: Any = context.Queue()
    children = [context.Process(target=_client_process, args=(port, cookie, work[i::processes], start, out))
                for i in range(processes)]
    for child in children:
        child.start()
    start.wait()
    began = time.perf_counter()
    result = Result()
    for _ in children:
        latencies, errors = out.get()
        result.latencies += latencies
        result.errors += errors
    result.seconds = time.perf_counter() - began
    for child in children:
        child.join()
    return result


def pages(tickets: int, rng: random.Random) -> dict[str, tuple[str, Iterator[str]]]:
    """Each benchmarked page: which login it needs and an endless supply of its URLs."""

    def endless(make) -> Iterator[str]:
        while True:
            yield make()

    def ticket() -> str:
        return f"PD-{rng.randint(1, tickets):06d}"

    words = ("tomosynthesis", "hanging+protocol", "worklist+frozen", "priors+missing", "router")
    return {
        "queue": ("tech", endless(lambda: "/tickets")),
        "word search": ("tech", endless(lambda: f"/tickets?q={rng.choice(words)}&status=all")),
        "ticket page": ("tech", endless(lambda: f"/tickets/{ticket()}")),
        "asset list": ("tech", endless(lambda: f"/assets?page={rng.randint(1, 5)}")),
        "audit search": ("compliance", endless(lambda: f"/audit?object_id={ticket()}")),
        "healthz": ("none", endless(lambda: "/healthz")),
    }


def measure(port: int, args: argparse.Namespace) -> dict[str, dict[int, Result]]:
    """Every page at every concurrency, after a warm-up of each."""
    cookies = {"tech": login(port, "bench.tech"), "compliance": login(port, "bench.compliance"), "none": ""}
    results: dict[str, dict[int, Result]] = {}
    for name, (who, paths) in pages(args.tickets, random.Random(args.seed)).items():
        run_load(port, cookies[who], paths, 8, 16)  # warm-up: every worker has served the page
        results[name] = {}
        for clients in CONCURRENCY:
            total = max(args.requests, clients * 4)
            results[name][clients] = run_load(port, cookies[who], paths, clients, total)
            r = results[name][clients]
            print(f"  {name:12} c={clients:<3} {r.throughput:7.1f} req/s  p95 {r.pct(95):7.1f} ms  "
                  f"errors {len(r.errors)}", flush=True)
    return results


def report(results: dict[str, dict[int, Result]], header: str) -> bool:
    """Print the table with the ratios; True when every target is met."""
    print(f"\n{header}")
    print(f"{'page':13} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for name, by_clients in results.items():
        for clients, r in by_clients.items():
            print(f"{name:13} {clients:7} {r.throughput:8.1f} {r.pct(50):8.1f} {r.pct(95):8.1f} "
                  f"{r.pct(99):8.1f} {len(r.errors):6}")
    print(f"\n{'page':13} {'p95 8/1':>8} {'(<=4)':>6} {'req/s 8/1':>10} {'(>=1.7)':>8} {'errors@32':>10} "
          f"{'p99@32 ms':>10} {'target':>8}  met")
    met = True
    for name, by_clients in results.items():
        one, eight, many = by_clients[1], by_clients[8], by_clients[32]
        p95_ratio = eight.pct(95) / one.pct(95)
        tput_ratio = eight.throughput / one.throughput
        limit = HEALTHZ_P99_MAX_MS if name == "healthz" else P99_MAX_MS
        ok = (p95_ratio <= P95_RATIO_MAX and tput_ratio >= THROUGHPUT_RATIO_MIN and not many.errors
              and many.pct(99) < limit)
        if name == "healthz":  # nothing to scale: its target is the 32-client p99 alone
            ok = not many.errors and many.pct(99) < limit
        met &= ok
        print(f"{name:13} {p95_ratio:8.2f} {'':6} {tput_ratio:10.2f} {'':8} {len(many.errors):10} "
              f"{many.pct(99):10.1f} {'< ' + format(limit, '.0f'):>8}  {'yes' if ok else 'NO'}")
        for error in sorted(set(many.errors + eight.errors + one.errors))[:3]:
            print(f"    error: {error}")
    print("targets: " + ("met" if met else "MISSED"))
    return met


def main() -> int:
    """Build, serve, measure, print; exit status 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="postgresql://... (default: a temporary SQLite file)")
    parser.add_argument("--small", action="store_true",
                        help="a quick run: 5,000 tickets, 50,000 events, 100 requests per run")
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--audit-events", type=int, default=1_000_000)
    parser.add_argument("--assets", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=400, help="requests per page and concurrency")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    if args.small:
        args.tickets, args.audit_events, args.assets, args.requests = 5_000, 50_000, 500, 100
    database_url = None if (args.database_url or "").startswith("sqlite") else args.database_url
    with benchlib.scratch_database(database_url, "load_bench") as (url, schema), \
            tempfile.TemporaryDirectory() as instance:
        seconds = build(url, instance, schema, args)
        dialect = "postgresql" if schema else "sqlite"
        print(f"{dialect}: {args.tickets:,} tickets, {args.audit_events:,} audit events, "
              f"{args.assets:,} assets loaded in {seconds:.0f} s (bulk inserts)", flush=True)
        server = serve(url, schema, instance, free_port())
        try:
            port = int(server.args[-1])
            results = measure(port, args)
        finally:
            server.terminate()
            server.wait(timeout=30)
        header = (f"Load through `pacsdesk serve` (its defaults on {available_cores()} cores: "
                  f"{default_web_workers()} workers x {default_web_threads()} threads) on {dialect}, "
                  f"{args.requests} requests per page and concurrency")
        return 0 if report(results, header) else 1


if __name__ == "__main__":
    sys.exit(main())
