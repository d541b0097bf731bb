"""Anchors outside the database: the chained, keyed anchor log and the syslog copy."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from app import create_app
from audit import record
from audit.retention import engine as retention
from audit.retention.registry import record_classes
from audit.trail.anchors import ANCHOR_FILE, GENESIS, append_anchor, read_anchor_log
from audit.trail.keys import Keyring
from audit.trail.models import AuditCheckpoint
from core import audit_sink
from core.extensions import db
from tests.audit.compliance_fixtures import TEST_ACTIONS, at, write_events
from tests.helpers import free_port


def append(app, n: int) -> None:
    """Append ``n`` events, each in its own transaction."""
    with app.app_context():
        for i in range(n):
            record("test.event", object_type="thing", object_id=i, details={"i": i})
            db.session.commit()


def log_path(app) -> Path:
    """The anchor log the app writes."""
    return Path(app.config["PACSDESK_AUDIT_ANCHOR_DIR"]) / ANCHOR_FILE


def lines(app) -> list[dict]:
    """The anchor log's entries as a reader of the file sees them."""
    return [json.loads(line) for line in log_path(app).read_text().splitlines()]


def instance_key(app, key_id: int = 1) -> bytes:
    """A key from the instance's key file."""
    text = (Path(app.config["PACSDESK_INSTANCE_PATH"]) / "audit_key").read_text()
    return dict(line.split(":") for line in text.split())[str(key_id)].encode()


@pytest.fixture
def app_with(app_config: dict) -> Iterator[Callable[..., Flask]]:
    """Build the app on this test's database with extra settings (and the test actions)."""
    made: list[Flask] = []

    def build(**settings) -> Flask:
        application = create_app({**app_config, **settings})
        audit_sink.register_actions(application, TEST_ACTIONS)
        made.append(application)
        return application

    yield build
    for application in made:
        with application.app_context():
            db.session.remove()
            db.engine.dispose()


def test_each_verification_appends_a_chained_anchor_sealed_with_the_key(app, runner):
    append(app, 3)
    first = runner.invoke(args=["audit", "verify"])
    append(app, 2)
    second = runner.invoke(args=["audit", "verify"])
    assert first.exit_code == 0 and second.exit_code == 0, second.output
    assert "anchored as entry #1" in first.output and "anchored as entry #2" in second.output
    entries = lines(app)
    key = instance_key(app)
    assert [e["n"] for e in entries] == [1, 2]
    assert entries[0]["prev"] == GENESIS and entries[1]["prev"] == entries[0]["mac"]
    for entry in entries:
        sealed = json.dumps({k: v for k, v in entry.items() if k != "mac"}, sort_keys=True,
                            separators=(",", ":")).encode()
        assert entry["mac"] == hmac.new(key, sealed, hashlib.sha256).hexdigest()
    assert (entries[0]["kind"], entries[0]["seq"], entries[0]["count"], entries[0]["mode"]) == \
        ("head", 3, 3, "full")
    assert (entries[1]["seq"], entries[1]["count"], entries[1]["mode"], entries[1]["from_seq"]) == \
        (6, 6, "incremental", 3)
    assert entries[1]["hash"] in second.output
    assert stat.S_IMODE(log_path(app).stat().st_mode) == 0o600
    assert stat.S_IMODE(log_path(app).parent.stat().st_mode) == 0o700


def test_an_edited_anchor_is_named(app, runner):
    append(app, 3)
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0
    path = log_path(app)
    path.write_text(path.read_text().replace('"seq":3', '"seq":2'))
    outcome = runner.invoke(args=["audit", "verify"])
    assert outcome.exit_code == 1
    assert "anchor log entry #1 was altered: its keyed hash does not match" in outcome.output


def test_removed_first_anchors_are_named_by_a_full_walk(app, runner):
    append(app, 2)
    for _ in range(3):
        assert runner.invoke(args=["audit", "verify"]).exit_code == 0
    path = log_path(app)
    path.write_text("".join(path.read_text().splitlines(keepends=True)[1:]))
    outcome = runner.invoke(args=["audit", "verify", "--full"])
    assert outcome.exit_code == 1
    assert "the anchor log starts at entry #2, not #1" in outcome.output


def test_a_replaced_or_emptied_anchor_log_is_noticed(app, runner):
    append(app, 2)
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0
    log_path(app).unlink()
    outcome = runner.invoke(args=["audit", "verify"])
    assert outcome.exit_code == 1
    assert "lacks anchor #2, which the trail records as written (the log ends at #0)" in outcome.output


