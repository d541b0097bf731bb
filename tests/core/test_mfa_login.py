"""Logging in with a second factor through the app: enrolment, codes accepted once, recovery codes,
lockout, a half-logged-in session that reaches nothing, and the administrators' reset (frozen clock)."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from audit.trail.models import AuditEvent
from core.auth import second_factor
from core.auth.models import User
from core.extensions import db
from core.timeutil import utcnow
from tests.conftest import PASSWORD

START = "2026-03-14 09:26:45+00:00"  # 15 s into its 30-second step
PAGES = ("/", "/admin/users", "/account", "/account/password", "/my/tickets", "/compliance/access-ended")


@pytest.fixture
def app_config(app_config: dict) -> dict:
    """The default: administrators and compliance officers must use a second factor."""
    app_config["PACSDESK_MFA_REQUIRED_ROLES"] = frozenset({"admin", "compliance"})
    return app_config


def events(app, action: str) -> list[AuditEvent]:
    """Audit events of one action, in chain order."""
    with app.app_context():
        rows = list(db.session.execute(select(AuditEvent).where(AuditEvent.action == action)
                                       .order_by(AuditEvent.seq)).scalars())
        db.session.expunge_all()
        return rows


def stored(app, username: str) -> User:
    """The account as stored now."""
    with app.app_context():
        user = db.session.execute(select(User).where(User.username == username)).scalar_one()
        db.session.expunge(user)
        return user


def enrol(app, username: str) -> tuple[str, list[str]]:
    """Enrol an authenticator for ``username`` now; returns its secret and recovery codes."""
    with app.app_context():
        user_id = db.session.execute(select(User.id).where(User.username == username)).scalar_one()
        secret = second_factor.start_enrolment(user_id).mfa_secret
        codes = second_factor.confirm_enrolment(user_id, pyotp.TOTP(secret).now())
        db.session.commit()
    return secret, codes


def password_step(client, username: str):
    """Post the password form."""
    return client.post("/login", data={"username": username, "password": PASSWORD})


def test_an_admin_without_mfa_enrols_at_login_before_reaching_any_page(app, client, make_user,
                                                                      time_machine):
    time_machine.move_to(START, tick=False)
    make_user("admin", "ada")
    first = password_step(client, "ada")
    assert first.status_code == 302 and first.headers["Location"] == "/login/enrol"
    for path in PAGES:
        blocked = client.get(path)
        assert blocked.status_code == 302 and blocked.headers["Location"].startswith("/login"), path
    page = client.get("/login/enrol")
    assert page.status_code == 200
    svg = re.search(rb'id="mfa-qr"><svg.*?</svg>', page.data, re.DOTALL).group(0)
    assert b"<path" in svg and b"<script" not in svg and b"http" not in svg, "drawn here, nothing fetched"
    secret = re.search(rb'id="mfa-secret">([A-Z2-7]{32})<', page.data).group(1).decode()
    assert client.get("/login/enrol").data.count(secret.encode()) == 1, "a reload keeps the same secret"
    wrong = client.post("/login/enrol", data={"code": "000000"})
    assert wrong.status_code == 400 and b"does not match" in wrong.data
    assert client.get("/").status_code == 302
    done = client.post("/login/enrol", data={"code": pyotp.TOTP(secret).now()})
    assert done.status_code == 200 and b"only this once" in done.data
    codes = re.findall(rb"<li>([a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{2})</li>", done.data)
    assert len(set(codes)) == 10
    assert client.get("/").status_code == 200
    ada = stored(app, "ada")
    assert ada.mfa_enabled and all(code.decode() not in (ada.mfa_recovery_hashes or "") for code in codes)
    assert (ada.mfa_recovery_hashes or "").count("$argon2id$") == 10
    enrolled, = events(app, "user.mfa_enrolled")
    login, = events(app, "user.login")
    assert enrolled.username == "ada" and '"second_factor":"totp"' in login.details
    assert '"method":"local"' in login.details


def test_a_requester_may_log_in_without_mfa_and_enrol_from_the_account_page(app, client, make_user,
                                                                          time_machine):
    time_machine.move_to(START, tick=False)
    make_user("requester", "rita")
    assert password_step(client, "rita").headers["Location"] == "/"
    assert b"Set up an authenticator app" in client.get("/account").data
    page = client.get("/account/mfa")
    secret = re.search(rb'id="mfa-secret">([A-Z2-7]{32})<', page.data).group(1).decode()
    assert b"Multi-factor authentication is on" in client.post(
        "/account/mfa", data={"code": pyotp.TOTP(secret).now()}).data
    client.post("/logout")
    time_machine.shift(timedelta(seconds=30))
    assert password_step(client, "rita").headers["Location"] == "/login/code"
    assert client.post("/login/code", data={"code": pyotp.TOTP(secret).now()}).status_code == 302
    assert client.get("/").status_code == 200


def test_a_half_logged_in_session_reaches_no_page(app, client, make_user):
    make_user("admin", "ada")
    enrol(app, "ada")
    assert password_step(client, "ada").headers["Location"] == "/login/code"
    for path in PAGES:
        blocked = client.get(path)
        assert blocked.status_code == 302 and blocked.headers["Location"].startswith("/login"), path
    assert client.post("/admin/users/new", data={"username": "eve", "role": "admin"}).status_code == 302
    assert client.post("/account/password", data={}).status_code == 302
    with app.app_context():
        assert db.session.execute(select(User).where(User.username == "eve")).first() is None
    assert not events(app, "user.login")


def test_a_code_is_accepted_once_within_its_window(app, make_user, time_machine):
    time_machine.move_to(START, tick=False)
    make_user("compliance", "carol")
    secret, _ = enrol(app, "carol")
    time_machine.shift(timedelta(seconds=30))
    code = pyotp.TOTP(secret).now()
    first = app.test_client()
    password_step(first, "carol")
    assert first.post("/login/code", data={"code": code}).status_code == 302
    thief = app.test_client()
    password_step(thief, "carol")
    replay = thief.post("/login/code", data={"code": code})
    assert replay.status_code == 401 and b"wrong or was already used" in replay.data
    assert thief.get("/").status_code == 302
    failed, = events(app, "user.mfa_failed")
    assert failed.username == "carol" and '"reason":"wrong or reused code"' in failed.details
    time_machine.shift(timedelta(seconds=30))
    assert thief.post("/login/code", data={"code": pyotp.TOTP(secret).now()}).status_code == 302
    passed = events(app, "user.mfa_passed")
    assert len(passed) == 2


def test_wrong_codes_count_toward_the_lockout(app, client, make_user, time_machine):
    time_machine.move_to(START, tick=False)
    make_user("admin", "ada")
    enrol(app, "ada")
    password_step(client, "ada")
    for guess in ("111111", "222222", "333333", "444444"):
        assert b"wrong or was already used" in client.post("/login/code", data={"code": guess}).data
    locked = client.post("/login/code", data={"code": "555555"})
    assert locked.status_code == 302 and locked.headers["Location"] == "/login"
    assert b"locked" in client.get("/login").data
    assert len(events(app, "user.mfa_failed")) == 5 and len(events(app, "user.locked")) == 1
    time_machine.shift(timedelta(seconds=30))
    again = password_step(client, "ada")
    assert again.status_code == 401 and b"locked" in again.data
    assert stored(app, "ada").is_locked(utcnow())


def test_a_recovery_code_logs_in_once(app, make_user, time_machine):
    time_machine.move_to(START, tick=False)
    make_user("admin", "ada")
    _, codes = enrol(app, "ada")
    client = app.test_client()
    password_step(client, "ada")
    used = client.post("/login/code", data={"code": codes[3].upper()})
    assert used.status_code == 302
    assert b"9 left" in client.get("/").data
    recovery, = events(app, "user.mfa_recovery_used")
    assert '"remaining":9' in recovery.details and codes[3] not in recovery.details
    assert '"second_factor":"recovery code"' in events(app, "user.login")[0].details
    again = app.test_client()
    password_step(again, "ada")
    reused = again.post("/login/code", data={"code": codes[3]})
    assert reused.status_code == 401 and b"recovery code is wrong or was already used" in reused.data
    assert again.post("/login/code", data={"code": codes[4]}).status_code == 302


def test_a_pending_login_expires_after_five_minutes(app, client, make_user, time_machine):
    time_machine.move_to(START, tick=False)
    make_user("admin", "ada")
    secret, _ = enrol(app, "ada")
    password_step(client, "ada")
    time_machine.shift(timedelta(minutes=5, seconds=30))
    late = client.post("/login/code", data={"code": pyotp.TOTP(secret).now()})
    assert late.status_code == 302 and late.headers["Location"] == "/login"
    assert client.get("/").status_code == 302


def test_an_admin_resets_mfa_and_the_user_enrols_again(app, make_user, time_machine):
    time_machine.move_to(START, tick=False)
    make_user("admin", "ada")
    make_user("compliance", "carol")
    ada_secret, _ = enrol(app, "ada")
    carol_secret, _ = enrol(app, "carol")
    time_machine.shift(timedelta(seconds=30))
    carol = app.test_client()
    password_step(carol, "carol")
    carol.post("/login/code", data={"code": pyotp.TOTP(carol_secret).now()})
    assert carol.get("/").status_code == 200
    admin = app.test_client()
    password_step(admin, "ada")
    admin.post("/login/code", data={"code": pyotp.TOTP(ada_secret).now()})
    carol_id = stored(app, "carol").id
    asked = admin.get(f"/admin/users/{carol_id}/reset-mfa")
    assert b"Remove carol&#39;s authenticator" in asked.data
    assert admin.post(f"/admin/users/{carol_id}/reset-mfa", data={"confirmed": "yes"}).status_code == 302
    assert carol.get("/").status_code == 302, "carol's sessions ended"
    reset, = events(app, "user.mfa_reset")
    assert reset.username == "ada" and reset.object_id == str(carol_id)
    assert not stored(app, "carol").mfa_enabled and stored(app, "carol").mfa_recovery_hashes is None
    assert password_step(carol, "carol").headers["Location"] == "/login/enrol"


@pytest.mark.postgres
def test_one_code_sent_by_four_browsers_at_once_is_accepted_once(app, make_user, time_machine):
    """The last accepted step is updated under a row lock, so parallel replays all fail but one."""
    import threading

    from tests.helpers import require_postgres

    require_postgres()
    time_machine.move_to(START, tick=False)
    make_user("admin", "ada")
    secret, _ = enrol(app, "ada")
    time_machine.shift(timedelta(seconds=30))
    browsers = [app.test_client() for _ in range(4)]  # one success and three failures: no lockout
    for browser in browsers:
        password_step(browser, "ada")
    barrier = threading.Barrier(len(browsers))
    answers: list[int] = []

    def send(browser) -> None:
        barrier.wait()
        answers.append(browser.post("/login/code", data={"code": pyotp.TOTP(secret).now()}).status_code)

    threads = [threading.Thread(target=send, args=(browser,)) for browser in browsers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [302, 401, 401, 401]
    assert len(events(app, "user.mfa_passed")) == 1 and len(events(app, "user.mfa_failed")) == 3
