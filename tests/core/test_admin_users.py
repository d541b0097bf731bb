"""The administrators' account pages: create, change role, disable, enable, unlock."""

from __future__ import annotations

import re

from sqlalchemy import select

from audit.trail.chain import verify_chain
from audit.trail.models import AuditEvent
from core.auth.models import User
from core.extensions import db
from tests.conftest import PASSWORD


def stored(app, username: str) -> User | None:
    """The account as stored now, or None."""
    with app.app_context():
        user = db.session.execute(select(User).where(User.username == username)).scalar_one_or_none()
        if user is not None:
            db.session.expunge(user)
        return user


def actions(app) -> list[tuple[str, str | None]]:
    """(action, acting username) of every audit event, in order."""
    with app.app_context():
        return [(e.action, e.username) for e in
                db.session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars()]


def test_created_account_shows_its_generated_password_once(app, client, login_as):
    login_as("admin", "ada")
    response = client.post("/admin/users/new", data={
        "username": "New.Tech", "full_name": "Nia Tech", "email": "nia@hospital.example",
        "department": "PACS team", "role": "technician", "password": ""})
    assert response.status_code == 302
    page = client.get("/admin/users").data.decode()
    match = re.search(r"shown only this once: (\S+)</", page) or re.search(
        r"shown only this once: (\S+)", page)
    assert match, page
    password = match.group(1).strip()
    assert len(password) >= 12
    assert "shown only" not in client.get("/admin/users").data.decode()
    user = stored(app, "new.tech")
    assert user is not None and user.role == "technician" and user.department == "PACS team"
    other = app.test_client()
    assert other.post("/login", data={"username": "new.tech", "password": password}).status_code == 302
    assert ("user.created", "ada") in actions(app)


def test_admin_may_set_the_initial_password(app, client, login_as):
    login_as("admin", "ada")
    client.post("/admin/users/new", data={"username": "rita", "role": "requester",
                                          "password": "chosen-by-admin-42"})
    assert "shown only" not in client.get("/admin/users").data.decode()
    other = app.test_client()
    response = other.post("/login", data={"username": "rita", "password": "chosen-by-admin-42"})
    assert response.status_code == 302


def test_short_password_and_duplicate_or_bad_username_are_refused_on_the_form(app, client, login_as):
    login_as("admin", "ada")
    short = client.post("/admin/users/new", data={"username": "rita", "role": "requester",
                                                  "password": "short"})
    assert short.status_code == 200 and b"at least 12 characters" in short.data
    assert stored(app, "rita") is None
    taken = client.post("/admin/users/new", data={"username": "ADA", "role": "requester"})
    assert b"already taken" in taken.data
    bad = client.post("/admin/users/new", data={"username": "<script>", "role": "requester"})
    assert b"Username: 2-64 characters" in bad.data
    role = client.post("/admin/users/new", data={"username": "zed", "role": "superuser"})
    assert role.status_code == 200 and stored(app, "zed") is None


def test_user_list_filters_by_role_and_text(client, login_as, make_user):
    login_as("admin", "ada")
    make_user("technician", "sam", full_name="Sam Rivera")
    make_user("requester", "rita", full_name="Rita Okafor")
    page = client.get("/admin/users", query_string={"role": "technician"}).data
    assert b"sam" in page and b"rita" not in page
    page = client.get("/admin/users", query_string={"q": "okafor"}).data
    assert b"rita" in page and b"sam" not in page


def test_admin_changes_a_role_and_the_change_is_audited(app, client, login_as, make_user):
    login_as("admin", "ada")
    rita = make_user("requester", "rita")
    form = {"full_name": "Rita Okafor", "email": "", "department": "CT", "role": "compliance"}
    asked = client.post(f"/admin/users/{rita.id}", data=form)
    assert asked.status_code == 200 and b"Change rita from Requester to Compliance officer?" in asked.data
    assert stored(app, "rita").role == "requester", "nothing changes before the confirmation"
    for name, value in form.items():
        assert f'name="{name}" value="{value}"'.encode() in asked.data
    response = client.post(f"/admin/users/{rita.id}", data={**form, "confirmed": "yes"})
    assert response.status_code == 302
    user = stored(app, "rita")
    assert user.role == "compliance" and user.department == "CT"
    assert ("user.role_changed", "ada") in actions(app)
    assert ("user.updated", "ada") in actions(app)