def test_a_cut_last_line_is_named_and_nothing_is_appended_after_it(app, runner):
    append(app, 2)
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0
    path = log_path(app)
    path.write_text(path.read_text()[:-20])
    outcome = runner.invoke(args=["audit", "verify"])
    assert outcome.exit_code == 1
    assert "the anchor log's last line is incomplete" in outcome.output
    with app.app_context(), pytest.raises(RuntimeError, match="last line is incomplete"):
        append_anchor(path, Keyring({1: instance_key(app)}), "head", 3, "a" * 64, 3)


def test_concurrent_writers_keep_one_anchor_chain(tmp_path):
    ring = Keyring({1: b"k" * 40})
    path = tmp_path / "anchors" / ANCHOR_FILE
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                append_anchor(path, ring, "head", n * 100 + i, f"{i:064x}", i)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    log = read_anchor_log(path, ring)
    assert not errors and log.problem is None
    assert [a.n for a in log.entries] == list(range(1, 101))


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
def test_each_anchor_goes_to_the_log_collector_as_rfc5424(app_with, protocol):
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    port = free_port(kind)
    received: list[bytes] = []
    with socket.socket(socket.AF_INET, kind) as collector:
        collector.bind(("127.0.0.1", port))
        collector.settimeout(30)
        if protocol == "tcp":
            collector.listen(1)

        def listen() -> None:
            if protocol == "udp":
                received.append(collector.recvfrom(65535)[0])
                return
            connection, _ = collector.accept()
            with connection:
                data = b""
                while chunk := connection.recv(65535):
                    data += chunk
                received.append(data)

        thread = threading.Thread(target=listen)
        thread.start()
        app = app_with(PACSDESK_AUDIT_SYSLOG=(protocol, "127.0.0.1", port))
        append(app, 2)
        outcome = app.test_cli_runner().invoke(args=["audit", "verify"])
        thread.join(timeout=30)
    assert outcome.exit_code == 0, outcome.output
    message = received[0].decode("ascii")
    line = log_path(app).read_text().strip()
    if protocol == "tcp":
        length, _, message = message.partition(" ")
        assert int(length) == len(message)
    header = re.match(r"<109>1 (\S+) (\S+) pacsdesk (\d+) audit-anchor - ", message)
    assert header, message
    assert header.group(1) == json.loads(line)["at"]
    assert message[header.end():] == line


def test_an_unreachable_collector_leaves_the_file_anchor_and_exits_2(app_with):
    app = app_with(PACSDESK_AUDIT_SYSLOG=("tcp", "127.0.0.1", free_port(socket.SOCK_STREAM)))
    append(app, 1)
    outcome = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert outcome.exit_code == 2
    assert outcome.output.startswith("audit trail intact: 1 events")
    assert "anchor #1 is in the anchor log but could not be sent to the syslog collector" \
        in outcome.output
    assert [e["n"] for e in lines(app)] == [1]


def set_policy(app, key: str, years: int) -> None:
    """Enable a retention policy."""
    with app.app_context():
        rc = record_classes(app)[key]
        retention.update_policy(key, years, 0, 0, rc.anchors[0], True)
        db.session.commit()


def test_a_retention_purge_is_sealed_and_anchored_with_its_run(app, runner, frozen):
    write_events(app, at(2026, 1), 5)
    write_events(app, at(2031, 1), 3)
    set_policy(app, "audit_events", 6)
    with app.app_context():
        report = retention.run_retention("tester")
        checkpoint = db.session.execute(select(AuditCheckpoint)).scalar_one()
        cp = (checkpoint.from_seq, checkpoint.purged_through_seq, checkpoint.purged_count,
              checkpoint.run_id, checkpoint.key_id)
    assert cp == (1, 5, 5, report.run_id, 1)
    purge = [e for e in lines(app) if e["kind"] == "purge"]
    assert [(e["from_seq"], e["seq"], e["count"], e["run"]) for e in purge] == [(1, 5, 5, report.run_id)]
    outcome = runner.invoke(args=["audit", "verify", "--full"])
    assert outcome.exit_code == 0, outcome.output


def test_a_purge_missing_from_the_anchor_log_is_not_accepted(app, runner, frozen):
    write_events(app, at(2026, 1), 5)
    write_events(app, at(2031, 1), 3)
    set_policy(app, "audit_events", 6)
    with app.app_context():
        retention.run_retention("tester")
    log_path(app).rename(log_path(app).with_suffix(".moved"))
    outcome = runner.invoke(args=["audit", "verify", "--full"])
    assert outcome.exit_code == 1
    assert ("events before #6 were purged, but the anchor log has no entry for a purge through #5"
            in outcome.output)
