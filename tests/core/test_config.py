"""The factory, configuration from PACSDESK_* variables, the secret key and the health check."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from app import create_app
from core.auth.directory import DIRECTORY_SETTINGS
from core.config import SETTINGS, ConfigError, load_config
from core.extensions import db
from tests.conftest import test_overrides as overrides_for

ROOT = Path(__file__).resolve().parents[2]
LDAP = {
    "PACSDESK_LDAP_URL": "ldaps://dc1.hospital.example:636",
    "PACSDESK_LDAP_BIND_DN": "cn=pacsdesk,ou=services,dc=hospital,dc=example",
    "PACSDESK_LDAP_BIND_PASSWORD": "service-account-secret",
    "PACSDESK_LDAP_USER_BASE": "ou=staff,dc=hospital,dc=example",
    "PACSDESK_LDAP_ROLE_GROUPS": "admin=cn=pacs-admins,ou=groups,dc=hospital,dc=example",
}
PACSDESK = Path(sys.executable).with_name("pacsdesk")


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    """A clean environment with an instance folder in ``tmp_path`` plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACSDESK_")}
    env["PACSDESK_INSTANCE_PATH"] = str(tmp_path / "instance")
    env.update(values)
    return env


def test_defaults_give_sqlite_in_instance_folder_and_utc(tmp_path):
    config = load_config({"PACSDESK_INSTANCE_PATH": str(tmp_path / "inst")})
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'inst' / 'pacsdesk.db'}"
    assert config["PACSDESK_TIMEZONE"] == "UTC"
    assert config["PACSDESK_SESSION_IDLE_MINUTES"] == 15
    assert config["PACSDESK_DICOM_AE_TITLE"] == "PACSDESK"
    assert (tmp_path / "inst").is_dir()


def test_every_setting_has_a_name_meaning_and_valid_default(tmp_path):
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    for setting in SETTINGS:
        assert setting.name.startswith("PACSDESK_") and setting.help
        if setting.default is not None:
            setting.parse(setting.default)


def test_postgres_urls_are_given_the_psycopg_driver(tmp_path):
    config = load_config({"PACSDESK_INSTANCE_PATH": str(tmp_path),
                          "PACSDESK_DATABASE_URL": "postgresql://u@db.example/pacs"})
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@db.example/pacs"


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("PACSDESK_SESSION_IDLE_MINUTES", "abc", "whole number"),
        ("PACSDESK_SESSION_IDLE_MINUTES", "0", "whole number"),
        ("PACSDESK_TIMEZONE", "Mars/Base", "IANA time zone"),
        ("PACSDESK_DICOM_AE_TITLE", "A" * 17, "at most 16"),
        ("PACSDESK_DICOM_AE_TITLE", "BAD\\AE", "backslash"),
        ("PACSDESK_DICOM_AE_TITLE", "   ", "empty"),
        ("PACSDESK_DATABASE_URL", "mysql://db/pacs", "sqlite"),
        ("PACSDESK_SECURE_COOKIES", "maybe", "true/false"),
        ("PACSDESK_BUSINESS_HOURS", "weekdays", "Mon-Fri"),
        ("PACSDESK_VERIFY_TIMEOUT", "0.1", "number from"),
        ("PACSDESK_SESSION_MAX_HOURS", "0", "whole number from 1 to 168"),
        ("PACSDESK_MFA_REQUIRED_ROLES", "admin,root", "root is not a role"),
        ("PACSDESK_LDAP_SYNC_MINUTES", "1", "whole number from 5 to 1440"),
    ],
)
def test_bad_value_is_refused_naming_the_variable(tmp_path, name, value, words):
    with pytest.raises(ConfigError) as caught:
        load_config({"PACSDESK_INSTANCE_PATH": str(tmp_path), name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}:")
    assert words in message
    assert "\n" not in message


def test_bad_value_stops_the_factory(tmp_path, monkeypatch):
    monkeypatch.setenv("PACSDESK_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("PACSDESK_TIMEZONE", "Mars/Base")
    with pytest.raises(ConfigError, match="PACSDESK_TIMEZONE"):
        create_app()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PACSDESK_SESSION_IDLE_MINUTES", "abc"),
        ("PACSDESK_TIMEZONE", "Mars/Base"),
        ("PACSDESK_DICOM_AE_TITLE", "SEVENTEEN_CHARS_X"),
    ],
)
def test_console_script_prints_one_line_naming_the_variable_and_exits_2(tmp_path, name, value):
    assert len("SEVENTEEN_CHARS_X") == 17
    done = subprocess.run([str(PACSDESK), "users", "list"], env=_env(tmp_path, **{name: value}),
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert name in lines[0]
    assert "Traceback" not in done.stdout + done.stderr


def test_module_entry_point_reports_config_errors_the_same_way(tmp_path):
    done = subprocess.run([sys.executable, "-m", "core.cli", "--help"],
                          env=_env(tmp_path, PACSDESK_SESSION_IDLE_MINUTES="abc"),
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "pacsdesk: configuration error: PACSDESK_SESSION_IDLE_MINUTES: must be a whole number "
        "from 1 to 1440 (got 'abc')"
    ]


def test_secret_key_is_generated_once_into_instance_folder_owner_only(tmp_path):
    instance = tmp_path / "inst"
    first = load_config({"PACSDESK_INSTANCE_PATH": str(instance)})["SECRET_KEY"]
    key_file = instance / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first) >= 64
    second = load_config({"PACSDESK_INSTANCE_PATH": str(instance)})["SECRET_KEY"]
    assert second == first
    other = load_config({"PACSDESK_INSTANCE_PATH": str(tmp_path / "other")})["SECRET_KEY"]
    assert other != first


