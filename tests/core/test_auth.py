"""Login, logout, lockout, idle logoff, disabled accounts and the audit events they write."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from audit.trail.models import AuditEvent
from core.auth.models import Role, User
from core.auth.services import change_role, disable_user, enable_user, unlock_user
from core.extensions import db
from core.timeutil import utcnow
from tests.conftest import PASSWORD

START = "2026-03-02 09:00:00+00:00"


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


def test_login_page_has_labelled_username_password_and_csrf_fields(app_config):
    from app import create_app

    app_config["WTF_CSRF_ENABLED"] = True
    page = create_app(app_config).test_client().get("/login")
    assert page.status_code == 200
    for name in (b'name="username"', b'name="password"', b'name="csrf_token"',
                 b'for="username"', b'for="password"'):
        assert name in page.data


def test_anonymous_visitor_is_sent_to_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_login_then_logout_ends_the_session_and_audits_both(app, client, make_user, auth):
    make_user("technician", "sam")
    response = auth.login("sam")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    response = auth.logout()
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert client.get("/").status_code == 302
    login, = events(app, "user.login")
    logout, = events(app, "user.logout")
    assert login.username == "sam" and login.user_role == "technician"
    assert login.outcome == "success" and login.client_address == "127.0.0.1"
    assert logout.username == "sam" and logout.object_type == "user"


def test_logout_needs_post(client, login_as):
    login_as("requester", "rita")
    assert client.get("/logout").status_code == 405
    assert client.get("/").status_code == 200


def test_username_is_case_insensitive(client, make_user, auth):
    make_user("requester", "rita")
    assert auth.login("  RITA ").status_code == 302


def test_wrong_password_is_refused_generically_and_audited_without_the_password(app, client,
                                                                                 make_user, auth):
    make_user("requester", "rita")
    response = auth.login("rita", "not-the-password-1")
    assert response.status_code == 401
    assert b"Invalid username or password." in response.data
    assert client.get("/").status_code == 302
    failed, = events(app, "user.login_failed")
    assert failed.outcome == "failure" and failed.username == "rita"
    assert '"wrong password"' in failed.details
    assert "not-the-password-1" not in failed.details


def test_unknown_user_gets_the_same_message_and_is_audited(app, auth):
    response = auth.login("nobody", "whatever-password-1")
    assert response.status_code == 401
    assert b"Invalid username or password." in response.data
    failed, = events(app, "user.login_failed")
    assert failed.user_id is None and failed.username == "nobody"


def test_five_failures_lock_the_account_even_with_the_right_password(app, make_user, auth,
                                                                       time_machine):
    time_machine.move_to(START, tick=False)
    make_user("technician", "sam")
    for _ in range(4):
        assert b"Invalid username" in auth.login("sam", "wrong-password-123").data
    locked = auth.login("sam", "wrong-password-123")
    assert b"locked" in locked.data
    assert len(events(app, "user.locked")) == 1
    refused = auth.login("sam")
    assert refused.status_code == 401 and b"locked" in refused.data
    assert user_row(app, "sam").is_locked()
    assert '"account locked"' in events(app, "user.login_failed")[-1].details


def test_lockout_expires_after_fifteen_minutes(app, make_user, auth, time_machine):
    time_machine.move_to(START, tick=False)
    make_user("technician", "sam")
    for _ in range(5):
        auth.login("sam", "wrong-password-123")
    time_machine.shift(timedelta(minutes=14))
    assert auth.login("sam").status_code == 401
    time_machine.shift(timedelta(minutes=2))
    assert auth.login("sam").status_code == 302


def test_failures_spread_beyond_fifteen_minutes_do_not_lock(app, make_user, auth, time_machine):
    time_machine.move_to(START, tick=False)
    make_user("technician", "sam")
    for _ in range(4):
        auth.login("sam", "wrong-password-123")
    time_machine.shift(timedelta(minutes=16))
    auth.login("sam", "wrong-password-123")
    assert not events(app, "user.locked")
    assert auth.login("sam").status_code == 302


def test_lockout_is_kept_in_the_database_so_another_replica_sees_it(app, make_user, auth):
    make_user("technician", "sam")
    for _ in range(5):
        auth.login("sam", "wrong-password-123")
    other_replica = app.test_client()
    response = other_replica.post("/login", data={"username": "sam", "password": PASSWORD})
    assert response.status_code == 401 and b"locked" in response.data


def test_idle_session_is_logged_off_and_audited(app, client, login_as, time_machine):
    time_machine.move_to(START, tick=False)
    login_as("compliance", "carol")
    time_machine.shift(timedelta(minutes=10))
    assert client.get("/").status_code == 200
    time_machine.shift(timedelta(minutes=14))
    assert client.get("/").status_code == 200, "activity keeps the session alive"
    time_machine.shift(timedelta(minutes=16))
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert client.get("/").status_code == 302
    idle, = events(app, "user.idle_logoff")
    assert idle.username == "carol"


def test_idle_minutes_setting_is_honoured(app_config, make_user, time_machine):
    from app import create_app

    app_config["PACSDESK_SESSION_IDLE_MINUTES"] = 5
    app = create_app(app_config)
    time_machine.move_to(START, tick=False)
    with app.app_context():
        from core.auth.services import NewUser, create_user

        create_user(NewUser(username="sam", role=Role.TECHNICIAN, password=PASSWORD))
        db.session.commit()
    client = app.test_client()
    assert client.post("/login", data={"username": "sam", "password": PASSWORD}).status_code == 302
    time_machine.shift(timedelta(minutes=6))
    assert client.get("/").status_code == 302
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_disabled_user_cannot_log_in(app, make_user, auth):
    make_user("requester", "rita")
    with app.app_context():
        disable_user(db.session.execute(select(User).where(User.username == "rita")).scalar_one())
        db.session.commit()
    response = auth.login("rita")
    assert response.status_code == 401
    assert b"Invalid username or password." in response.data
    assert '"account disabled"' in events(app, "user.login_failed")[-1].details


def test_disabling_a_user_ends_their_open_session(app, client, login_as):
    login_as("technician", "sam")
    assert client.get("/").status_code == 200
    with app.app_context():
        disable_user(db.session.execute(select(User).where(User.username == "sam")).scalar_one())
        db.session.commit()
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_re_enabled_user_can_log_in_again_but_old_session_stays_ended(app, client, login_as, auth):
    login_as("technician", "sam")
    with app.app_context():
        user = db.session.execute(select(User).where(User.username == "sam")).scalar_one()
        disable_user(user)
        enable_user(user)
        db.session.commit()
    assert client.get("/").status_code == 302
    assert auth.login("sam").status_code == 302
    assert client.get("/").status_code == 200


def test_role_change_ends_the_session_so_new_powers_apply(app, client, login_as):
    login_as("admin", "ada")
    assert client.get("/admin/users").status_code == 200
    with app.app_context():
        change_role(db.session.execute(select(User).where(User.username == "ada")).scalar_one(),
                    Role.REQUESTER)
        db.session.commit()
    response = client.get("/admin/users")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_every_account_action_writes_its_audit_event(app, client, make_user, auth, time_machine):
    time_machine.move_to(START, tick=False)
    admin_id = make_user("admin", "ada").id
    target = make_user("requester", "rita")
    with app.app_context():
        admin = db.session.get(User, admin_id)
        rita = db.session.get(User, target.id)
        change_role(rita, Role.TECHNICIAN, actor=admin)
        disable_user(rita, actor=admin)
        enable_user(rita, actor=admin)
        db.session.commit()
    for _ in range(5):
        auth.login("rita", "wrong-password-123")
    with app.app_context():
        unlock_user(db.session.get(User, target.id), actor=db.session.get(User, admin_id))
        db.session.commit()
    auth.login("rita")
    auth.logout()
    auth.login("rita")
    time_machine.shift(timedelta(minutes=30))
    client.get("/")
    actions = [e.action for e in events(app)]
    for action in ("user.created", "user.role_changed", "user.disabled", "user.enabled",
                   "user.login_failed", "user.locked", "user.unlocked", "user.login", "user.logout",
                   "user.idle_logoff"):
        assert action in actions, action
    by_action = {e.action: e for e in events(app)}
    role_change = by_action["user.role_changed"]
    assert role_change.username == "ada" and role_change.object_id == str(target.id)
    assert '"new":"technician"' in role_change.details and '"old":"requester"' in role_change.details
    assert by_action["user.unlocked"].username == "ada"
    assert by_action["user.disabled"].object_type == "user"


def test_no_audit_event_or_page_ever_contains_a_password(app, client, make_user, auth):
    make_user("requester", "rita")
    auth.login("rita", "typo-" + PASSWORD)
    auth.login("rita")
    for event in events(app):
        assert PASSWORD not in event.details


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "https://evil.example",
        "http://evil.example/login",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "///evil.example",
        " //evil.example",
        "/\t/evil.example",
        "https:evil.example",
    ],
)
def test_next_parameter_never_leaves_the_site(client, make_user, target):
    make_user("requester", "rita")
    response = client.post("/login", query_string={"next": target},
                           data={"username": "rita", "password": PASSWORD})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location == "/", location
    again = client.get("/login", query_string={"next": target})
    assert again.headers["Location"] == "/"


def test_next_parameter_to_a_local_page_is_followed(client, make_user):
    make_user("admin", "ada")
    response = client.post("/login", query_string={"next": "/admin/users?role=admin"},
                           data={"username": "ada", "password": PASSWORD})
    assert response.headers["Location"] == "/admin/users?role=admin"


def test_own_password_change_needs_current_password_and_policy(app, client, login_as, auth):
    login_as("requester", "rita")
    wrong = client.post("/account/password", data={
        "current_password": "nope-nope-nope", "new_password": "a-brand-new-secret-1",
        "confirm": "a-brand-new-secret-1"})
    assert b"The current password is wrong." in wrong.data
    short = client.post("/account/password", data={
        "current_password": PASSWORD, "new_password": "short1", "confirm": "short1"})
    assert b"at least 12 characters" in short.data
    ok = client.post("/account/password", data={
        "current_password": PASSWORD, "new_password": "a-brand-new-secret-1",
        "confirm": "a-brand-new-secret-1"})
    assert ok.status_code == 302
    auth.logout()
    assert auth.login("rita").status_code == 401
    assert auth.login("rita", "a-brand-new-secret-1").status_code == 302
    changed, = events(app, "user.password_changed")
    assert "a-brand-new-secret-1" not in changed.details


def test_password_is_stored_as_argon2id_hash(app, make_user):
    make_user("requester", "rita")
    stored = user_row(app, "rita").password_hash
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_login_time_is_recorded(app, make_user, auth, time_machine):
    time_machine.move_to(START, tick=False)
    make_user("requester", "rita")
    auth.login("rita")
    assert user_row(app, "rita").last_login_at == utcnow()


def test_changing_the_password_ends_the_accounts_other_sessions(app, client, login_as):
    login_as("requester", "rita")
    other = app.test_client()
    assert other.post("/login", data={"username": "rita", "password": PASSWORD}).status_code == 302
    assert other.get("/my/tickets").status_code == 200
    changed = client.post("/account/password", data={
        "current_password": PASSWORD, "new_password": "a-brand-new-secret-1",
        "confirm": "a-brand-new-secret-1"})
    assert changed.status_code == 302
    assert client.get("/my/tickets").status_code == 200        # this session goes on
    stale = other.get("/my/tickets")
    assert stale.status_code == 302 and "/login" in stale.headers["Location"]


@pytest.mark.postgres
def test_parallel_wrong_passwords_all_count_toward_the_lockout(app, make_user):
    """Eight simultaneous guesses (threads, or replicas) cannot slip past the counter."""
    import threading

    from tests.helpers import require_postgres

    require_postgres()
    make_user("requester", "rita")
    barrier = threading.Barrier(8)

    def guess() -> None:
        client = app.test_client()
        barrier.wait()
        client.post("/login", data={"username": "rita", "password": "not-her-password"})

    threads = [threading.Thread(target=guess) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert user_row(app, "rita").is_locked()
    counted = [e for e in events(app, "user.login_failed") if '"wrong password"' in e.details]
    assert len(counted) == 5


def test_a_session_cookie_copied_before_logout_is_useless_after_it(app, client, login_as):
    login_as("requester", "rita")
    stolen = client.get_cookie("pacsdesk_session").value
    assert client.post("/logout").status_code == 302
    replay = app.test_client()
    replay.set_cookie("pacsdesk_session", stolen)
    response = replay.get("/my/tickets")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
