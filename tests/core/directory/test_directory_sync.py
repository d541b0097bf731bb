"""Changes in the directory reach PACS Desk: roles at every login, and the sync job that ends access
(a private slapd per test, changed with ldapmodify), then the compliance page of ended accesses."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from audit.trail.models import AuditEvent
from core.auth.models import AuthSource, DirectorySyncRun, Role, User
from core.auth.services import NewUser, create_user
from core.extensions import db
from core.jobs.queue import enqueue
from core.jobs.registry import job_kinds
from core.jobs.worker import work_until_idle
from tests.conftest import PASSWORD
from tests.core.directory.conftest import ad_settings, configure, start_slapd
from tests.core.directory.data import (
    EXPIRED_AT,
    UF_ACCOUNTDISABLE,
    UF_NORMAL_ACCOUNT,
    ad_dn,
    ad_entries,
    ad_group,
)
from tests.core.directory.slapd import USER_PASSWORD, Slapd, ldif

pytestmark = pytest.mark.integration


@pytest.fixture
def directory(tmp_path, certificates) -> Iterator[Slapd]:
    """A directory of its own for this test, which the test changes."""
    folder = tmp_path / "slapd"
    folder.mkdir()
    server = start_slapd(folder, certificates)
    try:
        server.load(ldif(ad_entries()))
        yield server
    finally:
        server.stop()


@pytest.fixture
def app_config(app_config: dict, directory: Slapd, certificates) -> dict:
    """The app signs people in with this test's directory."""
    app_config["PACSDESK_DIRECTORY"] = configure(ad_settings(directory, certificates), {})
    return app_config


def change(directory: Slapd, dn: str, **changes: list[str]) -> None:
    """One LDIF modify record: ``add=["member"], member=[...]``, or ``delete=[...]`` alone."""
    directory.modify(ldif([(dn, {"changetype": ["modify"], **changes})]))


def events(app, action: str) -> list[AuditEvent]:
    """Audit events of one action, in chain order."""
    with app.app_context():
        rows = list(db.session.execute(select(AuditEvent).where(AuditEvent.action == action)
                                       .order_by(AuditEvent.seq)).scalars())
        db.session.expunge_all()
        return rows


def account(app, username: str) -> User:
    """The account as stored now."""
    with app.app_context():
        user = db.session.execute(select(User).where(User.username == username)).scalar_one()
        db.session.expunge(user)
        return user


def logged_in(app, username: str):
    """A browser logged in with a directory password."""
    client = app.test_client()
    assert client.post("/login", data={"username": username, "password": USER_PASSWORD}).status_code == 302
    assert client.get("/").status_code == 200
    return client


def run_sync_job(app) -> None:
    """Queue the registered sync job and run it through the job worker's code path."""
    with app.app_context():
        enqueue("core.directory_sync")
        db.session.commit()
    assert [status for _, status in work_until_idle(app, ["core.directory_sync"])] == ["done"]


def test_the_role_follows_the_groups_at_every_login_and_a_change_ends_other_sessions(app, directory):
    first = logged_in(app, "tom.tech")
    assert account(app, "tom.tech").role == "technician"
    change(directory, ad_group("pacs-technicians"), add=["member"], member=[ad_dn("Alice Admin")])
    change(directory, ad_group("pacs-technicians"), delete=["member"], member=[ad_dn("Tom Tech")])
    change(directory, ad_group("radiology"), add=["member"], member=[ad_dn("Tom Tech")])
    change(directory, ad_dn("Tom Tech"), replace=["department"], department=["Radiology"])
    logged_in(app, "tom.tech")
    tom = account(app, "tom.tech")
    assert (tom.role, tom.department) == ("requester", "Radiology")
    assert first.get("/").status_code == 302, "the session with the old role ended"
    role_change, = events(app, "user.role_changed")
    assert '"source":"directory"' in role_change.details and '"new":"requester"' in role_change.details
    assert '"department"' in events(app, "user.updated")[0].details


def test_the_hourly_job_ends_the_access_of_a_person_removed_from_the_directory(app, directory):
    job = job_kinds(app)["core.directory_sync"]
    assert job.every(app) == 3600
    toms_browser = logged_in(app, "tom.tech")
    ritas_browser = logged_in(app, "rita.radiologist")
    directory.modify(ldif([(ad_dn("Tom Tech"), {"changetype": ["delete"]})]))
    run_sync_job(app)
    assert toms_browser.get("/").status_code == 302, "the live session was logged out"
    assert ritas_browser.get("/").status_code == 200
    tom = account(app, "tom.tech")
    assert tom.is_disabled and tom.access_end_reason == "removed from the directory"
    assert tom.access_ended_at is not None and tom.directory_missing_since == tom.access_ended_at
    ended, = events(app, "user.access_ended")
    assert ended.object_type == "user" and ended.object_id == str(tom.id) and ended.user_id is None
    run, = events(app, "directory.sync")
    assert '"ended":1' in run.details and '"listed":8' in run.details
    refused = toms_browser.post("/login", data={"username": "tom.tech", "password": USER_PASSWORD})
    assert refused.status_code == 401


