"""Logging in to the app with the hospital directory (a real slapd): accounts made just in time, roles
from groups, local accounts beside it, a directory that is down, slow or shows the wrong certificate,
and hostile input."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from app import create_app
from audit.trail.models import AuditEvent
from core.auth.models import User
from core.extensions import db
from tests.conftest import PASSWORD
from tests.core.directory.slapd import USER_PASSWORD
from tests.helpers import free_port

pytestmark = pytest.mark.integration

NOT_ALLOWED = b"Your account is not allowed to use PACS Desk; ask the PACS team."
UNREACHABLE = b"The hospital directory cannot be reached."


@pytest.fixture
def app_config(app_config: dict, ad_config) -> dict:
    """The app signs people in with the AD-shaped test directory."""
    app_config["PACSDESK_DIRECTORY"] = ad_config()
    return app_config


def events(app, action: str) -> list[AuditEvent]:
    """Audit events of one action, in chain order."""
    with app.app_context():
        rows = list(db.session.execute(select(AuditEvent).where(AuditEvent.action == action)
                                       .order_by(AuditEvent.seq)).scalars())
        db.session.expunge_all()
        return rows


def account(app, username: str) -> User | None:
    """The account as stored now, or None."""
    with app.app_context():
        user = db.session.execute(select(User).where(User.username == username)).scalar_one_or_none()
        if user is not None:
            db.session.expunge(user)
        return user


def directory_login(client, username: str, password: str = USER_PASSWORD):
    """Post the login form with a directory password."""
    return client.post("/login", data={"username": username, "password": password})


@pytest.fixture
def other_app(app_config: dict):
    """``other_app(**settings)``: an app on the same database with other settings."""
    made = []

    def factory(**settings):
        application = create_app({**app_config, **settings})
        made.append(application)
        return application

    yield factory
    for application in made:
        with application.app_context():
            db.session.remove()
            db.engine.dispose()


def test_the_first_login_creates_the_account_from_the_directory(app, client):
    assert account(app, "rita.radiologist") is None
    response = directory_login(client, "Rita.Radiologist")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    rita = account(app, "rita.radiologist")
    assert (rita.full_name, rita.email, rita.department, rita.role) == (
        "Rita Núñez", "rita.radiologist@hospital.org", "Radiology", "requester")
    assert rita.is_directory and rita.directory_dn.startswith("cn=Rita Núñez,ou=staff")
    assert USER_PASSWORD not in rita.password_hash and not rita.password_hash.startswith("$argon2")
    created, = events(app, "user.created")
    login, = events(app, "user.login")
    assert '"source":"directory"' in created.details
    assert login.username == "rita.radiologist" and '"method":"directory"' in login.details
    assert '"second_factor":"none"' in login.details


def test_the_most_privileged_group_gives_the_role(app, client):
    directory_login(client, "alice.admin")  # in pacs-admins and radiology
    assert account(app, "alice.admin").role == "admin"
    assert client.get("/admin/users").status_code == 200


def test_a_person_in_no_role_group_is_refused(app, client):
    response = directory_login(client, "nora.nogroup")
    assert response.status_code == 401 and NOT_ALLOWED in response.data
    assert account(app, "nora.nogroup") is None
    failed, = events(app, "user.login_failed")
    assert '"reason":"in no role group"' in failed.details


def test_nested_groups_count_only_when_configured(app, client, other_app, ad_config):
    assert NOT_ALLOWED in directory_login(client, "rex.resident").data
    nested = other_app(PACSDESK_DIRECTORY=ad_config(nested_groups="true")).test_client()
    assert directory_login(nested, "rex.resident").status_code == 302
    assert account(app, "rex.resident").role == "requester"


def test_a_person_disabled_or_expired_in_the_directory_is_refused(app, client):
    disabled = directory_login(client, "dan.disabled")
    assert disabled.status_code == 401 and b"disabled in the hospital directory" in disabled.data
    expired = directory_login(client, "ed.expired")
    assert expired.status_code == 401 and b"disabled in the hospital directory" in expired.data
    assert account(app, "dan.disabled") is None and account(app, "ed.expired") is None


def test_an_unknown_name_and_a_wrong_password_get_the_same_answer(app):
    directory_login(app.test_client(), "rita.radiologist")
    wrong = directory_login(app.test_client(), "rita.radiologist", USER_PASSWORD + "x")
    unknown = directory_login(app.test_client(), "nobody.here")
    assert wrong.status_code == unknown.status_code == 401
    assert b"Invalid username or password." in wrong.data and b"Invalid username or password." in unknown.data
    reasons = [e.details for e in events(app, "user.login_failed")]
    assert '"reason":"wrong password"' in reasons[0] and '"reason":"unknown user"' in reasons[1]
    assert USER_PASSWORD not in "".join(reasons)


def test_wrong_directory_passwords_lock_the_account(app):
    directory_login(app.test_client(), "tom.tech")
    for _ in range(5):
        directory_login(app.test_client(), "tom.tech", "not-toms-password-1")
    refused = directory_login(app.test_client(), "tom.tech")
    assert refused.status_code == 401 and b"locked" in refused.data
    assert len(events(app, "user.locked")) == 1


def test_local_accounts_keep_working_beside_the_directory(app, client, make_user):
    make_user("admin", "ada")
    assert client.post("/login", data={"username": "ada", "password": PASSWORD}).status_code == 302
    login, = events(app, "user.login")
    assert '"method":"local"' in login.details


def test_when_the_directory_is_down_its_users_are_told_and_a_local_admin_still_logs_in(
        app, make_user, other_app, ad_config):
    make_user("admin", "ada")
    directory_login(app.test_client(), "tom.tech")  # an account made while the directory was up
    down = other_app(PACSDESK_DIRECTORY=ad_config(url=f"ldaps://127.0.0.1:{free_port()}"))
    for name in ("tom.tech", "rita.radiologist"):
        refused = directory_login(down.test_client(), name)
        assert refused.status_code == 401 and UNREACHABLE in refused.data
    local = down.test_client()
    assert local.post("/login", data={"username": "ada", "password": PASSWORD}).status_code == 302
    assert local.get("/admin/users").status_code == 200
    failed = events(app, "user.login_failed")
    assert all('"reason":"directory unreachable"' in f.details for f in failed)
    assert [f.username for f in failed] == ["tom.tech", "rita.radiologist"]


def test_a_directory_that_never_answers_is_bounded_by_the_timeout(app, other_app, ad_config, silent_port):
    slow = other_app(PACSDESK_DIRECTORY=ad_config(url=f"ldaps://127.0.0.1:{silent_port}", timeout="1"))
    started = time.monotonic()
    response = directory_login(slow.test_client(), "rita.radiologist")
    # Without the timeout the login would wait on the silent port far longer; the margin is for a busy
    # machine (both suites run side by side in CI), where the request itself can take a second or two.
    assert time.monotonic() - started < 1 + 5
    assert response.status_code == 401 and UNREACHABLE in response.data


def test_a_certificate_for_another_host_is_refused(app, other_app, ad_config, wrong_host_slapd):
    wrong = other_app(PACSDESK_DIRECTORY=ad_config(url=wrong_host_slapd.ldaps_url))
    response = directory_login(wrong.test_client(), "rita.radiologist")
    assert response.status_code == 401 and UNREACHABLE in response.data
    assert account(app, "rita.radiologist") is None


@pytest.mark.parametrize("username", ["*)(uid=*", "admin)(|(uid=*", "*", "*)(sAMAccountName=*"])
def test_ldap_injection_in_the_username_logs_nobody_in(app, client, username):
    response = directory_login(client, username)
    assert response.status_code == 401 and b"Invalid username or password." in response.data
    with app.app_context():
        assert db.session.execute(select(User)).first() is None
    failed, = events(app, "user.login_failed")
    assert failed.username is None and username not in failed.details


@pytest.mark.parametrize("password", ["", "   "])
def test_an_empty_password_is_never_a_login(app, client, password):
    response = directory_login(client, "rita.radiologist", password)
    assert response.status_code == 401
    assert client.get("/").status_code == 302
    assert account(app, "rita.radiologist") is None and not events(app, "user.login")


def test_a_directory_account_cannot_set_a_local_password(app, client, make_user):
    directory_login(client, "rita.radiologist")
    page = client.get("/account/password")
    assert b"signs in with the hospital directory" in page.data and b'name="new_password"' not in page.data
    refused = client.post("/account/password", data={"current_password": USER_PASSWORD,
                                                     "new_password": "plum-orbit-ledger-93",
                                                     "confirm": "plum-orbit-ledger-93"})
    assert refused.status_code == 403
    make_user("admin", "ada")
    admin = app.test_client()
    admin.post("/login", data={"username": "ada", "password": PASSWORD})
    rita = account(app, "rita.radiologist")
    assert b"Reset password" not in admin.get(f"/admin/users/{rita.id}").data
    reset = admin.post(f"/admin/users/{rita.id}/reset-password", data={"confirmed": "yes"},
                       follow_redirects=True)
    assert b"manages this account&#39;s password" in reset.data
    assert not events(app, "user.password_reset") and not events(app, "user.password_changed")


def test_mfa_applies_to_directory_accounts(app, other_app):
    strict = other_app(PACSDESK_MFA_REQUIRED_ROLES=frozenset({"admin"}))
    client = strict.test_client()
    response = directory_login(client, "alice.admin")
    assert response.headers["Location"] == "/login/enrol"
    assert client.get("/admin/users").status_code == 302
    assert account(app, "alice.admin") is not None and not events(app, "user.login")
