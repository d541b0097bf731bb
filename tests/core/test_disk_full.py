"""A full disk: a clear 507 page, nothing half-saved, and /healthz says so."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app import create_app
from core.auth.models import Role
from core.auth.services import NewUser, create_user
from core.extensions import db
from helpdesk.models import Category, Ticket
from tests.conftest import PASSWORD
from tests.helpers import require

pytestmark = pytest.mark.integration


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs mounted for this test only."""
    require(os.geteuid() == 0, "mounting a tmpfs needs root", "PACSDESK_REQUIRE_INTEGRATION")
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    require(made.returncode == 0, f"cannot mount a tmpfs: {made.stderr.strip()}",
            "PACSDESK_REQUIRE_INTEGRATION")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path) -> None:
    """Take every free byte of ``folder``'s file system."""
    with open(folder / "ballast", "wb") as ballast:
        try:
            while True:
                ballast.write(b"\0" * 65536)
                ballast.flush()
        except OSError:
            pass


@pytest.mark.sqlite_only  # fills the disk under an SQLite database
def test_a_full_disk_answers_507_saves_nothing_and_healthz_says_disk_full(small_disk, database_url,
                                                                         app_config):
    database = small_disk / "pacsdesk.db"
    shutil.copy(database_url.removeprefix("sqlite:///"), database)
    instance = small_disk / "instance"
    instance.mkdir()
    app = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}",
                      "PACSDESK_INSTANCE_PATH": str(instance), "PACSDESK_MIN_FREE_DISK_MB": 1})
    client = app.test_client()

    with app.app_context():
        create_user(NewUser(username="dr.okafor", role=Role.REQUESTER, password=PASSWORD))
        db.session.commit()
        category = db.session.execute(select(Category.id).limit(1)).scalar_one()
    assert client.post("/login", data={"username": "dr.okafor", "password": PASSWORD}).status_code == 302
    assert client.get("/healthz").json["database"] == "ok"

    _fill(small_disk)
    answer = client.post("/tickets/new", data={
        "title": "Priors missing", "description": "x" * 4000, "category_id": str(category),
        "impact": "one", "urgency": "hours"})
    health = client.get("/healthz")

    assert answer.status_code == 507
    assert "disk is full; nothing was saved." in answer.data.decode()
    assert health.status_code == 503 and health.json["database"] == "disk full"
    (small_disk / "ballast").unlink()
    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(Ticket)).scalar() == 0
        db.engine.dispose()
