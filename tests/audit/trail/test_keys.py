"""Audit keys: where they come from, that they never reach the database, and their rotation."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select, text

from app import create_app
from audit import record
from audit.trail.keys import AuditKeyError
from audit.trail.models import AuditEvent
from audit.trail.sealing import event_payload, iso_utc
from core import audit_sink
from core.config import ConfigError, load_config
from core.extensions import db
from tests.audit.compliance_fixtures import TEST_ACTIONS

ENV_KEY_1 = "k1-" + "a" * 40
ENV_KEY_2 = "k2-" + "b" * 40


def append(app, n: int) -> None:
    """Append ``n`` events, each in its own transaction."""
    with app.app_context():
        for i in range(n):
            record("test.event", object_type="thing", object_id=i, details={"i": i})
            db.session.commit()


def events(app) -> list[AuditEvent]:
    """Every event, in chain order."""
    with app.app_context():
        found = list(db.session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars())
        db.session.expunge_all()
        return found


def sealed_with(event: AuditEvent, key: bytes) -> bool:
    """Whether ``event``'s hash is the HMAC-SHA256 of its fields under ``key``."""
    payload = event_payload(event.seq, iso_utc(event.occurred_at), event.user_id, event.username,
                            event.user_role, event.client_address, event.action, event.object_type,
                            event.object_id, event.outcome, event.details, event.prev_hash,
                            event.key_id)
    return event.hash == hmac.new(key, payload, hashlib.sha256).hexdigest()


def file_keys(app) -> dict[int, bytes]:
    """The keyring file's keys."""
    text_ = Path(app.config["PACSDESK_AUDIT_KEY_FILE"]).read_text()
    return {int(i): k.encode() for i, k in (line.split(":") for line in text_.split())}


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


def test_the_key_is_generated_once_into_the_instance_folder_owner_only(tmp_path):
    instance = tmp_path / "instance"
    first = load_config({"PACSDESK_INSTANCE_PATH": str(instance)})
    key_file = instance / "audit_key"
    content = key_file.read_text()
    assert re.fullmatch(r"1:[0-9a-f]{64}\n", content)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert first["PACSDESK_AUDIT_KEY_FILE"] == str(key_file)
    assert (instance / "secret_key").read_text() not in content
    load_config({"PACSDESK_INSTANCE_PATH": str(instance)})
    assert key_file.read_text() == content


def test_a_configured_key_is_used_and_no_key_file_is_written(app_with, tmp_path):
    app = app_with(PACSDESK_AUDIT_KEY=f"1:{ENV_KEY_1}")
    append(app, 2)
    assert all(sealed_with(event, ENV_KEY_1.encode()) for event in events(app))
    assert not (Path(app.config["PACSDESK_INSTANCE_PATH"]) / "audit_key").exists()
    with app.app_context():
        stored = " ".join(map(str, db.session.execute(text("SELECT * FROM audit_event")).all()))
    assert ENV_KEY_1 not in stored


@pytest.mark.parametrize(("value", "words"), [
    ("1:tiny-secret", "entry 1: key 1 is shorter than 32 characters"),
    (f"1:{ENV_KEY_1},1:{ENV_KEY_2}", "entry 2: key id 1 appears twice"),
    (f"{ENV_KEY_1},{ENV_KEY_2}", "entry 1 has no id"),
    (f"0:{ENV_KEY_1}", "entry 1: the key id must be from 1 to"),
    (f"one:{ENV_KEY_1}", "entry 1 must look like id:key"),
])
def test_a_bad_key_is_refused_naming_the_variable_never_the_key(tmp_path, value, words):
    with pytest.raises(ConfigError) as caught:
        load_config({"PACSDESK_INSTANCE_PATH": str(tmp_path), "PACSDESK_AUDIT_KEY": value})
    message = str(caught.value)
    assert message.startswith("PACSDESK_AUDIT_KEY: ") and words in message
    assert ENV_KEY_1 not in message and ENV_KEY_2 not in message and "tiny-secret" not in message


def test_a_missing_key_file_is_refused_at_start(tmp_path):
    with pytest.raises(ConfigError, match=r"^PACSDESK_AUDIT_KEY_FILE: cannot read the audit key file"):
        load_config({"PACSDESK_INSTANCE_PATH": str(tmp_path),
                     "PACSDESK_AUDIT_KEY_FILE": str(tmp_path / "mounted" / "audit_key")})


def test_rotation_writes_a_new_key_records_it_and_old_events_still_verify(app, runner):
    append(app, 3)
    rotated = runner.invoke(args=["audit", "rotate-key"])
    assert rotated.exit_code == 0, rotated.output
    assert "audit key #2 generated into the key file and in force from event #4" in rotated.output
    append(app, 2)
    keys = file_keys(app)
    assert sorted(keys) == [1, 2]
    assert stat.S_IMODE(Path(app.config["PACSDESK_AUDIT_KEY_FILE"]).stat().st_mode) == 0o600
    trail = events(app)
    assert [e.key_id for e in trail] == [1, 1, 1, 2, 2, 2]
    assert all(sealed_with(e, keys[e.key_id]) for e in trail)
    rotation = trail[3]
    assert rotation.action == "audit.key_rotated"
    assert json.loads(rotation.details) == {"key_id": 2, "previous_key_id": 1, "generated": True}
    assert all(k.decode() not in e.details for e in trail for k in keys.values())
    outcome = runner.invoke(args=["audit", "verify", "--full"])
    assert outcome.exit_code == 0 and "intact: 6 events" in outcome.output