def test_admin_cannot_change_own_role(app, client, login_as):
    ada = login_as("admin", "ada")
    response = client.post(f"/admin/users/{ada.id}", data={"full_name": "", "role": "requester"})
    assert b"You cannot change your own role." in response.data
    assert stored(app, "ada").role == "admin"


def test_admin_disables_an_account_which_ends_its_session(app, client, login_as, make_user):
    login_as("admin", "ada")
    sam = make_user("technician", "sam")
    sams_browser = app.test_client()
    sams_browser.post("/login", data={"username": "sam", "password": PASSWORD})
    assert sams_browser.get("/").status_code == 200
    page = client.get(f"/admin/users/{sam.id}").data
    assert f'href="/admin/users/{sam.id}/disable"'.encode() in page
    asked = client.get(f"/admin/users/{sam.id}/disable")
    assert asked.status_code == 200 and b"Disable sam?" in asked.data
    assert b'name="confirmed" value="yes"' in asked.data
    unconfirmed = client.post(f"/admin/users/{sam.id}/disable")
    assert unconfirmed.status_code == 200 and b"Disable sam?" in unconfirmed.data
    assert not stored(app, "sam").is_disabled, "a post without the confirmation changes nothing"
    assert client.post(f"/admin/users/{sam.id}/disable", data={"confirmed": "yes"}).status_code == 302
    assert stored(app, "sam").is_disabled
    assert sams_browser.get("/").status_code == 302
    assert sams_browser.post("/login", data={"username": "sam",
                                             "password": PASSWORD}).status_code == 401
    assert ("user.disabled", "ada") in actions(app)
    client.post(f"/admin/users/{sam.id}/enable")
    assert not stored(app, "sam").is_disabled
    assert ("user.enabled", "ada") in actions(app)
    assert sams_browser.post("/login", data={"username": "sam",
                                             "password": PASSWORD}).status_code == 302


def test_admin_cannot_disable_own_account(app, client, login_as):
    ada = login_as("admin", "ada")
    response = client.post(f"/admin/users/{ada.id}/disable", data={"confirmed": "yes"},
                           follow_redirects=True)
    assert b"You cannot disable your own account." in response.data
    assert not stored(app, "ada").is_disabled
    assert client.get("/admin/users").status_code == 200


def test_admin_unlocks_a_locked_account(app, client, login_as, make_user):
    login_as("admin", "ada")
    sam = make_user("technician", "sam")
    other = app.test_client()
    for _ in range(5):
        other.post("/login", data={"username": "sam", "password": "wrong-password-123"})
    assert stored(app, "sam").is_locked()
    assert b"Unlock" in client.get(f"/admin/users/{sam.id}").data
    assert client.post(f"/admin/users/{sam.id}/unlock").status_code == 302
    assert not stored(app, "sam").is_locked()
    assert other.post("/login", data={"username": "sam", "password": PASSWORD}).status_code == 302
    assert ("user.unlocked", "ada") in actions(app)


def test_unknown_account_and_unknown_action_answer_404(client, login_as, make_user):
    login_as("admin", "ada")
    sam = make_user("technician", "sam")
    assert client.get("/admin/users/9999").status_code == 404
    assert client.post("/admin/users/9999/disable").status_code == 404
    assert client.post(f"/admin/users/{sam.id}/delete").status_code == 404


def test_account_changes_keep_the_audit_chain_intact(app, client, login_as, make_user):
    login_as("admin", "ada")
    sam = make_user("technician", "sam")
    client.post(f"/admin/users/{sam.id}/disable", data={"confirmed": "yes"})
    client.post(f"/admin/users/{sam.id}/enable")
    with app.app_context():
        result = verify_chain()
    assert result.ok and result.count >= 5
