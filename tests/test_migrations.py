"""Migrations: one head, `pacsdesk db upgrade` builds the schema, and models match migrations."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError

from app import create_app
from audit.trail.search_index import autogenerate_include
from core.extensions import db
from tests.conftest import test_overrides as overrides_for
from tests.helpers import require_postgres

ROOT = Path(__file__).resolve().parents[1]
PACSDESK = Path(sys.executable).with_name("pacsdesk")
CORE_TABLES = {"user_account", "audit_event", "audit_checkpoint", "audit_purge_permit",
               "alembic_version"}


def scripts() -> ScriptDirectory:
    """The project's Alembic scripts."""
    return ScriptDirectory(str(ROOT / "migrations"))


def run_pacsdesk(tmp_path: Path, database_url: str, *args: str) -> subprocess.CompletedProcess:
    """Run the console script against ``database_url`` with a private instance folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACSDESK_")}
    env.update(PACSDESK_INSTANCE_PATH=str(tmp_path / "instance"), PACSDESK_DATABASE_URL=database_url)
    return subprocess.run([str(PACSDESK), *args], env=env, capture_output=True, text=True,
                          timeout=180, cwd=tmp_path)


def test_migrations_have_exactly_one_head():
    heads = scripts().get_heads()
    assert len(heads) == 1, f"several Alembic heads: {heads}"


def test_every_revision_chains_back_to_the_first():
    revisions = list(scripts().walk_revisions())
    assert revisions[-1].down_revision is None
    assert sum(1 for r in revisions if r.down_revision is None) == 1


def _check_upgraded(url: str) -> None:
    """The upgraded database has the tables, the head revision and working audit guards."""
    engine = create_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert tables >= CORE_TABLES, CORE_TABLES - tables
        with engine.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert version == scripts().get_current_head()
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO audit_event (seq, occurred_at, action, outcome, details, prev_hash, hash)"
                " VALUES (1, CURRENT_TIMESTAMP, 'x', 'success', '{}', 'a', 'b')"))
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text("UPDATE audit_event SET action = 'y'"))
    finally:
        engine.dispose()


def _models_match_migrations(url: str, instance: Path) -> None:
    """Autogenerate finds nothing to change between the models and the upgraded database."""
    app = create_app(overrides_for(instance, url))
    with app.app_context():
        with db.engine.connect() as connection, warnings.catch_warnings():
            # SQLite cannot reflect the lower-cased expression indexes, so autogenerate skips them
            # there and says so; PostgreSQL compares them.
            warnings.filterwarnings("ignore", "(Skipped unsupported reflection|autogenerate skipping "
                                    "metadata-specified) .*expression-based index")
            context = MigrationContext.configure(connection, opts={
                "compare_type": True, "render_as_batch": True,
                "include_object": autogenerate_include})
            diff = compare_metadata(context, db.metadata)
        db.engine.dispose()
    assert diff == [], "models and migrations differ; autogenerate a revision:\n" + "\n".join(
        map(str, diff))


def test_db_upgrade_builds_the_schema_on_an_empty_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    done = run_pacsdesk(tmp_path, url, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    _check_upgraded(url)


def test_models_and_migrations_agree_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    done = run_pacsdesk(tmp_path, url, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    _models_match_migrations(url, tmp_path / "instance")


@pytest.fixture
def scratch_postgres() -> str:
    """A fresh, empty PostgreSQL database next to the test database, dropped afterwards."""
    base = require_postgres()
    name = f"pacsdesk_scratch_{uuid.uuid4().hex[:12]}"
    admin_url = base.rsplit("/", 1)[0] + "/postgres"
    admin = create_engine(admin_url.replace("postgresql://", "postgresql+psycopg://", 1),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_db_upgrade_builds_the_schema_on_an_empty_postgres_database(tmp_path, scratch_postgres):
    done = run_pacsdesk(tmp_path, scratch_postgres, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    url = scratch_postgres.replace("postgresql://", "postgresql+psycopg://", 1)
    _check_upgraded(url)
    _models_match_migrations(url, tmp_path / "instance")


def test_downgrade_to_base_and_upgrade_again_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    for args in (("db", "upgrade"), ("db", "downgrade", "base"), ("db", "upgrade")):
        done = run_pacsdesk(tmp_path, url, *args)
        assert done.returncode == 0, (args, done.stderr)
    _check_upgraded(url)