def test_configured_secret_key_is_used_and_nothing_is_written(tmp_path):
    instance = tmp_path / "inst"
    config = load_config({"PACSDESK_INSTANCE_PATH": str(instance),
                          "PACSDESK_SECRET_KEY": "shared-by-every-replica"})
    assert config["SECRET_KEY"] == "shared-by-every-replica"
    assert not (instance / "secret_key").exists()


def test_factory_applies_test_config_and_session_cookie_flags(app):
    assert app.testing
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert app.config["SESSION_COOKIE_SECURE"] is False


def test_secure_cookies_setting_marks_the_session_cookie_secure(app_config):
    app_config["PACSDESK_SECURE_COOKIES"] = True
    app = create_app(app_config)
    assert app.config["SESSION_COOKIE_SECURE"] is True
    with app.app_context():
        db.engine.dispose()


def test_secure_cookie_is_sent_with_secure_httponly_and_samesite(app_config):
    app_config["PACSDESK_SECURE_COOKIES"] = True
    app = create_app(app_config)
    with app.app_context():
        from core.auth.models import Role
        from core.auth.services import NewUser, create_user

        create_user(NewUser(username="nina", role=Role.REQUESTER, password="a-long-password-9"))
        db.session.commit()
    client = app.test_client()
    response = client.post("/login", data={"username": "nina", "password": "a-long-password-9"},
                           base_url="https://localhost")
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_healthz_answers_json_without_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.is_json
    assert response.get_json() == {"status": "ok", "app": "ok", "database": "ok"}


def test_healthz_answers_a_head_request_without_a_body_and_leaves_other_methods_to_the_site(client):
    head = client.head("/healthz")
    assert head.status_code == 200 and head.data == b""
    assert head.headers["Cache-Control"] == "no-store"
    assert client.post("/healthz").status_code == 404  # only a page could answer, and none does


def test_healthz_answers_before_the_site_so_a_stuck_page_pipeline_cannot_hold_it(app, client):
    calls = []

    @app.before_request
    def stuck() -> None:
        """Stands for the per-page work (session, login, rate limit) going wrong."""
        calls.append(1)
        raise RuntimeError("per-page work failed")

    assert client.get("/healthz").status_code == 200
    assert client.head("/healthz").status_code == 200
    assert calls == []
    assert client.get("/login").status_code == 500 and calls == [1]


def test_healthz_reports_unavailable_database_with_503(tmp_path):
    config = overrides_for(tmp_path / "inst", f"sqlite:///{tmp_path / 'missing' / 'none.db'}")
    app = create_app(config)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["database"] == "unavailable"
    assert b"Traceback" not in response.data and b"sqlite" not in response.data.lower()


def test_sqlite_runs_in_wal_mode_with_foreign_keys_on(tmp_path):
    app = create_app(overrides_for(tmp_path / "inst", f"sqlite:///{tmp_path / 'pacs.db'}"))
    with app.app_context():
        assert db.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        db.session.remove()
        db.engine.dispose()


def test_times_are_shown_in_the_configured_time_zone(app_config):
    from datetime import UTC, datetime

    from core.timeutil import format_local

    app_config["PACSDESK_TIMEZONE"] = "America/New_York"
    app = create_app(app_config)
    with app.app_context():
        assert format_local(datetime(2026, 1, 15, 17, 0, tzinfo=UTC)) == "2026-01-15 12:00 EST"
        db.engine.dispose()


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    missing = [s.name for s in (*SETTINGS, *DIRECTORY_SETTINGS) if f"| `{s.name}` |" not in readme]
    assert not missing, f"add these to README.md's configuration table: {missing}"


def test_account_settings_defaults(tmp_path):
    config = load_config({"PACSDESK_INSTANCE_PATH": str(tmp_path)})
    assert config["PACSDESK_SESSION_MAX_HOURS"] == 12
    assert config["PACSDESK_MFA_REQUIRED_ROLES"] == frozenset({"admin", "compliance"})
    assert config["PACSDESK_LDAP_SYNC_MINUTES"] == 60
    assert config["PACSDESK_DIRECTORY"] is None, "no PACSDESK_LDAP_URL: local accounts only"
    none = load_config({"PACSDESK_INSTANCE_PATH": str(tmp_path), "PACSDESK_MFA_REQUIRED_ROLES": "none"})
    assert none["PACSDESK_MFA_REQUIRED_ROLES"] == frozenset()


def test_directory_settings_are_read_at_start_up(tmp_path):
    config = load_config({"PACSDESK_INSTANCE_PATH": str(tmp_path), **LDAP})
    directory = config["PACSDESK_DIRECTORY"]
    assert directory.urls == ("ldaps://dc1.hospital.example:636",)
    assert directory.role_groups == (("admin", "cn=pacs-admins,ou=groups,dc=hospital,dc=example"),)


def test_a_bad_directory_setting_stops_start_up_naming_the_variable(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config({"PACSDESK_INSTANCE_PATH": str(tmp_path), **LDAP,
                     "PACSDESK_LDAP_ROLE_GROUPS": "superuser=cn=x,dc=hospital,dc=example"})
    assert str(caught.value).startswith("PACSDESK_LDAP_ROLE_GROUPS:")
    env = _env(tmp_path, **LDAP, PACSDESK_LDAP_TIMEOUT="forever")
    done = subprocess.run([str(PACSDESK), "users", "list"], env=env, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "pacsdesk: configuration error: PACSDESK_LDAP_TIMEOUT: must be a whole number from 1 to 120 "
        "(got 'forever')"]