def test_the_sync_ends_access_for_people_disabled_expired_or_out_of_every_group(app, directory):
    for name in ("rita.radiologist", "carol.compliance"):
        logged_in(app, name)
    with app.app_context():
        create_user(NewUser(username="ed.expired", role=Role.REQUESTER, password="",
                            auth_source=AuthSource.DIRECTORY, directory_dn=ad_dn("Ed Expired")))
        db.session.commit()
    change(directory, ad_group("radiology"), delete=["member"], member=[ad_dn("Rita Núñez")])
    change(directory, ad_dn("Carol Compliance"), replace=["userAccountControl"],
           userAccountControl=[str(UF_NORMAL_ACCOUNT | UF_ACCOUNTDISABLE)])
    run_sync_job(app)
    reasons = {name: account(app, name).access_end_reason
               for name in ("rita.radiologist", "carol.compliance", "ed.expired")}
    assert reasons == {"rita.radiologist": "in no role group",
                       "carol.compliance": "disabled in the directory",
                       "ed.expired": "expired in the directory"}
    assert account(app, "ed.expired").directory_missing_since == EXPIRED_AT
    assert len(events(app, "user.access_ended")) == 3


def test_a_failed_listing_changes_nothing(app, directory):
    toms_browser = logged_in(app, "tom.tech")
    directory.stop()
    run_sync_job(app)
    assert not account(app, "tom.tech").is_disabled
    assert toms_browser.get("/").status_code == 200
    failed, = events(app, "directory.sync_failed")
    assert failed.outcome == "failure" and "cannot be reached" in failed.details
    assert not events(app, "user.access_ended")
    with app.app_context():
        run = db.session.execute(select(DirectorySyncRun)).scalar_one()
        assert not run.ok and run.ended == 0


def test_a_listing_with_nobody_in_it_changes_nothing(app, directory, certificates, runner):
    logged_in(app, "tom.tech")
    app.config["PACSDESK_DIRECTORY"] = configure(ad_settings(directory, certificates),
                                                 {"user_base": "ou=services,dc=hospital,dc=org"})
    result = runner.invoke(args=["users", "sync-directory"])
    assert result.exit_code == 1 and "listed nobody" in result.output
    assert not account(app, "tom.tech").is_disabled


def test_the_sync_command_reports_what_it_did(app, directory, runner):
    logged_in(app, "tom.tech")
    directory.modify(ldif([(ad_dn("Tom Tech"), {"changetype": ["delete"]})]))
    result = runner.invoke(args=["users", "sync-directory"])
    assert result.exit_code == 0, result.output
    assert "8 people listed, access ended for 1, role changed for 0" in result.output
    assert account(app, "tom.tech").is_disabled


def test_the_access_ended_page_shows_when_each_access_ended_and_flags_slow_ones(
        app, directory, make_user, time_machine):
    logged_in(app, "tom.tech")
    with app.app_context():
        create_user(NewUser(username="ed.expired", role=Role.REQUESTER, password="",
                            auth_source=AuthSource.DIRECTORY, directory_dn=ad_dn("Ed Expired")))
        db.session.commit()
    directory.modify(ldif([(ad_dn("Tom Tech"), {"changetype": ["delete"]})]))
    run_sync_job(app)
    make_user("compliance", "carol.local")
    make_user("technician", "sam")
    officer = app.test_client()
    officer.post("/login", data={"username": "carol.local", "password": PASSWORD})
    page = officer.get("/compliance/access-ended").text
    assert 'href="/compliance/access-ended"' in page, "in the compliance officer's navigation"
    table = page.split('id="access-ended"')[1]
    tom_row = table.split("tom.tech")[1].split("</tr>")[0]
    ed_row = table.split("ed.expired")[1].split("</tr>")[0]
    assert "removed from the directory" in tom_row and "under an hour" in tom_row
    assert "over 24 h" not in tom_row
    assert "expired in the directory" in ed_row and "2020-01-31 17:00" in ed_row and "over 24 h" in ed_row
    assert 'id="sync-stale"' not in page
    time_machine.move_to(account(app, "tom.tech").access_ended_at + timedelta(hours=25), tick=False)
    officer.post("/login", data={"username": "carol.local", "password": PASSWORD})
    assert 'id="sync-stale"' in officer.get("/compliance/access-ended").text
    technician = app.test_client()
    technician.post("/login", data={"username": "sam", "password": PASSWORD})
    assert technician.get("/compliance/access-ended").status_code == 403
