"""Asset import benchmark: a 50,000-row inventory file, and how long other writers wait for it.

Imports a file of workstations and DICOM nodes into an empty inventory as the web page does with
a large file: through the import job (check every row, then create the assets, their history
and an audit event per part of the file, committing part by part). Beside it, in the same run,
the same assets and history lines are inserted plainly, with nothing checked, sealed or
chained: the import is compared with that baseline. While the import runs, another writer
records an audit event every 0.2 s, as a help desk page saving a ticket would; its longest wait
is what a user saving a change during the import waits.

    python bench/asset_import_bench.py                      # temporary SQLite file
    python bench/asset_import_bench.py --database-url postgresql://user@host/db

On PostgreSQL the benchmark works in a scratch schema that it drops afterwards.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

import benchlib  # first: it puts the project on sys.path
from sqlalchemy import func, select

from audit.trail.chain import verify_chain
from audit.trail.models import AuditEvent, ObjectChange
from core.extensions import db
from core.forms import carry_file
from core.jobs.models import Job
from core.jobs.queue import enqueue
from core.jobs.worker import work_until_idle
from core.timeutil import utcnow
from inventory.jobs import IMPORT_JOB
from inventory.models import Asset, AssetKind, AssetStatus, DicomType

ROWS = 50_000
RATIO_TARGET = 15.0  # the whole import job (every row checked first) against plain inserts
WAIT_TARGET_S = 5.0  # the longest another writer may wait while the import runs
OTHER_WRITER_PAUSE_S = 0.2
HEADER = ("asset_tag,name,kind,status,location,department,manufacturer,model,serial_number,"
          "hostname,ip_address,ae_title,port,tls,dicom_type,warranty_end")


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="sqlite:///file.db or postgresql://... "
                        "(default: a temporary SQLite file)")
    parser.add_argument("--rows", type=int, default=ROWS, help=f"assets in the file (default {ROWS:,})")
    return parser.parse_args()


def inventory_file(rows: int) -> bytes:
    """Half workstations, half DICOM nodes, each node on an address of its own."""
    lines = [HEADER]
    for i in range(rows):
        if i % 2:
            lines.append(f"WS-{i:06d},Station {i},workstation,in_service,Room {i % 40},Radiology,Dell,"
                         f"Precision,SN{i},ws{i}.h.example,,,,,,2031-01-01")
        else:
            address = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
            lines.append(f"N-{i:06d},Node {i},dicom_node,in_service,Room {i % 40},Radiology,GE,Revo,SN{i},"
                         f"n{i}.h.example,{address},AE{i},104,no,CT,2031-01-01")
    return ("\n".join(lines) + "\n").encode()


def plain_inserts(rows: int) -> float:
    """Seconds to insert the import's rows plainly: the assets and a "created" history line each."""
    now = utcnow()
    assets = benchlib.plain_copy(Asset, "bench_plain_asset")
    history = benchlib.plain_copy(ObjectChange, "bench_plain_object_change")
    started = time.perf_counter()
    connection = db.session.connection()
    node: dict[str, Any] = {"kind": AssetKind.DICOM_NODE, "ae_title": "AE", "port": 104,
                            "dicom_type": DicomType.MODALITY, "modality": "CT"}
    workstation: dict[str, Any] = {"kind": AssetKind.WORKSTATION, "ae_title": None, "port": None,
                                   "dicom_type": None, "modality": None}
    connection.execute(assets.insert(), [
        {"id": i + 1, "asset_tag": f"T-{i:06d}", "name": f"Asset {i}", "status": AssetStatus.IN_SERVICE,
         "location": "Room", "department": "Radiology", "manufacturer": "GE", "model": "Revo",
         "serial_number": f"SN{i}", "hostname": f"h{i}.h.example", "ip_address": "", "os_version": "",
         "notes": "", "holds_phi": False, "tls": False, "verify_enabled": True, "created_at": now,
         "updated_at": now, **(workstation if i % 2 else node)} for i in range(rows)])
    connection.execute(history.insert(), [
        {"id": i + 1, "object_type": "asset", "object_id": i + 1, "changed_at": now, "field": "created",
         "old_value": None, "new_value": f"T-{i:06d}"} for i in range(rows)])
    db.session.commit()
    return time.perf_counter() - started


def run(url: str, schema: str | None, rows: int) -> bool:
    """Measure and print; True when the targets are met."""
    with tempfile.TemporaryDirectory() as instance:
        app = benchlib.make_app(url, instance, schema)
        with app.app_context():
            db.create_all()
            raw = inventory_file(rows)
            plain = plain_inserts(rows)
            writer = benchlib.OtherWriter(app, OTHER_WRITER_PAUSE_S)
            writer.start()
            time.sleep(1)
            started = time.perf_counter()
            enqueue(IMPORT_JOB, {"data": carry_file(raw), "source": "bench"})
            db.session.commit()
            [(job_id, status)] = work_until_idle(app, [IMPORT_JOB])
            elapsed = time.perf_counter() - started
            time.sleep(1)
            writer.stop.set()
            writer.join()
            job = db.session.get(Job, job_id)
            summary = (job.result or {}).get("summary", job.error) if job else "the job is gone"
            imported = db.session.scalar(select(func.count(Asset.id)))
            parts = db.session.scalar(select(func.count(AuditEvent.seq))
                                      .where(AuditEvent.action == "asset.import"))
            intact = verify_chain().ok
            print(f"database:               {db.engine.dialect.name}")
            print(f"file:                   {rows:,} assets (half DICOM nodes), an empty inventory")
            print(f"import job:             {elapsed:8.2f} s  ({status.value}: {summary}; {parts} audited "
                  f"part(s); chain intact={intact})")
            print(f"plain inserts, same rows: {plain:6.2f} s  (assets and their history, nothing checked, "
                  f"sealed or chained)")
            ratio = elapsed / plain
            longest = max(writer.waits)
            print(f"ratio import/plain:     {ratio:8.1f}   (target <= {RATIO_TARGET:.0f})")
            print(f"another writer:         longest wait {longest:.2f} s over {len(writer.waits)} writes "
                  f"(target <= {WAIT_TARGET_S:.0f} s), {len(writer.errors)} failed "
                  f"({', '.join(sorted(set(writer.errors))) or 'none'})")
            print(f"load average:           {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
                  f"on {os.cpu_count()} CPUs")
            db.session.remove()
            db.engine.dispose()
    met = (intact and imported == rows and ratio <= RATIO_TARGET and longest <= WAIT_TARGET_S
           and not writer.errors)
    print("targets:                " + ("met" if met else "MISSED"))
    return met


def main() -> int:
    """Entry point; exit status 1 when a target is missed."""
    args = parse_args()
    with benchlib.scratch_database(args.database_url, "asset_import_bench") as (url, schema):
        return 0 if run(url, schema, args.rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
