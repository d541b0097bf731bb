"""Hardened local accounts: guessable passwords, the password form, session lifetime, what a failed
login reveals and stores, hostile login forms, admin password resets and the first-run checklist."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from app import create_app
from audit.trail.models import AuditEvent
from core.auth import login as login_service
from core.auth.login import name_is_storable
from core.auth.models import User
from core.auth.passwords import password_problem
from core.extensions import db
from tests.conftest import PASSWORD

START = "2026-03-02 09:00:00+00:00"
WEAK = ["password1234", "123456789012", "qwertyuiop12", "Password123!"]
NEW = "plum-orbit-ledger-93"


def events(app, action: str | None = None) -> list[AuditEvent]:
    """Audit events in chain order, optionally of one action."""
    with app.app_context():
        query = select(AuditEvent).order_by(AuditEvent.seq)
        if action:
            query = query.where(AuditEvent.action == action)
        rows = list(db.session.execute(query).scalars())
        db.session.expunge_all()
        return rows


def user_row(app, username: str) -> User:
    """The account as stored now."""
    with app.app_context():
        user = db.session.execute(select(User).where(User.username == username)).scalar_one()
        db.session.expunge(user)
        return user


# ---- guessable passwords ------------------------------------------------------------------------

@pytest.mark.parametrize("weak", WEAK)
def test_common_and_breached_passwords_are_refused_with_a_reason(app, weak):
    with app.app_context():
        problem = password_problem(weak, "rita")
    assert problem is not None and problem.startswith("Password is too easy to guess:")
    assert "common" in problem.lower()


@pytest.mark.parametrize("weak", WEAK)
def test_the_own_password_form_refuses_guessable_passwords(app, client, login_as, weak):
    login_as("requester", "rita")
    response = client.post("/account/password", data={"current_password": PASSWORD, "new_password": weak,
                                                       "confirm": weak})
    assert response.status_code == 400 and b"Password is too easy to guess" in response.data
    assert not events(app, "user.password_changed")


@pytest.mark.parametrize("weak", WEAK)
def test_admins_cannot_give_a_guessable_initial_password(app, client, login_as, weak):
    login_as("admin", "ada")
    response = client.post("/admin/users/new", data={"username": "zed", "role": "requester",
                                                     "password": weak})
    assert b"Password is too easy to guess" in response.data
    with app.app_context():
        assert db.session.execute(select(User).where(User.username == "zed")).first() is None


@pytest.mark.parametrize("weak", WEAK)
def test_the_command_line_refuses_guessable_passwords(app, runner, make_user, weak):
    created = runner.invoke(args=["users", "create", "zed", "--role", "requester", "--password-stdin"],
                            input=f"{weak}\n")
    assert created.exit_code != 0 and "too easy to guess" in created.output
    make_user("requester", "rita")
    changed = runner.invoke(args=["users", "set-password", "rita", "--password-stdin"], input=f"{weak}\n")
    assert changed.exit_code != 0 and "too easy to guess" in changed.output


def test_passwords_with_the_persons_name_are_guessable(app):
    with app.app_context():
        assert password_problem("Okafor-Amara-2026", "rita", ("Amara Okafor",)) == \
            "Password must not contain your name or e-mail address."


# ---- the own password form ----------------------------------------------------------------------

def test_wrong_current_passwords_are_audited_and_lock_the_account(app, client, login_as, auth):
    login_as("requester", "rita")
    for attempt in range(4):
        response = client.post("/account/password", data={
            "current_password": f"guess-number-{attempt}", "new_password": NEW, "confirm": NEW})
        assert b"The current password is wrong." in response.data
    last = client.post("/account/password", data={"current_password": "guess-number-5",
                                                   "new_password": NEW, "confirm": NEW})
    assert last.status_code == 302 and last.headers["Location"] == "/login"
    assert client.get("/").status_code == 302, "the guessing session is over"
    failed = events(app, "user.password_change_failed")
    assert [f.username for f in failed] == ["rita"] * 5
    assert all("guess-number" not in f.details for f in failed)
    assert len(events(app, "user.locked")) == 1
    refused = auth.login("rita")
    assert refused.status_code == 401 and b"locked" in refused.data


def test_the_own_password_form_is_rate_limited(app_config, make_user):
    app_config["RATELIMIT_ENABLED"] = True
    app = create_app(app_config)
    make_user("requester", "rita")
    client = app.test_client()
    assert client.post("/login", data={"username": "rita", "password": PASSWORD}).status_code == 302
    codes = [client.post("/account/password", data={"current_password": PASSWORD, "new_password": "short",
                                                     "confirm": "short"}).status_code for _ in range(11)]
    assert codes[:10] == [400] * 10 and codes[10] == 429
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_a_new_password_must_differ_from_the_current_one(client, login_as):
    login_as("requester", "rita")
    same = client.post("/account/password", data={"current_password": PASSWORD, "new_password": PASSWORD,
                                                   "confirm": PASSWORD})
    assert b"different from the current one" in same.data


# ---- absolute session lifetime ------------------------------------------------------------------

def test_an_active_session_ends_after_twelve_hours_and_is_audited(app, client, login_as, time_machine):
    time_machine.move_to(START, tick=False)
    login_as("requester", "rita")
    for _ in range(71):  # a click every ten minutes for 11 h 50 min
        time_machine.shift(timedelta(minutes=10))
        assert client.get("/").status_code == 200
    time_machine.shift(timedelta(minutes=11))
    response = client.get("/my/tickets")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert b"at most 12 hours" in client.get("/login").data
    expired, = events(app, "user.session_expired")
    assert expired.username == "rita" and '"max_hours":12' in expired.details
    assert not events(app, "user.idle_logoff")


def test_the_session_lifetime_setting_is_honoured(app_config, make_user, time_machine):
    app_config["PACSDESK_SESSION_MAX_HOURS"] = 1
    app = create_app(app_config)
    time_machine.move_to(START, tick=False)
    make_user("requester", "rita")
    client = app.test_client()
    assert client.post("/login", data={"username": "rita", "password": PASSWORD}).status_code == 302
    for _ in range(5):
        time_machine.shift(timedelta(minutes=12))
        assert client.get("/").status_code == 200
    time_machine.shift(timedelta(minutes=1))
    assert client.get("/").status_code == 302
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


# ---- what a failed login reveals and stores -----------------------------------------------------

def test_the_lockout_message_is_the_same_for_a_real_and_an_unknown_account(app, make_user):
    make_user("technician", "sam")
    pages = {}
    for name in ("sam", "ghost"):
        client = app.test_client()
        answers = [client.post("/login", data={"username": name, "password": "wrong-password-123"})
                   for _ in range(6)]
        assert [a.status_code for a in answers] == [401] * 6
        pages[name] = [re.sub(rb'name="csrf_token"[^>]*>', b"", a.data).replace(name.encode(), b"NAME")
                       for a in answers]
    assert pages["sam"] == pages["ghost"]
    assert b"locked" in pages["ghost"][4] and b"locked" in pages["ghost"][5]
    assert b"Invalid username or password." in pages["ghost"][3]


def test_an_unknown_user_costs_the_same_password_hash_work(app, make_user, monkeypatch):
    make_user("technician", "sam")
    verified: list[str] = []
    real = login_service.check_password

    def counting(stored: str, password: str) -> bool:
        verified.append(stored[:9])
        return real(stored, password)

    monkeypatch.setattr(login_service, "check_password", counting)
    client = app.test_client()
    client.post("/login", data={"username": "sam", "password": "wrong-password-123"})
    client.post("/login", data={"username": "ghost", "password": "wrong-password-123"})
    assert verified == ["$argon2id"] * 2


@pytest.mark.parametrize("typed", ["nobody", "rita.radiologist", "JSMITH", "dr_okafor"])
def test_an_unknown_name_that_looks_like_a_username_is_stored(app, client, typed):
    client.post("/login", data={"username": typed, "password": "wrong-password-123"})
    failed, = events(app, "user.login_failed")
    assert failed.username == typed.lower() and '"unknown user"' in failed.details


@pytest.mark.parametrize("typed", [*WEAK, "correct-horse-battery-staple", "Tr0ub4dor&3", "Rita2026",
                                   "plum.orbit.ledger.93", "admin", "summer-2026", "x" * 40])
def test_an_unknown_name_that_could_be_a_password_is_kept_only_as_a_keyed_hash(app, client, typed):
    client.post("/login", data={"username": typed, "password": "wrong-password-123"})
    failed, = events(app, "user.login_failed")
    assert failed.username is None
    assert '"unknown user (not stored)"' in failed.details
    assert typed.lower() not in failed.details.lower()
    with app.app_context():
        assert login_service.name_key(typed)[:32] in failed.details
    client.post("/login", data={"username": typed, "password": "wrong-password-123"})
    second = events(app, "user.login_failed")[1]
    assert second.details == failed.details.replace('"attempt":1', '"attempt":2'), \
        "repeated attempts with one name can still be told apart"


def test_the_storage_rule_for_typed_names():
    for name in ("rita", "dr.okafor", "tom_tech", "okafor2", "e7391", "KCHEN"):
        assert name_is_storable(name), name
    for name in ("Rita.Radiologist", "a.b.c.d", "rita-2", "qwerty", "abcdef", "19840412", "x", "rita!",
                 "p@ss", "name with space"):
        assert not name_is_storable(name), name


@pytest.mark.parametrize(("username", "password"), [
    ("rita\x00", PASSWORD), ("rita", "pass\x00word-long-enough"), ("ri\x01ta", PASSWORD),
    ("rita", "tab\tinside-password"), ("rita\x7f", PASSWORD)])
def test_a_control_character_in_the_login_form_is_a_400_and_still_audited(app, client, make_user,
                                                                          username, password):
    make_user("requester", "rita")
    response = client.post("/login", data={"username": username, "password": password})
    assert response.status_code == 400
    assert b"control character" in response.data
    failed, = events(app, "user.login_failed")
    assert failed.outcome == "failure" and failed.username is None and "name_hmac" in failed.details
    assert "\\u0000" not in failed.details and "word-long" not in failed.details
    assert client.get("/").status_code == 302


def test_a_ten_thousand_character_username_is_a_400_and_still_audited(app, client):
    response = client.post("/login", data={"username": "a" * 10_000, "password": PASSWORD})
    assert response.status_code == 400 and b"longer than 256 characters" in response.data
    failed, = events(app, "user.login_failed")
    assert "aaaa" not in failed.details and failed.username is None


# ---- admin password reset and forced change -----------------------------------------------------

def test_an_admin_resets_a_password_shown_once_and_changed_at_next_login(app, client, login_as, make_user):
    login_as("admin", "ada")
    sam = make_user("technician", "sam")
    sams_browser = app.test_client()
    sams_browser.post("/login", data={"username": "sam", "password": PASSWORD})
    asked = client.get(f"/admin/users/{sam.id}/reset-password")
    assert b"Give sam a new one-time password?" in asked.data
    assert user_row(app, "sam").must_change_password is False
    done = client.post(f"/admin/users/{sam.id}/reset-password", data={"confirmed": "yes"})
    assert done.status_code == 200
    one_time = re.search(rb'id="one-time-password">([^<]+)<', done.data).group(1).decode()
    assert b"only this once" in done.data and one_time not in client.get(f"/admin/users/{sam.id}").text
    assert sams_browser.get("/").status_code == 302, "sam's open session ended"
    reset, = events(app, "user.password_reset")
    assert reset.username == "ada" and one_time not in reset.details
    assert sams_browser.post("/login", data={"username": "sam", "password": PASSWORD}).status_code == 401
    assert sams_browser.post("/login", data={"username": "sam", "password": one_time}).status_code == 302
    for path in ("/", "/tickets", "/account"):
        forced = sams_browser.get(path)
        assert forced.status_code == 302 and forced.headers["Location"] == "/account/password", path
    changed = sams_browser.post("/account/password", data={"current_password": one_time,
                                                           "new_password": NEW, "confirm": NEW})
    assert changed.status_code == 302
    assert sams_browser.get("/").status_code == 200
    assert user_row(app, "sam").must_change_password is False


def test_an_account_created_on_the_web_chooses_its_own_password_at_first_login(app, client, login_as):
    login_as("admin", "ada")
    client.post("/admin/users/new", data={"username": "nia", "role": "technician",
                                          "password": "chosen-by-admin-42"})
    nia = app.test_client()
    assert nia.post("/login", data={"username": "nia", "password": "chosen-by-admin-42"}).status_code == 302
    assert nia.get("/").headers["Location"] == "/account/password"
    assert b"Choose your own" in nia.get("/account/password").data


def test_a_generated_password_from_the_command_line_must_be_changed(app, runner):
    result = runner.invoke(args=["users", "create", "nia", "--role", "technician"])
    password = re.search(r"password: (\S+)", result.output).group(1)
    client = app.test_client()
    assert client.post("/login", data={"username": "nia", "password": password}).status_code == 302
    assert client.get("/").headers["Location"] == "/account/password"


# ---- first-run checklist ------------------------------------------------------------------------

def test_a_new_installation_shows_the_admin_a_first_run_checklist(app, client, login_as):
    login_as("admin", "ada")
    page = client.get("/").text
    assert "Getting started" in page
    for step in ("Set the organisation name", "Set the time zone", "Add users, or connect the hospital",
                 "Add your DICOM nodes", "Review the retention policies",
                 "Turn on multi-factor authentication"):
        assert step in page, step
    assert 'href="/assets/new"' in page and 'href="/retention"' in page


def test_the_checklist_is_for_admins_and_goes_once_its_steps_are_done(app_config, make_user, time_machine):
    time_machine.move_to(START, tick=False)
    app_config.update(PACSDESK_ORGANIZATION="St. Example Hospital", PACSDESK_TIMEZONE="America/Chicago")
    app = create_app(app_config)
    make_user("technician", "sam")
    client = app.test_client()
    client.post("/login", data={"username": "sam", "password": PASSWORD})
    assert "Getting started" not in client.get("/").text
    make_user("admin", "ada")
    admin = app.test_client()
    admin.post("/login", data={"username": "ada", "password": PASSWORD})
    page = admin.get("/").text
    assert "Getting started" in page, "MFA is still off"
    assert page.count("Done:") == 4  # own password, organisation, time zone, users
    secret = re.search(r'id="mfa-secret">([A-Z2-7]+)<', admin.get("/account/mfa").text).group(1)
    enrolled = admin.post("/account/mfa", data={"code": pyotp.TOTP(secret).now()})
    assert b"Multi-factor authentication is on" in enrolled.data
    assert "Getting started" not in admin.get("/").text
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
