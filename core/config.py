"""Configuration from ``PACSDESK_*`` environment variables, validated at start-up."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.mail.settings import SETTINGS_HELP as MAIL_SETTINGS_HELP
from core.mail.settings import MailConfigError, MailSettings, load_mail_settings


class ConfigError(Exception):
    """A configuration value is invalid; the message names the variable."""


@dataclass(frozen=True)
class Setting:
    """One ``PACSDESK_*`` environment variable: its parser, default and meaning."""

    name: str
    default: str | None
    parse: Callable[[str], Any]
    help: str
    secret: bool = False  # may hold a password: never echoed in an error


def _int_range(low: int, high: int) -> Callable[[str], int]:
    """Build a parser for an integer between ``low`` and ``high``."""

    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"must be a whole number from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return value

    return parse


def _float_range(low: float, high: float) -> Callable[[str], float]:
    """Build a parser for a number between ``low`` and ``high``."""

    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"must be a number from {low:g} to {high:g}") from None
        if not low <= value <= high:
            raise ValueError(f"must be a number from {low:g} to {high:g}")
        return value

    return parse


def _bool(raw: str) -> bool:
    """Parse a yes/no flag."""
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be one of true/false, yes/no, on/off, 1/0")


def _timezone(raw: str) -> str:
    """Check an IANA time zone name."""
    try:
        ZoneInfo(raw.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone name such as Europe/Paris") from None
    return raw.strip()


def _database_url(raw: str) -> str:
    """Check a database URL is SQLite or PostgreSQL."""
    value = raw.strip()
    if value.startswith("postgres://"):
        value = "postgresql+psycopg://" + value[len("postgres://") :]
    elif value.startswith("postgresql://"):
        value = "postgresql+psycopg://" + value[len("postgresql://") :]
    if not value.startswith(("sqlite://", "postgresql+psycopg://")):
        raise ValueError("must be a sqlite:/// or postgresql:// URL")
    return value


AE_TITLE_CHARS = re.compile(r"^[\x20-\x5b\x5d-\x7e]+$")


def ae_title_problem(value: str) -> str | None:
    """Return why ``value`` is not a valid DICOM AE title, or None if it is."""
    if not value or not value.strip():
        return "an AE title cannot be empty or all spaces"
    if len(value.strip()) > 16:
        return f"an AE title has at most 16 characters (this one has {len(value.strip())})"
    if "\\" in value:
        return "an AE title cannot contain a backslash"
    if not AE_TITLE_CHARS.match(value):
        return "an AE title uses printable ASCII characters only (no control characters)"
    return None


def _ae_title(raw: str) -> str:
    """Check a DICOM AE title."""
    problem = ae_title_problem(raw)
    if problem:
        raise ValueError(problem)
    return raw.strip()


BUSINESS_HOURS = re.compile(
    r"^(?P<d1>mon|tue|wed|thu|fri|sat|sun)-(?P<d2>mon|tue|wed|thu|fri|sat|sun)\s+"
    r"(?P<h1>\d{2}):(?P<m1>\d{2})-(?P<h2>\d{2}):(?P<m2>\d{2})$"
)
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _business_hours(raw: str) -> tuple[frozenset[int], time, time]:
    """Parse business hours such as ``Mon-Fri 07:00-19:00``."""
    match = BUSINESS_HOURS.match(raw.strip().lower())
    if not match:
        raise ValueError("must look like 'Mon-Fri 07:00-19:00'")
    d1, d2 = DAYS.index(match["d1"]), DAYS.index(match["d2"])
    days = frozenset(range(d1, d2 + 1)) if d1 <= d2 else frozenset([*range(d1, 7), *range(d2 + 1)])
    try:
        start = time(int(match["h1"]), int(match["m1"]))
        end = time(int(match["h2"]), int(match["m2"]))
    except ValueError:
        raise ValueError("has an hour or minute out of range") from None
    if end <= start:
        raise ValueError("must end after it starts")
    return days, start, end


def _text(raw: str) -> str:
    """Accept any non-empty text."""
    if not raw.strip():
        raise ValueError("cannot be empty")
    return raw.strip()


def _optional(raw: str) -> str:
    """Accept any text, empty included; checked with the other mail settings (``_mail_settings``)."""
    return raw.strip()


MAIL_DEFAULTS = {"PACSDESK_MAIL_PROCESSED_FOLDER": "Processed"}
MAIL_SECRETS = frozenset({"PACSDESK_MAIL_URL", "PACSDESK_MAIL_IMAP_URL"})


def _mail_rows() -> tuple[Setting, ...]:
    """The mail settings, documented beside their parsers in ``core.mail.settings``."""
    return tuple(Setting(name, MAIL_DEFAULTS.get(name, ""), _optional, meaning, secret=name in MAIL_SECRETS)
                 for name, _default, meaning in MAIL_SETTINGS_HELP)


SETTINGS: tuple[Setting, ...] = (
    Setting("PACSDESK_INSTANCE_PATH", None, _text,
            "Folder for the SQLite database, the generated secret key and local files "
            "(default: `instance/` in the working directory)."),
    Setting("PACSDESK_DATABASE_URL", None, _database_url,
            "Database URL: `sqlite:///path.db` or `postgresql://user@host/db` "
            "(default: `pacsdesk.db` in the instance folder)."),
    Setting("PACSDESK_SECRET_KEY", None, _text,
            "Signs sessions and CSRF tokens; every replica needs the same one "
            "(default: generated once into the instance folder, owner-readable only)."),
    Setting("PACSDESK_TIMEZONE", "UTC", _timezone,
            "Time zone in which times are shown and due dates and after-hours are computed."),
    Setting("PACSDESK_SESSION_IDLE_MINUTES", "15", _int_range(1, 1440),
            "Minutes of inactivity after which a user is logged off (HIPAA 164.312(a)(2)(iii))."),
    Setting("PACSDESK_ORGANIZATION", "PACS Desk", _text,
            "Organisation name printed on pages and reports."),
    Setting("PACSDESK_DICOM_AE_TITLE", "PACSDESK", _ae_title,
            "Calling AE title used for C-ECHO verification."),
    Setting("PACSDESK_SECURE_COOKIES", "false", _bool,
            "Mark session cookies Secure; turn on when served over HTTPS."),
    Setting("PACSDESK_PROXY_COUNT", "0", _int_range(0, 5),
            "Number of reverse proxies in front of the app whose X-Forwarded-For is trusted."),
    Setting("PACSDESK_RATELIMIT_STORAGE_URI", "memory://", _text,
            "Where login rate-limit counters live; use `redis://host:6379` with several replicas."),
    Setting("PACSDESK_MAX_UPLOAD_MB", "20", _int_range(1, 1024),
            "Largest attachment accepted, in megabytes."),
    Setting("PACSDESK_AUTOCLOSE_DAYS", "7", _int_range(1, 365),
            "Days after which a resolved ticket closes unless the requester reopens it."),
    Setting("PACSDESK_VERIFY_INTERVAL", "300", _int_range(10, 86400),
            "Seconds between scheduled C-ECHO sweeps of all enabled DICOM nodes."),
    Setting("PACSDESK_VERIFY_CONCURRENCY", "32", _int_range(1, 512),
            "How many nodes a sweep checks at once."),
    Setting("PACSDESK_VERIFY_TIMEOUT", "5", _float_range(0.5, 120),
            "Seconds one C-ECHO check may take (connect, association and response)."),
    Setting("PACSDESK_DOWN_AFTER_FAILURES", "2", _int_range(1, 100),
            "Consecutive failed checks after which a node is down."),
    Setting("PACSDESK_DEGRADED_LATENCY_MS", "1000", _int_range(1, 120000),
            "A node answering slower than this many milliseconds is degraded."),
    Setting("PACSDESK_AUTO_RESOLVE", "true", _bool,
            "Resolve a node's automatic ticket when the node answers again."),
    Setting("PACSDESK_BUSINESS_HOURS", "Mon-Fri 07:00-19:00", _business_hours,
            "Local business hours; access outside them is listed in the access-audit report."),
    Setting("PACSDESK_WORKER", "true", _bool,
            "Run a job worker beside the web server in `pacsdesk serve` (same as not passing --no-worker)."),
    *_mail_rows(),
    Setting("PACSDESK_MAIL_POLL_SECONDS", "60", _int_range(10, 86400),
            "Seconds between two readings of the mailbox named by `PACSDESK_MAIL_IMAP_URL`."),
)
MAIL_NAMES = tuple(name for name, _default, _meaning in MAIL_SETTINGS_HELP)


def _secret_key(instance_path: Path) -> str:
    """Read the instance's secret key, generating it (mode 0600) on first use."""
    key_file = instance_path / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    return key_file.read_text().strip()


