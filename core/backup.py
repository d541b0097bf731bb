"""`pacsdesk backup FILE` and `pacsdesk restore FILE`: the database, the instance's keys and the anchors.

A backup is one tar file: the database (SQLite through its online backup API, PostgreSQL as
``pg_dump -Fc``), the instance folder's keys (``secret_key``, ``audit_key``, any ``*_key``,
``*.key`` or ``*.pem``) and the audit anchor log, with a manifest of every member's SHA-256 and
the manifest's own checksum. Attachments live in the database and travel with it. A restore
reads and checks the whole file before it writes anything, refuses an instance that already
holds data, upgrades the schema and records ``system.restore`` in the restored trail. The database
member is streamed through files in chunks, never held in memory whole, so the size of a backup
is bounded by the disk, not by the memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import click
from flask import current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from core import audit_sink
from core.extensions import db
from core.timeutil import utcnow

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {"system.backup": "Backup written", "system.restore": "Instance restored from a backup"}

FORMAT = "pacsdesk-backup"
VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.sha256"
SQLITE_MEMBER = "database.sqlite"
PG_MEMBER = "database.pgdump"
KEY_NAMES = ("secret_key", "audit_key")
KEY_SUFFIXES = ("_key", ".key", ".pem")
ANCHOR_PREFIX = "anchors/"
INSTANCE_PREFIX = "instance/"
DATABASE_MEMBERS = (SQLITE_MEMBER, PG_MEMBER)
CHUNK = 1 << 20
SMALL_MEMBER_MAX = 64 << 20  # any member but the database is read into memory


class BackupError(click.ClickException):
    """A backup or restore that cannot go on; the message says why."""


@dataclass(frozen=True)
class Checked:
    """A backup file whose every member matched its manifest: the database unpacked to a file."""

    manifest: dict
    database: Path
    members: dict[str, bytes]


def _sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _copy_hashing(source: IO[bytes], target: IO[bytes] | None = None) -> dict:
    """Read ``source`` to its end in chunks (copying to ``target``); its SHA-256 and size."""
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if target is not None:
            target.write(chunk)
    return {"sha256": digest.hexdigest(), "size": size}


def _dialect() -> str:
    """'sqlite' or 'postgresql'."""
    return str(db.engine.dialect.name)


def _sqlite_path() -> Path:
    """The SQLite database file."""
    database = make_url(current_app.config["SQLALCHEMY_DATABASE_URI"]).database
    if not database or database == ":memory:":
        raise BackupError("the SQLite database is in memory: there is nothing to back up or restore")
    return Path(database).resolve()


def _libpq_url() -> str:
    """The PostgreSQL URL as pg_dump and pg_restore take it."""
    url = make_url(current_app.config["SQLALCHEMY_DATABASE_URI"]).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def _pg_tool(name: str) -> str:
    """Path of pg_dump or pg_restore, or a clear error."""
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed (Debian: apt install postgresql-client)")
    return found


def _run(argv: list[str], what: str) -> None:
    """Run a PostgreSQL tool; its first error line on failure (never the password)."""
    done = subprocess.run(argv, capture_output=True, text=True)  # noqa: S603 - our own command line
    if done.returncode != 0:
        first = next((line for line in done.stderr.splitlines() if line.strip()), f"exit {done.returncode}")
        raise BackupError(f"{what} failed: {first}")


def _database_dump(scratch: Path) -> tuple[str, Path]:
    """The database as one member's file: SQLite's online backup, or pg_dump's custom format."""
    if _dialect() == "sqlite":
        target = scratch / SQLITE_MEMBER
        source = sqlite3.connect(_sqlite_path())
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
        return SQLITE_MEMBER, target
    target = scratch / PG_MEMBER
    click.echo("PostgreSQL: running pg_dump -Fc")
    _run([_pg_tool("pg_dump"), "-Fc", "--no-owner", "--no-privileges", "-f", str(target),
          "-d", _libpq_url()], "pg_dump")
    return PG_MEMBER, target


def _instance_files() -> dict[str, bytes]:
    """The instance folder's keys and certificates, and the audit anchor files, by member name."""
    found: dict[str, bytes] = {}
    instance = Path(current_app.config["PACSDESK_INSTANCE_PATH"])
    for path in sorted(instance.iterdir()):
        if path.is_file() and (path.name in KEY_NAMES or path.name.endswith(KEY_SUFFIXES)):
            found[INSTANCE_PREFIX + path.name] = path.read_bytes()
    anchors = Path(current_app.config["PACSDESK_AUDIT_ANCHOR_DIR"])
    if anchors.is_dir():
        for path in sorted(anchors.iterdir()):
            if path.is_file():
                found[ANCHOR_PREFIX + path.name] = path.read_bytes()
    return found


