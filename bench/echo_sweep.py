"""C-ECHO sweep benchmark: a fleet with hostile nodes swept by the app, against dcmtk's echoscu.

The fleet (500 nodes by default): answering Verification SCPs (pynetdicom, spread over a few
processes, their association limit raised), 5% closed ports (refused), 5% silent sockets (TCP
accepted, never a word), 10 peers that announce a 186-byte association answer and send it one
byte a second, and 5 that announce a 4 GB PDU and then stream bytes (both in a process of their
own).

The sweep is ``inventory.verification.services.sweep()``, the scheduled job's own code path
(results written to the database, one audit event): it runs twice, first over a fleet never
checked (worst case: no latency history), then as it runs every interval (slowest nodes first).
``--direct`` times ``inventory.verification.dicom.echo_many`` alone instead (no database).

The baseline is the tool hospitals script today, measured in the same run over the same nodes:
dcmtk's ``echoscu`` 16 at a time (like ``xargs -P 16``), and ``echoscu`` one node after another,
estimated from a stratified sample (the full run takes minutes; ``--full-sequential`` runs it).
``echoscu`` runs with ``-to``/``-ta``/``-td`` set to the timeout, but once a PDU's header is in
its timer restarts with every read, so a slow peer holds it for minutes: each run is killed ``--echoscu-cap``
seconds after its timeout (default 30) and counted as hung, which flatters the baseline.

    python bench/echo_sweep.py                          # 500 nodes, 5 s timeout, app's sweep
    python bench/echo_sweep.py --direct --concurrency 500

Targets (2 cores): the sweep within timeout + 2 s, at least 1.5x faster than 16 parallel
echoscu, peak memory of the sweeping process under 300 MB.
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SPEEDUP_TARGET = 1.5
MEMORY_TARGET_MB = 300.0
SLACK_SECONDS = 2.0
ECHOSCU_PARALLEL = 16
COLD = "first sweep, fleet never checked (no latency history: worst case)"
SCHEDULED = "scheduled sweep (history from the previous checks: slowest nodes start first)"
DIRECT = "echo_many alone (no database)"
# A slow peer's A-ASSOCIATE-AC: the header at once, then the body a byte a second.
SLOW_HEADER = b"\x02\x00\x00\x00\x00\xba"
SLOW_BODY = b"\x00\x01\x00\x00" + bytes(182)
HUGE_HEADER = b"\x02\x00\xff\xff\xff\xff"


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500, help="fleet size (default 500)")
    parser.add_argument("--slow", type=int, default=10,
                        help="peers answering one byte a second (default 10)")
    parser.add_argument("--huge", type=int, default=5,
                        help="peers announcing a 4 GB PDU and streaming (default 5)")
    parser.add_argument("--timeout", type=float, default=5.0, help="C-ECHO timeout (default 5 s)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="checks at once (default: PACSDESK_VERIFY_CONCURRENCY's default)")
    parser.add_argument("--direct", action="store_true",
                        help="time dicom.echo_many directly instead of the app's sweep()")
    parser.add_argument("--scp-processes", type=int, default=4,
                        help="processes hosting the answering SCPs (default 4)")
    parser.add_argument("--echoscu-cap", type=float, default=30.0,
                        help="seconds past the timeout after which an echoscu run is killed (default 30)")
    parser.add_argument("--sample", type=float, default=0.1,
                        help="share of each kind of node in the sequential sample (default 0.1)")
    parser.add_argument("--full-sequential", action="store_true",
                        help="run sequential echoscu over every node instead of a sample")
    parser.add_argument("--seed", type=int, default=2026)
    return parser.parse_args()


def serve_scps(count: int, conn: Connection) -> None:
    """Host ``count`` Verification SCPs on free loopback ports until told to stop."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    ae = AE(ae_title="BENCHSCP")
    ae.add_supported_context(Verification)
    ae.maximum_associations = 2000
    servers = [ae.start_server(("127.0.0.1", 0), block=False) for _ in range(count)]
    conn.send([server.server_address[1] for server in servers])
    conn.recv()
    ae.shutdown()
    conn.send(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def trickle(peer: socket.socket) -> None:
    """Read the association request, then send the answer's header and its body a byte a second."""
    peer.recv(65536)
    peer.sendall(SLOW_HEADER)
    for byte in SLOW_BODY:
        time.sleep(1.0)
        peer.sendall(bytes([byte]))


def flood(peer: socket.socket) -> None:
    """Read the association request, announce a 4 GB answer and stream zeros while read."""
    peer.recv(65536)
    peer.sendall(HUGE_HEADER)
    zeros = bytes(65536)
    while True:
        peer.sendall(zeros)


def serve_hostile(slow: int, huge: int, conn: Connection) -> None:
    """Host the slow and the huge-PDU peers (a thread per connection) until told to stop."""

    def handle(peer: socket.socket, behaviour) -> None:
        try:
            behaviour(peer)
        except OSError:
            pass  # the client hung up, as it should
        finally:
            peer.close()

    def accept(listener: socket.socket, behaviour) -> None:
        while True:
            try:
                peer, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(peer, behaviour), daemon=True).start()

    listeners = []
    for count, behaviour in ((slow, trickle), (huge, flood)):
        for _ in range(count):
            listener = socket.create_server(("127.0.0.1", 0), backlog=64)
            listeners.append((listener, behaviour))
            threading.Thread(target=accept, args=(listener, behaviour), daemon=True).start()
    conn.send([(b is trickle, s.getsockname()[1]) for s, b in listeners])
    conn.recv()
    for listener, _ in listeners:
        listener.close()
    conn.send(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def silent_socket() -> socket.socket:
    """A listener that never accepts: the kernel completes the handshake, nothing answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    return listener


def build_fleet(args: argparse.Namespace) -> tuple[list[tuple[str, int]], list, list[socket.socket]]:
    """Start the peers; returns (kind, port) per node, the peer processes and the silent sockets."""
    rng = random.Random(args.seed)
    failing = max(1, round(args.nodes * 0.05))
    answering = args.nodes - 2 * failing - args.slow - args.huge
    if answering < args.scp_processes:
        raise SystemExit("too few nodes for the hostile and failing ones asked for")
    per_process = [answering // args.scp_processes + (i < answering % args.scp_processes)
                   for i in range(args.scp_processes)]
    processes = []
    for target, process_args in ([(serve_scps, (count,)) for count in per_process]
                                 + [(serve_hostile, (args.slow, args.huge))]):
        parent, child = multiprocessing.Pipe()
        process = multiprocessing.Process(target=target, args=(*process_args, child), daemon=True)
        process.start()
        processes.append((process, parent))
    fleet: list[tuple[str, int]] = []
    for _, parent in processes[:-1]:
        fleet += [("answering", port) for port in parent.recv()]
    fleet += [("slow", port) if slow else ("huge", port) for slow, port in processes[-1][1].recv()]
    silent = [silent_socket() for _ in range(failing)]
    fleet += ([("refused", closed_port()) for _ in range(failing)]
              + [("silent", s.getsockname()[1]) for s in silent])
    rng.shuffle(fleet)
    return fleet, processes, silent


def run_echoscu(binary: str, port: int, calling_ae: str, timeout: float, cap: float) -> str:
    """One echoscu run, as a hospital's script does it: 'ok', 'failed' or 'hung' (killed)."""
    seconds = str(max(1, math.ceil(timeout)))
    try:
        done = subprocess.run([binary, "-to", seconds, "-ta", seconds, "-td", seconds,
                               "-aet", calling_ae, "-aec", "NODE", "127.0.0.1", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=timeout + cap, check=False)
    except subprocess.TimeoutExpired:
        return "hung"
    return "ok" if done.returncode == 0 else "failed"


def sweep_app(fleet: list[tuple[str, int]], args: argparse.Namespace) -> tuple[list[float], int]:
    """Run the app's sweep twice over the fleet; (wall times, concurrency)."""
    from sqlalchemy import insert

    from app import create_app
    from audit import record
    from core import audit_sink
    from core.extensions import db
    from core.reference_data import load_reference_data
    from inventory.models import Asset
    from inventory.verification.services import sweep

    workdir = Path(tempfile.mkdtemp(prefix="echo-sweep-"))
    overrides = {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{workdir / 'bench.db'}",
                 "PACSDESK_INSTANCE_PATH": str(workdir), "SECRET_KEY": "bench",
                 "PACSDESK_VERIFY_TIMEOUT": args.timeout}
    if args.concurrency:
        overrides["PACSDESK_VERIFY_CONCURRENCY"] = args.concurrency
    app = create_app(overrides)
    audit_sink.register_actions(app, {"bench.fleet": "Benchmark fleet of DICOM nodes loaded"})
    with app.app_context():
        db.create_all()
        load_reference_data()
        # Loaded below the ORM: the fleet is the benchmark's fixture, not a change to audit.
        db.session.execute(insert(Asset.__table__), [
            {"asset_tag": f"BENCH-{i:04d}", "name": f"Bench node {i}", "kind": "dicom_node",
             "ip_address": "127.0.0.1", "port": port, "ae_title": f"NODE{i:04d}"}
            for i, (_kind, port) in enumerate(fleet)])
        record("bench.fleet", object_type="asset", object_id="BENCH-*", user=None,
               details={"nodes": len(fleet)})
        db.session.commit()
        concurrency = app.config["PACSDESK_VERIFY_CONCURRENCY"]
    times = []
    for label in (COLD, SCHEDULED):
        with app.app_context():
            started = time.perf_counter()
            result = sweep()
            times.append(time.perf_counter() - started)
        print(f"{label}: {times[-1]:.2f} s wall, outcomes {dict(sorted(result.counts.items()))}")
    shutil.rmtree(workdir, ignore_errors=True)
    return times, concurrency


def sweep_direct(fleet: list[tuple[str, int]], args: argparse.Namespace) -> tuple[list[float], int]:
    """Run echo_many once over the fleet; ([wall time], concurrency)."""
    from core.config import SETTINGS
    from inventory.verification.dicom import Target, echo_many

    default = next(s.default for s in SETTINGS if s.name == "PACSDESK_VERIFY_CONCURRENCY")
    concurrency = args.concurrency or int(default or 32)
    targets = [Target("127.0.0.1", port, f"NODE{i:04d}") for i, (_kind, port) in enumerate(fleet)]
    started = time.perf_counter()
    outcomes = Counter(result.outcome.value
                       for _, result in echo_many(targets, "PACSDESK", args.timeout, concurrency))
    seconds = time.perf_counter() - started
    print(f"{DIRECT}: {seconds:.2f} s wall, outcomes {dict(sorted(outcomes.items()))}")
    return [seconds], concurrency


def main() -> int:
    """Run the benchmark and print the figures; exit 1 when a target is missed."""
    args = parse_args()
    binary = shutil.which("echoscu")
    if binary is None:
        print("echoscu (dcmtk) is not installed: scripts/install-system-packages.sh", file=sys.stderr)
        return 2
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        print(f"warning: load average {load:.1f} on {os.cpu_count()} cores: the peers may not answer "
              "in time and every wall time below is stretched", file=sys.stderr)
    fleet, processes, silent = build_fleet(args)
    kinds = Counter(kind for kind, _ in fleet)
    print(f"nodes: {len(fleet)} ({kinds['answering']} answering SCPs in {len(processes) - 1} "
          f"processes, {kinds['refused']} refused ports, {kinds['silent']} silent sockets, "
          f"{kinds['slow']} answering a byte a second, {kinds['huge']} announcing a 4 GB PDU)")

    cpu = resource.getrusage(resource.RUSAGE_SELF)
    sweeps, concurrency = (sweep_direct if args.direct else sweep_app)(fleet, args)
    after = resource.getrusage(resource.RUSAGE_SELF)
    memory_mb = after.ru_maxrss / 1024
    cpu_seconds = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    sweep_seconds = sweeps[-1]
    print(f"timeout: {args.timeout:.1f} s, concurrency: {concurrency}; CPU time of the sweeping "
          f"process over the sweeps: {cpu_seconds:.1f} s")

    started = time.perf_counter()
    with ThreadPoolExecutor(ECHOSCU_PARALLEL) as pool:
        parallel_outcomes = Counter(zip((kind for kind, _ in fleet), pool.map(
            lambda node: run_echoscu(binary, node[1], "PACSDESK", args.timeout, args.echoscu_cap),
            fleet), strict=True))
    parallel = time.perf_counter() - started
    print(f"echoscu, {ECHOSCU_PARALLEL} at a time: {parallel:.2f} s wall, outcomes by kind of node "
          f"{', '.join(f'{k} {o}: {n}' for (k, o), n in sorted(parallel_outcomes.items()))} "
          f"(hung: killed {args.echoscu_cap:.0f} s after its timeout)")

    rng = random.Random(args.seed + 1)
    if args.full_sequential:
        chosen = list(fleet)
    else:
        chosen = []
        for kind in kinds:
            members = [node for node in fleet if node[0] == kind]
            chosen += rng.sample(members, min(len(members), max(3, round(len(members) * args.sample))))
    spent: dict[str, list[float]] = {kind: [] for kind in kinds}
    seq_outcomes: Counter[str] = Counter()
    for kind, port in chosen:
        started = time.perf_counter()
        seq_outcomes[run_echoscu(binary, port, "PACSDESK", args.timeout, args.echoscu_cap)] += 1
        spent[kind].append(time.perf_counter() - started)
    if args.full_sequential:
        sequential = sum(sum(times) for times in spent.values())
        how = "measured over every node"
    else:
        sequential = sum(kinds[kind] * sum(times) / len(times) for kind, times in spent.items())
        how = (f"estimated from a stratified sample of {len(chosen)} nodes "
               f"({', '.join(f'{len(t)} {k}' for k, t in spent.items())}), mean time per kind x count")
    print(f"echoscu, one node after another: {sequential:.1f} s, {how}; outcomes "
          f"{dict(sorted(seq_outcomes.items()))}")

    for _, parent in processes:
        parent.send("stop")
    peer_memory = max(parent.recv() for _, parent in processes)
    for process, _ in processes:
        process.join(10)
    for listener in silent:
        listener.close()

    limit = args.timeout + SLACK_SECONDS
    ratio = parallel / sweep_seconds
    checks = [
        (f"every sweep within timeout + {SLACK_SECONDS:.0f} s ({limit:.1f} s)", max(sweeps) <= limit,
         " and ".join(f"{s:.2f} s" for s in sweeps)),
        (f"sweep at least {SPEEDUP_TARGET:.1f}x faster than {ECHOSCU_PARALLEL} parallel echoscu",
         ratio >= SPEEDUP_TARGET, f"{ratio:.1f}x"),
        (f"peak memory of the sweeping process < {MEMORY_TARGET_MB:.0f} MB",
         memory_mb < MEMORY_TARGET_MB, f"{memory_mb:.0f} MB"),
    ]
    print(f"nodes: {len(fleet)}; wall time: sweep {sweep_seconds:.2f} s, echoscu x{ECHOSCU_PARALLEL} "
          f"{parallel:.2f} s, sequential echoscu {sequential:.1f} s; ratios: {ratio:.1f}x against "
          f"parallel echoscu, {sequential / sweep_seconds:.1f}x against sequential echoscu")
    print(f"peak memory: sweeping process {memory_mb:.0f} MB; largest peer process {peer_memory:.0f} MB")
    for label, ok, value in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {label}: {value}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
