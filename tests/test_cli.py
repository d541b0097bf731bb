"""The `pacsdesk` command: setup, users, serve, demo and audit verify."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app import create_app
from audit.trail.chain import verify_chain
from audit.trail.models import AuditEvent
from core.auth.models import User
from core.extensions import db
from tests.conftest import test_overrides as overrides_for
from tests.helpers import free_port

PACSDESK = Path(sys.executable).with_name("pacsdesk")


def cli_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    """Environment for a `pacsdesk` subprocess on its own instance folder and database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACSDESK_")}
    env.update(PACSDESK_INSTANCE_PATH=str(tmp_path / "instance"), PACSDESK_DATABASE_URL=database_url)
    return env


def pacsdesk(tmp_path: Path, database_url: str, *args: str, stdin: str | None = None):
    """Run `pacsdesk ARGS` and return the completed process."""
    return subprocess.run([str(PACSDESK), *args], env=cli_env(tmp_path, database_url), input=stdin,
                          capture_output=True, text=True, timeout=180, cwd=tmp_path)


def test_setup_creates_the_first_admin_once_with_a_generated_password(tmp_path):
    url = f"sqlite:///{tmp_path / 'pacsdesk.db'}"
    first = pacsdesk(tmp_path, url, "setup")
    assert first.returncode == 0, first.stderr
    match = re.search(r"username: (\S+)\s+password: (\S+)", first.stdout)
    assert match, first.stdout
    username, password = match.groups()
    assert username == "admin" and len(password) >= 16
    second = pacsdesk(tmp_path, url, "setup")
    assert second.returncode == 0, second.stderr
    assert "password:" not in second.stdout
    assert "no new administrator" in second.stdout
    (tmp_path / "again").mkdir()
    third = pacsdesk(tmp_path / "again", f"sqlite:///{tmp_path / 'other.db'}", "setup")
    assert re.search(r"password: (\S+)", third.stdout).group(1) != password

    app = create_app(overrides_for(tmp_path / "instance", url))  # the audit key is in the instance
    with app.app_context():
        admins = list(db.session.execute(select(User)).scalars())
        assert [(u.username, u.role) for u in admins] == [("admin", "admin")]
        assert verify_chain().ok
    client = app.test_client()
    assert client.post("/login", data={"username": username, "password": password}).status_code == 302
    assert "/account/password" in client.get("/admin/users").headers["Location"], \
        "the printed password must be changed before anything else"
    changed = client.post("/account/password", data={"current_password": password,
                                                     "new_password": "Lantern-harbour-violet-42",
                                                     "confirm": "Lantern-harbour-violet-42"})
    assert changed.status_code == 302
    assert client.get("/admin/users").status_code == 200
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_users_create_reads_the_password_from_stdin(app, runner):
    result = runner.invoke(args=["users", "create", "Sam", "--role", "technician",
                                 "--email", "sam@hospital.example", "--password-stdin"],
                           input="a-long-enough-secret\n")
    assert result.exit_code == 0, result.output
    assert "created sam (technician)" in result.output
    assert "a-long-enough-secret" not in result.output
    with app.app_context():
        user = db.session.execute(select(User).where(User.username == "sam")).scalar_one()
        assert user.email == "sam@hospital.example"
        event = db.session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars().first()
        assert event.action == "user.created" and event.user_id is None
    client = app.test_client()
    response = client.post("/login", data={"username": "sam", "password": "a-long-enough-secret"})
    assert response.status_code == 302


def test_users_create_refuses_a_short_password_and_writes_nothing(app, runner):
    result = runner.invoke(args=["users", "create", "sam", "--role", "technician",
                                 "--password-stdin"], input="short\n")
    assert result.exit_code == 1
    assert "at least 12 characters" in result.output
    with app.app_context():
        assert db.session.execute(select(User)).first() is None
        assert db.session.execute(select(AuditEvent)).first() is None


def test_users_create_refuses_an_unknown_role_and_a_taken_name(runner, make_user):
    make_user("requester", "rita")
    bad_role = runner.invoke(args=["users", "create", "sam", "--role", "root"])
    assert bad_role.exit_code == 2 and "root" in bad_role.output
    taken = runner.invoke(args=["users", "create", "rita", "--role", "admin"])
    assert taken.exit_code == 1 and "already taken" in taken.output


def test_users_create_without_stdin_prints_a_generated_password(runner):
    result = runner.invoke(args=["users", "create", "noor", "--role", "compliance"])
    assert result.exit_code == 0
    assert re.search(r"password: \S{20}", result.output)


def test_users_commands_change_role_disable_enable_and_unlock(app, runner, make_user):
    make_user("requester", "rita")
    assert runner.invoke(args=["users", "set-role", "rita", "technician"]).exit_code == 0
    assert runner.invoke(args=["users", "disable", "rita"]).exit_code == 0
    listing = runner.invoke(args=["users", "list"]).output
    assert re.search(r"rita\s+technician\s+disabled", listing)
    assert runner.invoke(args=["users", "enable", "rita"]).exit_code == 0
    assert runner.invoke(args=["users", "unlock", "rita"]).exit_code == 0
    missing = runner.invoke(args=["users", "disable", "nobody"])
    assert missing.exit_code == 1 and "no account named 'nobody'" in missing.output
    with app.app_context():
        actions = [a for a in db.session.execute(select(AuditEvent.action).order_by(AuditEvent.seq)).scalars()
                   if a != "training.assigned"]
    assert actions == ["user.created", "user.role_changed", "user.disabled", "user.enabled",
                       "user.unlocked"]


def test_audit_verify_command_exits_zero_with_the_count(runner, make_user):
    make_user("requester", "rita")
    with runner.app.app_context():
        written = db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0
    assert f"audit trail intact: {written} events" in result.output


def test_demo_refuses_a_database_with_real_data(app, runner, make_user):
    make_user("admin", "ada")
    make_user("technician", "sam")
    result = runner.invoke(args=["demo"])
    assert result.exit_code == 1
    assert "refusing to load demo data" in result.output
    with app.app_context():
        assert len(db.session.execute(select(User)).all()) == 2


def test_demo_fills_an_empty_database_with_every_role(app, runner):
    result = runner.invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    assert re.search(r"pacs\.sam\s+\S{16}\s+Technician", result.output)
    with app.app_context():
        roles = {u.role for u in db.session.execute(select(User)).scalars()}
        assert roles == {"requester", "technician", "compliance", "admin"}
        assert verify_chain().ok
    again = runner.invoke(args=["demo"])
    assert again.exit_code == 1 and "refusing" in again.output


def test_serve_answers_health_checks_under_gunicorn(tmp_path):
    url = f"sqlite:///{tmp_path / 'pacsdesk.db'}"
    port = free_port()
    server = subprocess.Popen(
        [str(PACSDESK), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--threads", "2", "--no-worker"],
        env=cli_env(tmp_path, url), cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        body = None
        while time.monotonic() < deadline and body is None:
            if server.poll() is not None:
                pytest.fail(f"server exited early: {server.stdout.read()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
                    body = reply.read().decode()
                    headers = reply.headers
            except OSError:
                time.sleep(0.2)
        assert body is not None, "server did not answer /healthz within 60 s"
        assert '"database":"ok"' in body.replace(" ", "")
        assert headers["X-Content-Type-Options"] == "nosniff"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as reply:
            assert reply.status == 200
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()
    assert server.returncode is not None