def _schema_revision() -> str | None:
    """The Alembic revision the database is at (None when it was never migrated)."""
    with db.engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


class _HashingWriter(io.RawIOBase):
    """A file opened for writing that hashes what goes through it."""

    def __init__(self, out: IO[bytes]) -> None:
        super().__init__()
        self.out, self.digest = out, hashlib.sha256()

    def writable(self) -> bool:
        """It is written to."""
        return True

    def write(self, data: Any) -> int:
        """Hash and write ``data``."""
        self.digest.update(data)
        return self.out.write(data)


class _HashingReader(io.RawIOBase):
    """A file opened for reading that hashes and counts what is read from it."""

    def __init__(self, source: IO[bytes]) -> None:
        super().__init__()
        self.source, self.digest, self.size = source, hashlib.sha256(), 0

    def readable(self) -> bool:
        """It is read from."""
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Read, hash and count up to ``size`` bytes."""
        data = self.source.read(-1 if size is None else size)
        self.digest.update(data)
        self.size += len(data)
        return data


def write_backup(target: Path) -> tuple[dict, str]:
    """Write a backup of this instance to ``target`` (atomically); returns its manifest and SHA-256.

    The database dump is read once, hashed on its way into the archive; the manifest, which
    holds that hash, comes last (a restore reads every member before it trusts any).
    """
    if target.exists():
        raise BackupError(f"{target.name} already exists; give a new file name")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".pacsdesk-backup-") as scratch:
        name, dump = _database_dump(Path(scratch))
        files = _instance_files()
        partial = Path(scratch) / "backup.tar"
        with partial.open("wb") as out:
            writer = _HashingWriter(out)
            with tarfile.open(fileobj=writer, mode="w|") as archive:
                with dump.open("rb") as source:
                    reader = _HashingReader(source)
                    archive.addfile(_member_info(name, dump.stat().st_size), reader)
                for member, data in files.items():
                    _add(archive, member, data)
                sums = {name: {"sha256": reader.digest.hexdigest(), "size": reader.size},
                        **{n: {"sha256": _sha256(d), "size": len(d)} for n, d in files.items()}}
                manifest = {"format": FORMAT, "version": VERSION, "created_at": utcnow().isoformat(),
                            "database": _dialect(), "schema_revision": _schema_revision(), "files": sums}
                manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode()
                _add(archive, MANIFEST, manifest_bytes)
                _add(archive, MANIFEST_SUM, _sha256(manifest_bytes).encode())
        os.replace(partial, target)
    target.chmod(0o600)
    return manifest, writer.digest.hexdigest()


def _member_info(name: str, size: int) -> tarfile.TarInfo:
    """A tar header for a private file member."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    return info


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add a small member from memory."""
    archive.addfile(_member_info(name, len(data)), io.BytesIO(data))


def read_backup(source: Path, scratch: Path) -> Checked:
    """Read the whole backup and check it against its manifest; BackupError naming the first fault.

    The database member is unpacked into ``scratch`` while it is hashed; the others are small.
    """
    damaged = f"{source.name} is damaged or not a PACS Desk backup"
    members: dict[str, bytes] = {}
    sums: dict[str, dict] = {}
    database: Path | None = None
    try:
        with tarfile.open(source, "r:") as archive:
            for info in archive:
                path = PurePosixPath(info.name)
                if not info.isfile() or path.is_absolute() or ".." in path.parts or info.name in sums:
                    raise BackupError(f"{damaged}: unexpected member {info.name!r}")
                extracted = archive.extractfile(info)
                assert extracted is not None
                if info.name in DATABASE_MEMBERS and database is None:
                    database = scratch / info.name
                    with database.open("wb") as target:
                        sums[info.name] = _copy_hashing(extracted, target)
                elif info.size > SMALL_MEMBER_MAX:  # keys, certificates and anchors are small
                    raise BackupError(f"{damaged}: {info.name} is {info.size} bytes, too large for its kind")
                else:
                    members[info.name] = extracted.read()
                    sums[info.name] = {"sha256": _sha256(members[info.name]), "size": len(members[info.name])}
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupError(f"{damaged}: {exc}") from None
    manifest_bytes = members.pop(MANIFEST, None)
    if manifest_bytes is None or members.pop(MANIFEST_SUM, b"").decode(errors="replace") != \
            _sha256(manifest_bytes):
        raise BackupError(f"{damaged}: its manifest is missing or does not match its checksum")
    manifest = json.loads(manifest_bytes)
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise BackupError(f"{damaged}: unknown format {manifest.get('format')!r} {manifest.get('version')!r}")
    listed = manifest.get("files", {})
    sums.pop(MANIFEST, None)
    sums.pop(MANIFEST_SUM, None)
    if set(listed) != set(sums) or database is None:
        raise BackupError(f"{damaged}: its members differ from the manifest")
    for name, found in sums.items():
        if listed[name] != found:
            raise BackupError(f"{damaged}: {name} does not match its checksum")
    return Checked(manifest, database, members)


def _holds_data() -> str | None:
    """What makes this instance non-empty (tables in its database, anchors), or None."""
    tables = inspect(db.engine).get_table_names()
    if tables:
        return f"its database has {len(tables)} tables"
    anchors = Path(current_app.config["PACSDESK_AUDIT_ANCHOR_DIR"])
    if anchors.is_dir() and any(anchors.iterdir()):
        return "its audit anchor folder is not empty"
    return None


def _write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.restoring")
    partial.write_bytes(data)
    partial.chmod(0o600)
    os.replace(partial, path)


def _restore_database(checked: Checked) -> None:
    """Put the backup's database in place of the empty one."""
    db.session.remove()
    db.engine.dispose()
    if _dialect() == "sqlite":
        path = _sqlite_path()
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        partial = path.with_name(f".{path.name}.restoring")
        shutil.copyfile(checked.database, partial)
        partial.chmod(0o600)
        os.replace(partial, path)
        return
    click.echo("PostgreSQL: running pg_restore")
    _run([_pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
          "-d", _libpq_url(), str(checked.database)], "pg_restore")


