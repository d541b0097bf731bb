"""Test helpers: requirement checks that skip locally but fail where CI demands them."""

from __future__ import annotations

import os
import random
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import text

from core.extensions import db

ANSWER_TIMEOUT = 10.0
"""Timeout for a call that a test expects to be answered: a loaded machine must not make it a timeout."""

OVERRUN = 4.0
"""Seconds a timed-out call may end after its promise in a test, since two suites share two cores in CI.

Every silent or trickling peer in the tests holds far longer than that, so a call that ignored its
timeout still fails; the benchmarks measure how closely the promise is kept.
"""


PORT_FLOOR = 20000
_PORTS = random.Random()  # not the global generator: the random test order seeds it alike in both suites
_handed_out: set[int] = set()


def _ephemeral_floor() -> int:
    """The lowest port the kernel hands out by itself (to bind(0) and to outgoing connections)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port nothing is bound to, below the ephemeral range, never the same twice in a run.

    A port from bind(0) lies in the ephemeral range, where another process (in CI, the other suite's
    database connections) can take it as a local port before the test's server binds it. Below that
    range only an explicit bind can, and each suite picks its ports at random.
    """
    ceiling = _ephemeral_floor()
    for _ in range(200):
        port = _PORTS.randrange(PORT_FLOOR, ceiling) if ceiling > PORT_FLOOR + 1000 else 0
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = probe.getsockname()[1]
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port found")


def require(condition: bool, reason: str, env_flag: str) -> None:
    """Skip when ``condition`` is false, unless ``env_flag`` is set: then fail."""
    if condition:
        return
    if os.environ.get(env_flag) == "1":
        pytest.fail(f"{reason} ({env_flag}=1 makes this a failure, not a skip)")
    pytest.skip(reason)


def require_postgres() -> str:
    """The PostgreSQL test URL, or skip (PACSDESK_TEST_DATABASE_URL unset)."""
    url = os.environ.get("PACSDESK_TEST_DATABASE_URL")
    require(bool(url), "PACSDESK_TEST_DATABASE_URL is not set", "PACSDESK_REQUIRE_POSTGRES")
    assert url
    return url


def require_binary(name: str) -> str:
    """Path of an external program (dcmtk, Orthanc, chromium, slapd), or skip; /usr/sbin counts too."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    require(path is not None, f"{name} is not installed", "PACSDESK_REQUIRE_INTEGRATION")
    assert path
    return path


def fixture_event(object_type: str, *object_ids: object) -> None:
    """Audit rows a fixture wrote directly (the audit hook refuses unaudited changes), in its transaction."""
    from audit import record

    record("test.fixture", object_type=object_type, user=None, username="test-fixture",
           covers=[str(i) for i in object_ids])


@contextmanager
def inserts_refused(app: Flask, table: str, when: str) -> Iterator[None]:
    """Make the database itself refuse new rows of ``table`` for which ``when`` (SQL on NEW) holds."""
    with app.app_context():
        sqlite = db.engine.dialect.name == "sqlite"
        if sqlite:
            db.session.execute(text(f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} WHEN {when} "
                                    f"BEGIN SELECT RAISE(ABORT, 'refused'); END"))
        else:
            db.session.execute(text(f"CREATE OR REPLACE FUNCTION refuse_{table}() RETURNS trigger AS $$ "
                                    f"BEGIN IF {when} THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; "
                                    f"END $$ LANGUAGE plpgsql"))
            db.session.execute(text(f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                                    f"FOR EACH ROW EXECUTE FUNCTION refuse_{table}()"))
        db.session.commit()
    try:
        yield
    finally:
        with app.app_context():
            db.session.execute(text(f"DROP TRIGGER refuse_{table}" + ("" if sqlite else f" ON {table}")))
            db.session.commit()
