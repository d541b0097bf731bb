"""`pacsdesk backup` and `pacsdesk restore`: round trips on SQLite and PostgreSQL, damaged files."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import subprocess
import sys
import tarfile
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from app import create_app
from audit.trail.models import AuditEvent
from core.auth.models import User
from core.extensions import db
from helpdesk.attachments import Upload
from helpdesk.models import Category, Ticket, TicketAttachment
from helpdesk.services import NewTicket, create_ticket
from tests.helpers import require_binary, require_postgres

PACSDESK = Path(sys.executable).with_name("pacsdesk")
SCREENSHOT = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


def pacsdesk(instance: Path, database_url: str, *args: str) -> subprocess.CompletedProcess:
    """Run `pacsdesk ARGS` on an instance folder and database of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACSDESK_")}
    env.update(PACSDESK_INSTANCE_PATH=str(instance), PACSDESK_DATABASE_URL=database_url)
    instance.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.run([str(PACSDESK), *args], env=env, capture_output=True, text=True, timeout=300,
                          cwd=instance.parent)


def _app(instance: Path, database_url: str):
    """The app of an instance, as `pacsdesk` would build it."""
    return create_app({"PACSDESK_INSTANCE_PATH": str(instance), "SQLALCHEMY_DATABASE_URI": database_url})


def _orm_url(database_url: str) -> str:
    return database_url.replace("postgresql://", "postgresql+psycopg://", 1)


