"""What the benchmarks share: a scratch database, the app on it, bulk loading, timings.

Importing this module puts the project on ``sys.path``, so a script run as
``python bench/NAME.py`` imports it before the application's own modules.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import resource
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from flask import Flask
from sqlalchemy import Column, MetaData, Table, create_engine, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import create_app
from audit import record
from audit.trail.chain import canonical_details, next_link
from audit.trail.models import AuditEvent
from audit.trail.sealing import event_hash
from core import audit_sink
from core.config import load_config
from core.extensions import db

T = TypeVar("T")

EVENT_COLUMNS = ("seq", "occurred_at", "user_id", "username", "user_role", "client_address", "action",
                 "object_type", "object_id", "outcome", "details", "prev_hash", "hash", "key_id")

# An audit event's fields after ``seq`` and before the hashes: occurred_at, user_id, username,
# user_role, client_address, action, object_type, object_id, outcome, details (a mapping).
Event = tuple[datetime, int | None, str | None, str | None, str | None, str, str | None, str | None, str,
              Mapping[str, Any]]


@contextmanager
def scratch_database(database_url: str | None, name: str) -> Iterator[tuple[str, str | None]]:
    """Yield (url, schema) to benchmark in: a temporary SQLite file, or a scratch schema dropped after."""
    if not database_url:
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/{name}.db", None
        return
    if database_url.startswith("sqlite"):
        path = Path(database_url.removeprefix("sqlite:///"))
        if path.exists():
            print(f"refusing to benchmark into an existing file: {path}", file=sys.stderr)
            raise SystemExit(2)
        yield database_url, None
        return
    schema = f"{name}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(load_config({"PACSDESK_DATABASE_URL": database_url, "PACSDESK_SECRET_KEY": "bench",
                                       "PACSDESK_AUDIT_KEY": f"1:{secrets.token_hex(32)}",
                                       "PACSDESK_INSTANCE_PATH": tempfile.gettempdir()})[
        "SQLALCHEMY_DATABASE_URI"])
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield database_url, schema
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def make_app(url: str, instance: str | Path, schema: str | None = None,
             settings: Mapping[str, str] | None = None, config: Mapping[str, Any] | None = None) -> Flask:
    """The real application on ``url`` (in ``schema`` on PostgreSQL), from PACSDESK_* variables only."""
    for name in [n for n in os.environ if n.startswith("PACSDESK_")]:
        del os.environ[name]
    os.environ.update(PACSDESK_DATABASE_URL=url, PACSDESK_INSTANCE_PATH=str(instance),
                      PACSDESK_SECRET_KEY="bench", **(settings or {}))
    overrides = dict(config or {})
    if schema:
        overrides["SQLALCHEMY_ENGINE_OPTIONS"] = {
            "connect_args": {"options": f"-csearch_path={schema}"}, "pool_size": 2}
    return create_app(overrides)


def bulk_insert(model: type, rows: list[dict[str, Any]]) -> None:
    """Load rows fast in the session's transaction, below the ORM: COPY on PostgreSQL, executemany on SQLite.

    Benchmark data is loaded as a restore would, not through the services, so the audit hook
    (which watches the ORM session) does not see it.
    """
    if not rows:
        return
    if db.engine.dialect.name != "postgresql":
        db.session.connection().execute(insert(model.__table__), rows)
        return
    columns = list(rows[0])
    cursor = db.session.connection().connection.dbapi_connection.cursor()
    with cursor.copy(f"COPY {model.__tablename__} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def append_events(count: int, make_event: Callable[[int], Event], batch: int = 20_000) -> None:
    """Bulk-insert ``count`` correctly chained events after the chain's head, committing each batch.

    ``make_event(seq)`` gives the fields of the event at ``seq``; they are sealed with
    ``audit.trail.sealing.event_hash`` under the audit key in force, exactly as
    ``audit.record`` seals them.
    """
    link = next_link(db.session.connection())
    prev, key = link.prev_hash, link.key
    rows: list[dict[str, Any]] = []
    for seq in range(link.seq, link.seq + count):
        at, user_id, username, role, address, action, object_type, object_id, outcome, details = \
            make_event(seq)
        details_text = canonical_details(details)
        digest = event_hash(key, seq, at, user_id, username, role, address, action, object_type,
                            object_id, outcome, details_text, prev)
        rows.append(dict(zip(EVENT_COLUMNS, (seq, at, user_id, username, role, address, action,
                                             object_type, object_id, outcome, details_text, prev, digest,
                                             key.key_id), strict=True)))
        prev = digest
        if len(rows) == batch:
            bulk_insert(AuditEvent, rows)
            db.session.commit()
            rows = []
    bulk_insert(AuditEvent, rows)
    db.session.commit()


def analyze() -> None:
    """Refresh the planner's statistics, and on PostgreSQL the visibility map, as autovacuum would."""
    if db.engine.dialect.name != "postgresql":
        db.session.execute(text("ANALYZE"))
        db.session.commit()
        return
    tables = ", ".join(table.name for table in db.metadata.sorted_tables)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f"VACUUM ANALYZE {tables}"))


def timed_ms(call: Callable[[], T]) -> tuple[float, T]:
    """Milliseconds one call takes, and what it returned."""
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1000, result


def samples_ms(call: Callable[[], object], runs: int, warm_ups: int = 3) -> list[float]:
    """Milliseconds per call over ``runs`` calls, after ``warm_ups`` calls that are not counted."""
    for _ in range(warm_ups):
        call()
    return [timed_ms(call)[0] for _ in range(runs)]


def p95(samples: list[float]) -> float:
    """95th percentile (inclusive method: never beyond the slowest sample)."""
    return statistics.quantiles(samples, n=20, method="inclusive")[-1] if len(samples) > 1 else samples[0]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(target: Callable[..., Any], args: tuple[Any, ...], out: Any) -> None:
    """Run ``target`` and send back what it returned."""
    out.put(target(*args))


def in_fresh_process(target: Callable[..., T], *args: Any) -> T:
    """Run ``target(*args)`` in a newly spawned process (so its peak memory is its own); its result."""
    context = multiprocessing.get_context("spawn")
    out: Any = context.Queue()
    child = context.Process(target=_child, args=(target, args, out))
    child.start()
    try:
        while True:
            alive = child.is_alive()
            try:
                result = out.get(timeout=1)
                break
            except queue.Empty:
                if not alive:
                    raise SystemExit(f"the child process failed (exit {child.exitcode})") from None
    finally:
        child.join()
    return result


def plain_copy(model: type, name: str) -> Table:
    """A table with ``model``'s columns and no keys to other tables, indexes or triggers."""
    table = Table(name, MetaData(), *(Column(column.name, column.type, primary_key=column.primary_key)
                                      for column in model.__table__.columns))
    table.create(db.engine)
    return table


class OtherWriter(threading.Thread):
    """Beside a long write: records an audit event and commits every ``pause`` seconds, timing each."""

    def __init__(self, app: Flask, pause: float) -> None:
        super().__init__(daemon=True)
        audit_sink.register_actions(app, {"bench.event": "Benchmark event"})
        self.app = app
        self.pause = pause
        self.waits: list[float] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        """Write until told to stop."""
        with self.app.app_context():
            while not self.stop.wait(self.pause):
                started = time.perf_counter()
                try:
                    record("bench.event", user=None, details={"beside": "import"})
                    db.session.commit()
                except Exception as exc:  # counted and shown, as a user would see it
                    db.session.rollback()
                    self.errors.append(type(exc).__name__)
                self.waits.append(time.perf_counter() - started)
            db.session.remove()
