"""Study retention benchmark: list a 100,000-study Orthanc by paged C-FIND, against one unpaged C-FIND.

An Orthanc from the Debian package is filled with generated one-image studies (8x8 pixels),
sent by C-STORE from several processes at once, each over its own association: Orthanc's
index takes one instance at a time, so this is about as fast as the archive ingests (REST
``POST /instances`` measured the same). The archive is then listed twice in the same run:

1. the paged walk (``inventory.studies.query.walk_studies``) with Orthanc's ``LimitFindResults``
   set (500 by default), splitting date windows until no answer is cut;
2. Orthanc restarted on the same storage with ``LimitFindResults`` 0, and one universal
   study-level C-FIND that returns every study in one answer (what a capped archive refuses).

Both parse every match into a StudyRecord and are checked against the set of UIDs stored. Then
the default retention rules are evaluated over the listed studies (target: 50,000 studies/s).

    python bench/study_retention_bench.py                      # 100,000 studies
    python bench/study_retention_bench.py --studies 20000 --keep /var/tmp/archive
    python bench/study_retention_bench.py --reuse /var/tmp/archive   # skip generation

Orthanc is run with ``TCP_NODELAY=1`` in its environment: without it DCMTK waits on delayed
acknowledgements and every C-FIND and C-STORE costs ~40 ms more (see the admin notes).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inventory.studies.dimse import STUDY_ROOT_FIND, Archive, connect
from inventory.studies.query import walk_studies
from inventory.studies.records import study_from_identifier, study_identifier
from inventory.studies.rules import DEFAULT_RULES, Hold, evaluate

RULE_TARGET = 50_000.0
AET = "BENCHPACS"
FIRST_DAY, DAYS = date(2000, 1, 1), 26 * 365
MODALITIES = ("CT", "MR", "CR", "US", "MG", "DX")


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=100_000, help="studies to generate (default 100000)")
    parser.add_argument("--limit", type=int, default=500, help="LimitFindResults for the paged walk (500)")
    parser.add_argument("--workers", type=int, default=2, help="processes sending C-STORE (default 2)")
    parser.add_argument("--keep", type=Path, help="fill this folder and keep it (reuse it later)")
    parser.add_argument("--reuse", type=Path, help="a folder filled by an earlier --keep run")
    parser.add_argument("--seed", type=int, default=2026)
    return parser.parse_args()


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening(port: int) -> bool:
    """Whether something accepts connections on loopback ``port``."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Orthanc:
    """Debian's Orthanc on a folder, started and stopped by the benchmark."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port, self.http_port = free_port(), free_port()
        self.process: subprocess.Popen | None = None

    def start(self, limit: int) -> None:
        """Start with ``LimitFindResults`` = ``limit`` (0: unlimited) and wait for its ports."""
        binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
        config = {"Name": "bench", "DicomAet": AET, "DicomPort": self.port, "HttpPort": self.http_port,
                  "DicomAlwaysAllowFind": True, "DicomAlwaysAllowStore": True, "LimitFindResults": limit,
                  "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": [],
                  "StorageDirectory": str(self.folder / "storage"), "SaveJobs": False,
                  "IndexDirectory": str(self.folder / "index")}
        (self.folder / "orthanc.json").write_text(json.dumps(config))
        log = (self.folder / "orthanc.log").open("a")
        self.process = subprocess.Popen([binary, str(self.folder / "orthanc.json")], cwd=self.folder,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "TCP_NODELAY": "1"})
        log.close()
        deadline = time.monotonic() + 60
        while not (listening(self.port) and listening(self.http_port)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"Orthanc did not start; see {self.folder / 'orthanc.log'}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop Orthanc cleanly (its index is reused by the next start)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=120)

    def archive(self, limit: int | None) -> Archive:
        """The archive as PACS Desk calls it."""
        return Archive("127.0.0.1", self.port, AET, "PACSDESK", 120.0, find_limit=limit or None)


def send_studies(port: int, first: int, count: int, seed: int) -> tuple[list[str], int]:
    """C-STORE ``count`` one-image studies over one association (re-associating if it drops)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import SecondaryCaptureImageStorage  # type: ignore[attr-defined]

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    rng = random.Random(seed + first)
    ae = AE(ae_title="PACSDESK")
    ae.add_requested_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
    no_delay: list[Any] = [(evt.EVT_CONN_OPEN, lambda event: event.assoc.dul.socket.socket.setsockopt(
        socket.IPPROTO_TCP, socket.TCP_NODELAY, 1))]
    assoc = None
    uids: list[str] = []
    drops = 0
    for n in range(first, first + count):
        day = FIRST_DAY + timedelta(days=rng.randrange(DAYS))
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.PatientID = f"BENCH{rng.randrange(count * 3 // 10 + 1) + first:07d}"
        ds.PatientName, ds.PatientSex = "BENCH^PATIENT", rng.choice("MF")
        ds.PatientBirthDate = (day - timedelta(days=rng.randrange(200, 33_000))).strftime("%Y%m%d")
        ds.StudyDate = day.strftime("%Y%m%d")
        ds.StudyTime = f"{rng.randrange(7, 20):02d}{rng.randrange(60):02d}00"
        ds.Modality, ds.AccessionNumber, ds.StudyID = rng.choice(MODALITIES), f"B{n:08d}", "1"
        ds.SeriesNumber = ds.InstanceNumber = 1
        ds.Rows = ds.Columns = 8
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 7, 0, 1
        ds.PhotometricInterpretation, ds.PixelData = "MONOCHROME2", bytes(64)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        while True:  # the same instance again after a dropped association: stored once either way
            if assoc is None or not assoc.is_established:
                assoc = ae.associate("127.0.0.1", port, ae_title=AET, evt_handlers=no_delay)
                if not assoc.is_established:
                    drops += 1
                    time.sleep(0.5)
                    continue
            if getattr(assoc.send_c_store(ds), "Status", None) == 0:
                break
            drops += 1
        uids.append(str(ds.StudyInstanceUID))
    if assoc is not None and assoc.is_established:
        assoc.release()
    ae.shutdown()
    return uids, drops