def restore_backup(source: Path) -> dict:
    """Restore ``source`` into this empty instance, upgrade its schema and audit the restore."""
    instance = Path(current_app.config["PACSDESK_INSTANCE_PATH"])
    anchors = Path(current_app.config["PACSDESK_AUDIT_ANCHOR_DIR"])
    with tempfile.TemporaryDirectory(prefix=".pacsdesk-restore-", dir=instance) as scratch:
        checked = read_backup(source, Path(scratch))
        kind = checked.manifest["database"]
        if kind != _dialect():
            raise BackupError(f"{source.name} holds a {kind} database; this instance uses {_dialect()}")
        if (found := _holds_data()) is not None:
            raise BackupError(f"refusing to restore into an instance that holds data ({found}); "
                              "restore into a new, empty instance")
        _restore_database(checked)
    for name, data in checked.members.items():
        if name.startswith(INSTANCE_PREFIX):
            _write_private(instance / name.removeprefix(INSTANCE_PREFIX), data)
        elif name.startswith(ANCHOR_PREFIX):
            _write_private(anchors / name.removeprefix(ANCHOR_PREFIX), data)
    if checked.manifest.get("schema_revision") is not None:
        upgrade()
    # The audit key is read on first use, which is this event: the restored key, never a new one.
    audit_sink.record("system.restore", details={
        "backup_created_at": checked.manifest["created_at"], "database": kind,
        "schema_revision": checked.manifest.get("schema_revision"), "files": len(checked.manifest["files"])})
    db.session.commit()
    return checked.manifest


@click.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@with_appcontext
def backup_command(file: Path) -> None:
    """Write the database, the instance's keys and the audit anchors to FILE (a checksummed tar)."""
    manifest, digest = write_backup(file.resolve())
    audit_sink.record("system.backup", details={
        "file": file.name, "database": manifest["database"], "files": len(manifest["files"]),
        "sha256": digest})
    db.session.commit()
    click.echo(f"backup written to {file}: {len(manifest['files'])} files "
               f"({', '.join(sorted(manifest['files']))})")


@click.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_appcontext
def restore_command(file: Path) -> None:
    """Restore FILE into this empty instance, upgrade the schema and record the restore."""
    try:
        manifest = restore_backup(file)
    except BackupError as exc:
        click.echo(f"pacsdesk restore: {exc.message}", err=True)
        sys.exit(1)
    click.echo(f"restored the backup of {manifest['created_at']} ({manifest['database']}, "
               f"{len(manifest['files'])} files); run `pacsdesk audit verify` to check the trail")
