"""CSRF, rate limiting, security headers, error pages and each role's access to each page."""

from __future__ import annotations

import re

import pytest
from flask import Flask

from app import create_app
from core.extensions import db
from tests.conftest import PASSWORD

ROLES = ("requester", "technician", "compliance", "admin")


@pytest.fixture
def csrf_app(app_config) -> Flask:
    """An app with CSRF protection switched on, as in production."""
    app_config["WTF_CSRF_ENABLED"] = True
    application = create_app(app_config)
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


def csrf_token(page: bytes) -> str:
    """The CSRF token embedded in a rendered form."""
    match = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert match, "no csrf_token field in the page"
    return match.group(1).decode()


def test_login_without_csrf_token_is_rejected(csrf_app, make_user):
    make_user("admin", "ada")
    client = csrf_app.test_client()
    response = client.post("/login", data={"username": "ada", "password": PASSWORD})
    assert response.status_code == 400
    assert b"The form expired" in response.data
    assert client.get("/").status_code == 302


def test_login_with_csrf_token_succeeds(csrf_app, make_user):
    make_user("admin", "ada")
    client = csrf_app.test_client()
    token = csrf_token(client.get("/login").data)
    response = client.post("/login", data={"username": "ada", "password": PASSWORD,
                                           "csrf_token": token})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def _logged_in(csrf_app) -> tuple:
    """A client logged in as an admin through the real form."""
    client = csrf_app.test_client()
    token = csrf_token(client.get("/login").data)
    client.post("/login", data={"username": "ada", "password": PASSWORD, "csrf_token": token})
    return client, csrf_token(client.get("/").data)


def test_logout_without_csrf_token_is_rejected_and_session_survives(csrf_app, make_user):
    make_user("admin", "ada")
    client, token = _logged_in(csrf_app)
    assert client.post("/logout").status_code == 400
    assert client.get("/").status_code == 200
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/").status_code == 302


def test_admin_actions_without_csrf_token_are_rejected(csrf_app, make_user):
    make_user("admin", "ada")
    target = make_user("requester", "rita")
    client, token = _logged_in(csrf_app)
    assert client.post(f"/admin/users/{target.id}/disable").status_code == 400
    assert client.post("/admin/users/new", data={"username": "eve", "role": "admin"}).status_code == 400
    assert client.post(f"/admin/users/{target.id}/disable",
                       data={"csrf_token": token, "confirmed": "yes"}).status_code == 302


def test_csrf_token_from_another_session_is_rejected(csrf_app, make_user):
    make_user("admin", "ada")
    _, foreign_token = _logged_in(csrf_app)
    victim = csrf_app.test_client()
    victim.get("/login")
    response = victim.post("/login", data={"username": "ada", "password": PASSWORD,
                                           "csrf_token": foreign_token})
    assert response.status_code == 400


def test_login_is_rate_limited_per_address(app_config, make_user):
    app_config["RATELIMIT_ENABLED"] = True
    app = create_app(app_config)
    make_user("admin", "ada")
    client = app.test_client()
    codes = [client.post("/login", data={"username": "x", "password": "wrong-password-1"},
                         environ_base={"REMOTE_ADDR": "10.1.1.1"}).status_code for _ in range(11)]
    assert codes[:10] == [401] * 10
    assert codes[10] == 429
    other = client.post("/login", data={"username": "ada", "password": PASSWORD},
                        environ_base={"REMOTE_ADDR": "10.1.1.2"})
    assert other.status_code == 302
    assert client.get("/login", environ_base={"REMOTE_ADDR": "10.1.1.1"}).status_code in {200, 302}
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("path", ["/login", "/healthz", "/no-such-page", "/", "/admin/users",
                                  "/static/css/pacsdesk.css"])
def test_security_headers_on_every_response(client, login_as, path):
    login_as("admin", "ada")
    response = client.get(path)
    csp = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"]
    response.close()


def test_pages_carry_no_inline_script_or_style(client, login_as):
    login_as("admin", "ada")
    for path in ("/", "/admin/users", "/admin/users/new", "/account/password"):
        page = client.get(path).data.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), path
        assert " style=" not in page, path
        assert not re.search(r"\son[a-z]+=", page), path


def test_pages_with_personal_data_are_not_cached(client, login_as):
    login_as("admin", "ada")
    assert client.get("/admin/users").headers["Cache-Control"] == "no-store"


def test_404_page_is_friendly_and_reveals_nothing(client):
    response = client.get("/etc/passwd")
    assert response.status_code == 404
    assert b"Not found" in response.data
    for leak in (b"Traceback", b"werkzeug", b"Werkzeug", b"site-packages"):
        assert leak not in response.data


def test_403_page_is_friendly_and_reveals_nothing(client, login_as):
    login_as("requester", "rita")
    response = client.get("/admin/users")
    assert response.status_code == 403
    assert b"Not allowed" in response.data
    assert b"users.manage" not in response.data and b"Traceback" not in response.data


def test_500_page_reveals_no_internals_and_rolls_back(app, client):
    def explode():
        raise RuntimeError("secret internal detail at /srv/pacsdesk/db.py")

    app.add_url_rule("/test-explode", "test_explode", explode)
    response = client.get("/test-explode")
    assert response.status_code == 500
    assert b"Something went wrong" in response.data
    for leak in (b"secret internal detail", b"RuntimeError", b"Traceback", b".py"):
        assert leak not in response.data
    assert client.get("/healthz").status_code == 200


def test_json_clients_get_json_errors(client):
    response = client.get("/nothing-here", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert response.get_json()["error"] == "Not found"


def test_healthz_reveals_no_details(client):
    body = client.get("/healthz").get_json()
    assert set(body) == {"status", "app", "database"}


PAGES = ("/", "/admin/users", "/admin/users/new", "/account/password")
EXPECTED = {
    "requester": {"/": 200, "/admin/users": 403, "/admin/users/new": 403, "/account/password": 200},
    "technician": {"/": 200, "/admin/users": 403, "/admin/users/new": 403, "/account/password": 200},
    "compliance": {"/": 200, "/admin/users": 403, "/admin/users/new": 403, "/account/password": 200},
    "admin": {"/": 200, "/admin/users": 200, "/admin/users/new": 200, "/account/password": 200},
}


@pytest.mark.parametrize("role", ROLES)
def test_each_role_reaches_exactly_its_pages(client, login_as, make_user, role):
    other = make_user("requester", "someone")
    login_as(role, f"the.{role}")
    for path, status in EXPECTED[role].items():
        assert client.get(path).status_code == status, (role, path)
    edit = client.get(f"/admin/users/{other.id}").status_code
    assert edit == (200 if role == "admin" else 403)
    action = client.post(f"/admin/users/{other.id}/disable", data={"confirmed": "yes"}).status_code
    assert action == (302 if role == "admin" else 403)
    assert client.get("/healthz").status_code == 200


def test_anonymous_visitor_reaches_only_login_and_healthz(client, make_user):
    other = make_user("requester", "someone")
    for path in (*PAGES, f"/admin/users/{other.id}"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login")
    assert client.post(f"/admin/users/{other.id}/disable").status_code == 302
    assert client.get("/login").status_code == 200
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("role", ROLES)
def test_navigation_shows_users_link_only_to_admins(client, login_as, role):
    login_as(role, f"the.{role}")
    page = client.get("/").data
    assert (b'href="/admin/users"' in page) == (role == "admin")