def generate(orthanc: Orthanc, studies: int, workers: int, seed: int) -> tuple[list[str], int]:
    """Fill the archive from ``workers`` processes: the stored Study Instance UIDs, and retries."""
    share = [studies // workers + (1 if w < studies % workers else 0) for w in range(workers)]
    jobs = [(orthanc.port, sum(share[:w]), share[w], seed) for w in range(workers)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        parts = pool.starmap(send_studies, jobs)
    return [uid for uids, _drops in parts for uid in uids], sum(drops for _uids, drops in parts)


def main() -> int:
    """Run the benchmark and print the figures; exit 1 when a target is missed."""
    args = parse_args()
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    scratch = None
    if args.reuse:
        folder = args.reuse
    elif args.keep:
        folder = args.keep
        folder.mkdir(parents=True, exist_ok=False)
    else:
        scratch = tempfile.TemporaryDirectory(prefix="study-bench-")
        folder = Path(scratch.name)
    orthanc = Orthanc(folder)
    try:
        return run(args, folder, orthanc)
    finally:
        orthanc.stop()
        if scratch is not None:
            scratch.cleanup()


def run(args: argparse.Namespace, folder: Path, orthanc: Orthanc) -> int:
    """Generate (unless reused), walk paged, query unpaged, evaluate rules; print everything."""
    truth_file = folder / "study-uids.txt"
    orthanc.start(args.limit)
    if args.reuse:
        truth = truth_file.read_text().split()
        print(f"archive: {len(truth)} studies reused from an earlier run")
    else:
        started = time.perf_counter()
        truth, retries = generate(orthanc, args.studies, args.workers, args.seed)
        took = time.perf_counter() - started
        truth_file.write_text("\n".join(truth))
        print(f"generated {len(truth)} one-image studies by C-STORE from {args.workers} processes "
              f"in {took:.0f} s ({len(truth) / took:.0f} studies/s; {retries} sends retried)")
    expected = set(truth)
    today = date.today()

    started = time.perf_counter()
    walk = walk_studies(orthanc.archive(args.limit), date(1990, 1, 1), today, today=today)
    paged_s = time.perf_counter() - started
    paged_ok = {s.study_uid for s in walk.studies} == expected and walk.complete
    print(f"paged walk (LimitFindResults {args.limit}): {len(walk.studies)} studies in {paged_s:.1f} s = "
          f"{len(walk.studies) / paged_s:,.0f} studies/s; {walk.queries} C-FINDs, "
          f"{len(walk.split_by_time)} ranges split by time; complete and exact: {paged_ok}")

    orthanc.stop()
    orthanc.start(0)
    started = time.perf_counter()
    with connect(orthanc.archive(None), [STUDY_ROOT_FIND]) as connection:
        answer = connection.find(study_identifier())
    records = [study_from_identifier(match, today) for match in answer.matches]
    unpaged_s = time.perf_counter() - started
    unpaged_ok = {s.study_uid for s in records} == expected
    print(f"one unpaged C-FIND (LimitFindResults 0): {len(records)} studies in {unpaged_s:.1f} s = "
          f"{len(records) / unpaged_s:,.0f} studies/s; exact: {unpaged_ok}")
    print(f"paged / unpaged listing rate: {unpaged_s / paged_s:.2f}x")

    holds = [Hold("bench hold: patient", patient_id="BENCH0000001"),
             Hold("bench hold: 2003", date_from=date(2003, 1, 1), date_to=date(2003, 12, 31))]
    rates = []
    for _ in range(3):
        started = time.perf_counter()
        decisions = evaluate(walk.studies, DEFAULT_RULES, today, holds)
        rates.append(len(decisions) / (time.perf_counter() - started))
    expired = sum(d.expired for d in decisions)
    spared = sum(d.spared for d in decisions)
    rate = max(rates)
    print(f"rule evaluation (default rules, 2 holds): {rate:,.0f} studies/s (best of 3; target "
          f"{RULE_TARGET:,.0f}); {expired} expired, {spared} spared by a hold")
    return 0 if paged_ok and unpaged_ok and rate >= RULE_TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