def _mail_settings(values: Mapping[str, Any], organization: str) -> MailSettings:
    """The mail settings checked together (a URL, its password file, the sender, the base URL)."""
    raw = {name: str(values.get(name) or "") for name in MAIL_NAMES}
    try:
        return load_mail_settings({k: v for k, v in raw.items() if v}, organization=organization)
    except MailConfigError as exc:
        raise ConfigError(str(exc)) from None


def load_config(environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build the Flask configuration from the environment and ``overrides``; ConfigError on a bad value.

    Overrides (tests, embedding) apply before anything is derived from the settings: an
    overridden instance folder, database or secret key means the environment's, or a key
    file in the working directory, is never touched.
    """
    given = dict(overrides or {})
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.name in given:
            values[setting.name] = given[setting.name]
            continue
        raw = environ.get(setting.name, setting.default)
        if raw is None:
            values[setting.name] = None
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            shown = "" if setting.secret else f" (got {raw!r})"
            raise ConfigError(f"{setting.name}: {exc}{shown}") from None
    instance = Path(values["PACSDESK_INSTANCE_PATH"] or "instance").resolve()
    try:
        instance.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"PACSDESK_INSTANCE_PATH: cannot create {instance}: {exc.strerror}") from None
    values["PACSDESK_INSTANCE_PATH"] = str(instance)
    database_url = (given.get("SQLALCHEMY_DATABASE_URI") or values.pop("PACSDESK_DATABASE_URL")
                    or f"sqlite:///{instance / 'pacsdesk.db'}")
    values.pop("PACSDESK_DATABASE_URL", None)
    secret = given.get("SECRET_KEY") or values.pop("PACSDESK_SECRET_KEY") or _secret_key(instance)
    values.pop("PACSDESK_SECRET_KEY", None)
    mail = given.get("PACSDESK_MAIL") or _mail_settings(values, values["PACSDESK_ORGANIZATION"])
    config = {
        **values,
        "PACSDESK_MAIL": mail,
        "SECRET_KEY": secret,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "MAX_CONTENT_LENGTH": (values["PACSDESK_MAX_UPLOAD_MB"] + 1) * 1024 * 1024,
    }
    config.update(given)
    return config