def _source_instance(instance: Path, database_url: str) -> None:
    """An installed instance: a ticket with an attachment, a client certificate, an anchored trail."""
    assert pacsdesk(instance, database_url, "setup").returncode == 0
    app = _app(instance, _orm_url(database_url))
    with app.app_context():
        admin = db.session.execute(select(User)).scalars().first()
        category = db.session.execute(select(Category.id).limit(1)).scalar_one()
        create_ticket(NewTicket(title="Priors missing in reading room 2", description="CT priors absent.",
                                category_id=category, impact="one", urgency="hours"),
                      admin, [Upload("screen.png", SCREENSHOT)])
        db.session.commit()
        db.engine.dispose()
    (instance / "dicom_client.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n"
                                               "-----END CERTIFICATE-----\n")
    verified = pacsdesk(instance, database_url, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _round_trip(tmp_path: Path, source_url: str, target_url: str) -> str:
    """Back up a source instance, restore it into an empty one, verify the trail there."""
    source, target = tmp_path / "source" / "instance", tmp_path / "target" / "instance"
    _source_instance(source, source_url)
    backup = tmp_path / "pacsdesk.backup"
    made = pacsdesk(source, source_url, "backup", str(backup))
    assert made.returncode == 0, made.stderr

    restored = pacsdesk(target, target_url, "restore", str(backup))
    verified = pacsdesk(target, target_url, "audit", "verify", "--full")

    assert restored.returncode == 0, restored.stderr
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("audit trail intact")
    for name in ("secret_key", "audit_key", "dicom_client.pem"):
        assert (target / name).read_bytes() == (source / name).read_bytes(), name
    assert (target / "anchors" / "audit-anchors.log").read_bytes().startswith(
        (source / "anchors" / "audit-anchors.log").read_bytes())
    app = _app(target, _orm_url(target_url))
    with app.app_context():
        ticket = db.session.execute(select(Ticket)).scalar_one()
        assert ticket.title == "Priors missing in reading room 2"
        assert db.session.execute(select(TicketAttachment.data)).scalar_one() == SCREENSHOT
        actions = list(db.session.execute(select(AuditEvent.action).order_by(AuditEvent.seq)).scalars())
        assert actions[-2:] == ["system.restore", "audit.verify"]
        db.engine.dispose()
    with _app(source, _orm_url(source_url)).app_context():
        assert db.session.execute(select(AuditEvent.action).order_by(AuditEvent.seq.desc())).scalar() \
            == "system.backup"
        recorded = json.loads(db.session.execute(select(AuditEvent.details).order_by(
            AuditEvent.seq.desc())).scalars().first())
        assert recorded["sha256"] == hashlib.sha256(backup.read_bytes()).hexdigest()  # the file as written
        db.engine.dispose()
    again = pacsdesk(target, target_url, "restore", str(backup))
    assert again.returncode == 1 and "refusing to restore into an instance that holds data" in again.stderr
    return made.stdout


@pytest.mark.timeout(900)   # six `pacsdesk` processes, one of them building the schema by migrations
def test_a_sqlite_instance_round_trips_with_its_keys_attachments_and_anchors(tmp_path):
    out = _round_trip(tmp_path, f"sqlite:///{tmp_path / 'source.db'}", f"sqlite:///{tmp_path / 'target.db'}")
    assert "pg_dump" not in out


@pytest.fixture
def two_postgres_databases() -> tuple[str, str]:
    """Two empty PostgreSQL databases, dropped afterwards."""
    base = make_url(require_postgres())
    require_binary("pg_dump")
    names = [f"pacsdesk_backup_{secrets.token_hex(4)}_{side}" for side in ("src", "dst")]
    admin = base.set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    yield tuple(base.set(database=n).render_as_string(hide_password=False) for n in names)
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_a_postgresql_instance_round_trips_through_pg_dump(tmp_path, two_postgres_databases):
    source_url, target_url = two_postgres_databases
    out = _round_trip(tmp_path, source_url, target_url)
    assert "PostgreSQL: running pg_dump -Fc" in out


def _sqlite_backup(tmp_path: Path) -> tuple[Path, Path, str, Path]:
    """A SQLite source instance backed up: (source, empty target instance, its database URL, backup)."""
    source, target = tmp_path / "source" / "instance", tmp_path / "target" / "instance"
    source_url = f"sqlite:///{tmp_path / 'source.db'}"
    _source_instance(source, source_url)
    backup = tmp_path / "pacsdesk.backup"
    assert pacsdesk(source, source_url, "backup", str(backup)).returncode == 0
    return source, target, f"sqlite:///{tmp_path / 'target.db'}", backup


def test_a_backup_ends_with_its_manifest_and_one_with_the_manifest_first_still_restores(tmp_path):
    source, target, target_url, backup = _sqlite_backup(tmp_path)
    with tarfile.open(backup) as archive:
        members = [(info, archive.extractfile(info).read()) for info in archive]  # type: ignore[union-attr]
    # the dump is read once, hashed on its way in; the manifest that holds its hash follows it
    names = [info.name for info, _ in members]
    assert names[0] == "database.sqlite" and names[-2:] == ["manifest.json", "manifest.sha256"]
    earlier = tmp_path / "earlier.backup"  # laid out as backups were before: the manifest first
    with tarfile.open(earlier, "w") as archive:
        for info, data in sorted(members, key=lambda member: not member[0].name.startswith("manifest")):
            archive.addfile(info, io.BytesIO(data))

    restored = pacsdesk(target, target_url, "restore", str(earlier))

    assert restored.returncode == 0, restored.stderr
    assert (target / "audit_key").read_bytes() == (source / "audit_key").read_bytes()


def test_a_damaged_backup_is_refused_before_anything_is_written(tmp_path):
    source, target, target_url, backup = _sqlite_backup(tmp_path)
    data = bytearray(backup.read_bytes())
    data[len(data) // 2] ^= 0xFF
    backup.write_bytes(bytes(data))

    refused = pacsdesk(target, target_url, "restore", str(backup))

    assert refused.returncode == 1 and "is damaged" in refused.stderr
    assert (target / "audit_key").read_bytes() != (source / "audit_key").read_bytes()
    assert not (target / "dicom_client.pem").exists()
    with _app(target, target_url).app_context():
        assert db.inspect(db.engine).get_table_names() == []
        db.engine.dispose()


def test_a_file_with_an_oversized_member_is_refused_without_reading_it(tmp_path):
    bogus = tmp_path / "bogus.backup"
    header = tarfile.TarInfo("instance/audit_key")
    header.size = 10 << 30  # claims 10 GiB; only the header is there
    bogus.write_bytes(header.tobuf())
    target, target_url = tmp_path / "target" / "instance", f"sqlite:///{tmp_path / 'target.db'}"

    refused = pacsdesk(target, target_url, "restore", str(bogus))

    assert refused.returncode == 1
    assert "is damaged or not a PACS Desk backup: instance/audit_key is 10737418240 bytes" in refused.stderr
    with _app(target, target_url).app_context():
        assert db.inspect(db.engine).get_table_names() == []
        db.engine.dispose()