def test_a_running_process_picks_up_a_key_rotated_by_another(app, app_with, runner):
    other = app_with()  # started before the rotation, with only key 1 in memory
    append(other, 1)
    assert runner.invoke(args=["audit", "rotate-key"]).exit_code == 0
    append(other, 1)
    assert [e.key_id for e in events(app)] == [1, 2, 2]
    assert runner.invoke(args=["audit", "verify", "--full"]).exit_code == 0


def test_keys_from_the_environment_are_rotated_after_every_process_has_the_new_one(app_with):
    first = app_with(PACSDESK_AUDIT_KEY=f"1:{ENV_KEY_1}")
    append(first, 1)
    refused = first.test_cli_runner().invoke(args=["audit", "rotate-key"])
    assert refused.exit_code == 1
    assert "has no key newer than #1: add an entry #2:KEY there (pacsdesk audit new-key" \
        in refused.output
    printed = first.test_cli_runner().invoke(args=["audit", "new-key"]).output.strip()
    assert re.fullmatch(r"2:[0-9a-f]{64}", printed)
    both = app_with(PACSDESK_AUDIT_KEY=f"1:{ENV_KEY_1},{printed}")
    append(both, 1)
    assert [e.key_id for e in events(both)] == [1, 1], "a new key is used only after the rotation"
    rotated = both.test_cli_runner().invoke(args=["audit", "rotate-key"])
    assert rotated.exit_code == 0 and "audit key #2 in force from event #3" in rotated.output
    append(both, 1)
    assert [e.key_id for e in events(both)] == [1, 1, 2, 2]
    assert both.test_cli_runner().invoke(args=["audit", "verify", "--full"]).exit_code == 0
    assert len([e for e in events(both) if e.action == "test.event"]) == 3


def test_a_retired_key_cannot_extend_the_trail(app_with):
    append(app_with(PACSDESK_AUDIT_KEY=f"1:{ENV_KEY_1}"), 1)
    app = app_with(PACSDESK_AUDIT_KEY=f"1:{ENV_KEY_1},2:{ENV_KEY_2}")
    assert app.test_cli_runner().invoke(args=["audit", "rotate-key"]).exit_code == 0
    head = events(app)[-1]
    payload = event_payload(head.seq + 1, "2026-03-01T02:00:00.000000Z", None, "mallory", None, None,
                            "user.login", None, None, "success", "{}", head.hash, 1)
    with app.app_context():  # someone who kept the old key seals an event with it
        db.session.execute(text(
            "INSERT INTO audit_event (seq, occurred_at, username, action, outcome, details, prev_hash, "
            "hash, key_id) VALUES (:s, :at, 'mallory', 'user.login', 'success', '{}', :p, :h, 1)"),
            {"s": head.seq + 1, "at": "2026-03-01 02:00:00.000000", "p": head.hash,
             "h": hmac.new(ENV_KEY_1.encode(), payload, hashlib.sha256).hexdigest()})
        db.session.commit()
    outcome = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert outcome.exit_code == 1
    assert (f"event #{head.seq + 1} is sealed with audit key #1, retired when the trail moved to "
            "key #2") in outcome.output


def test_a_key_switch_without_a_recorded_rotation_is_refused(app_with):
    append(app_with(PACSDESK_AUDIT_KEY=f"1:{ENV_KEY_1}"), 2)
    app = app_with(PACSDESK_AUDIT_KEY=f"1:{ENV_KEY_1},2:{ENV_KEY_2}")
    head = events(app)[-1]
    payload = event_payload(head.seq + 1, "2026-03-01T02:00:00.000000Z", None, "mallory", None, None,
                            "user.login", None, None, "success", "{}", head.hash, 2)
    with app.app_context():
        db.session.execute(text(
            "INSERT INTO audit_event (seq, occurred_at, username, action, outcome, details, prev_hash, "
            "hash, key_id) VALUES (:s, :at, 'mallory', 'user.login', 'success', '{}', :p, :h, 2)"),
            {"s": head.seq + 1, "at": "2026-03-01 02:00:00.000000", "p": head.hash,
             "h": hmac.new(ENV_KEY_2.encode(), payload, hashlib.sha256).hexdigest()})
        db.session.commit()
    outcome = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert outcome.exit_code == 1
    assert "moves from audit key #1 to #2 without a recorded key rotation" in outcome.output


def test_without_the_key_in_force_nothing_is_recorded_and_verification_says_why(app_with):
    writer = app_with(PACSDESK_AUDIT_KEY=f"1:{ENV_KEY_1}")
    append(writer, 2)
    stranger = app_with(PACSDESK_AUDIT_KEY=f"2:{ENV_KEY_2}")
    with stranger.app_context(), pytest.raises(AuditKeyError,
                                               match="audit key #1, which seals the newest event"):
        record("test.event")
    outcome = stranger.test_cli_runner().invoke(args=["audit", "verify"])
    assert outcome.exit_code == 1
    assert "event #1 is sealed with audit key #1, which is not in the keyring" in outcome.output
