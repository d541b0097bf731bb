"""C-ECHO sweep benchmark: a fleet of loopback DICOM nodes swept by the app, against a sequential sweep.

The fleet: about 90% answering Verification SCPs (pynetdicom, spread over a few processes,
their association limit raised), 5% closed ports (refused) and 5% silent sockets (TCP
accepted, never a word). The concurrent sweep is ``inventory.verification.services.sweep()``, the
scheduled job's own code path (bounded pool, results written to the database, one audit
event). The baseline checks the same nodes one after another with the same C-ECHO function
and timeout, in the same run; by default it is measured on a stratified sample and
extrapolated (the full sequential run takes minutes because of the silent nodes), or in
full with ``--full-sequential``.

    python bench/echo_sweep.py                         # 500 nodes, 5 s timeout
    python bench/echo_sweep.py --nodes 1000 --full-sequential

Two sweeps run: the first over a fleet never checked before (in the product every node is
checked when it is saved, so this only happens here), then the scheduled sweep as it runs
every interval, which starts the nodes that answered slowest (or timed out) last time first so
their waits overlap the quick ones. Targets (2 cores): every sweep within timeout + 10 s, the
scheduled sweep >= 20x faster than sequential, peak memory of the sweeping process < 300 MB.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import random
import resource
import socket
import sys
import tempfile
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SPEEDUP_TARGET = 20.0
MEMORY_TARGET_MB = 300.0
SLACK_SECONDS = 10.0
COLD = "first sweep, fleet never checked (no latency history: worst case)"
SCHEDULED = "scheduled sweep (history from the previous checks: slowest nodes start first)"


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500, help="fleet size (default 500)")
    parser.add_argument("--timeout", type=float, default=5.0, help="C-ECHO timeout (default 5 s)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="PACSDESK_VERIFY_CONCURRENCY (default: the app's default)")
    parser.add_argument("--scp-processes", type=int, default=4,
                        help="processes hosting the answering SCPs (default 4)")
    parser.add_argument("--sample", type=float, default=0.1,
                        help="share of each kind of node in the sequential sample (default 0.1)")
    parser.add_argument("--full-sequential", action="store_true",
                        help="measure the whole sequential sweep instead of a sample")
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
    """Start the peers; returns (kind, port) per node, the SCP processes and the silent sockets."""
    rng = random.Random(args.seed)
    failing = max(1, round(args.nodes * 0.05))
    answering = args.nodes - 2 * failing
    per_process = [answering // args.scp_processes + (i < answering % args.scp_processes)
                   for i in range(args.scp_processes)]
    processes = []
    ports: list[int] = []
    for count in per_process:
        parent, child = multiprocessing.Pipe()
        process = multiprocessing.Process(target=serve_scps, args=(count, child), daemon=True)
        process.start()
        processes.append((process, parent))
    for _, parent in processes:
        ports.extend(parent.recv())
    silent = [silent_socket() for _ in range(failing)]
    fleet = ([("answering", p) for p in ports] + [("refused", closed_port()) for _ in range(failing)]
             + [("silent", s.getsockname()[1]) for s in silent])
    rng.shuffle(fleet)
    return fleet, processes, silent


def main() -> int:
    """Run the benchmark and print the figures; exit 1 when a target is missed."""
    args = parse_args()
    fleet, processes, silent = build_fleet(args)

    from app import create_app
    from core.extensions import db
    from core.reference_data import load_reference_data
    from inventory.models import Asset
    from inventory.verification.dicom import echo
    from inventory.verification.services import sweep

    workdir = Path(tempfile.mkdtemp(prefix="echo-sweep-"))
    overrides = {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{workdir / 'bench.db'}",
                 "PACSDESK_INSTANCE_PATH": str(workdir), "SECRET_KEY": "bench",
                 "PACSDESK_VERIFY_TIMEOUT": args.timeout}
    if args.concurrency:
        overrides["PACSDESK_VERIFY_CONCURRENCY"] = args.concurrency
    app = create_app(overrides)
    with app.app_context():
        db.create_all()
        load_reference_data()
        for i, (_kind, port) in enumerate(fleet):
            db.session.add(Asset(asset_tag=f"BENCH-{i:04d}", name=f"Bench node {i}",
                                 kind="dicom_node", ip_address="127.0.0.1", port=port,
                                 ae_title=f"NODE{i:04d}"))
        db.session.commit()
        concurrency = app.config["PACSDESK_VERIFY_CONCURRENCY"]
        calling_ae = app.config["PACSDESK_DICOM_AE_TITLE"]

    kinds = Counter(kind for kind, _ in fleet)
    print(f"nodes: {len(fleet)} ({kinds['answering']} answering SCPs in {len(processes)} "
          f"processes, {kinds['refused']} refused ports, {kinds['silent']} silent sockets)")
    print(f"timeout: {args.timeout:.1f} s, concurrency: {concurrency}")

    sweeps = []
    for label in (COLD, SCHEDULED):
        with app.app_context():
            started = time.perf_counter()
            result = sweep()
            sweeps.append(time.perf_counter() - started)
        print(f"{label}: {sweeps[-1]:.2f} s wall, outcomes {dict(sorted(result.counts.items()))}")
    cold_seconds, sweep_seconds = sweeps
    memory_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    rng = random.Random(args.seed + 1)
    if args.full_sequential:
        chosen = list(fleet)
    else:
        chosen = []
        for kind in kinds:
            members = [node for node in fleet if node[0] == kind]
            chosen += rng.sample(members, max(3, round(len(members) * args.sample)))
    spent: dict[str, list[float]] = {kind: [] for kind in kinds}
    seq_outcomes: Counter[str] = Counter()
    for kind, port in chosen:
        started = time.perf_counter()
        seq_outcomes[echo("127.0.0.1", port, "NODE", calling_ae, args.timeout).outcome.value] += 1
        spent[kind].append(time.perf_counter() - started)
    if args.full_sequential:
        sequential = sum(sum(times) for times in spent.values())
        how = "measured over every node"
    else:
        sequential = sum(kinds[kind] * sum(times) / len(times) for kind, times in spent.items())
        how = (f"estimated from a stratified sample of {len(chosen)} nodes "
               f"({', '.join(f'{len(t)} {k}' for k, t in spent.items())}), mean time per kind "
               f"x count")
    print(f"sequential sweep (same echo, one node at a time): {sequential:.1f} s, {how}; "
          f"outcomes {dict(sorted(seq_outcomes.items()))}")
    ratio = sequential / sweep_seconds
    cold_ratio = sequential / cold_seconds

    for _, parent in processes:
        parent.send("stop")
    scp_memory = max(parent.recv() for _, parent in processes)
    for process, _ in processes:
        process.join(10)
    for listener in silent:
        listener.close()

    limit = args.timeout + SLACK_SECONDS
    checks = [
        (f"every sweep within timeout + {SLACK_SECONDS:.0f} s ({limit:.1f} s)",
         max(sweeps) <= limit, f"{cold_seconds:.2f} s and {sweep_seconds:.2f} s"),
        (f"scheduled sweep at least {SPEEDUP_TARGET:.0f}x faster than sequential",
         ratio >= SPEEDUP_TARGET, f"{ratio:.1f}x"),
        (f"peak memory of the sweeping process < {MEMORY_TARGET_MB:.0f} MB",
         memory_mb < MEMORY_TARGET_MB, f"{memory_mb:.0f} MB"),
    ]
    print(f"nodes: {len(fleet)}, wall time: {sweep_seconds:.2f} s, ratio: {ratio:.1f}x "
          f"(scheduled sweep); first sweep of a never-checked fleet: {cold_seconds:.2f} s, "
          f"{cold_ratio:.1f}x")
    print(f"peak memory: sweeping process {memory_mb:.0f} MB; largest SCP process "
          f"{scp_memory:.0f} MB")
    for label, ok, value in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {label}: {value}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
