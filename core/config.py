"""Configuration from ``PACSDESK_*`` environment variables, validated at start-up."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import ssl
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
    secret: bool = False  # a refused value is never repeated in the error message


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


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _count_or_auto(low: int, high: int, auto: Callable[[], int]) -> Callable[[str], int]:
    """Build a parser for ``auto`` (worked out from the machine) or a whole number in a range."""
    number = _int_range(low, high)

    def parse(raw: str) -> int:
        if raw.strip().lower() == "auto":
            return auto()
        try:
            return number(raw)
        except ValueError:
            raise ValueError(f"must be `auto` or a whole number from {low} to {high}") from None

    return parse


def default_web_workers() -> int:
    """Web worker processes: one per core, at least two (a long request never stops the site), at most 16."""
    return min(max(available_cores(), 2), 16)


JOB_THREADS = 4  # jobs a `pacsdesk worker` runs at once unless told otherwise


def default_web_threads() -> int:
    """Request threads per web worker: one, so requests take turns in arrival order, not share a core."""
    return 1


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


AUDIT_KEY_MIN_LENGTH = 32
AUDIT_KEY_ID_MAX = 999_999
_KEY_ENTRY = re.compile(r"^(?:(?P<id>[0-9]+):)?(?P<key>[^\s:,]+)$")


def parse_audit_keyring(raw: str) -> dict[int, bytes]:
    """Parse audit chain keys: ``id:key`` entries separated by commas or lines (a lone key is id 1).

    Errors name the entry by its position, never the key.
    """
    entries = [part.strip() for part in re.split(r"[,\n]", raw) if part.strip()]
    if not entries:
        raise ValueError("must hold at least one key as id:key")
    keys: dict[int, bytes] = {}
    for number, entry in enumerate(entries, 1):
        match = _KEY_ENTRY.match(entry)
        if match is None:
            raise ValueError(f"entry {number} must look like id:key (a whole number, a colon, "
                             "the key without spaces, commas or colons)")
        if match["id"] is None and len(entries) > 1:
            raise ValueError(f"entry {number} has no id: with several keys write each as id:key")
        key_id = int(match["id"] or "1")
        if not 1 <= key_id <= AUDIT_KEY_ID_MAX:
            raise ValueError(f"entry {number}: the key id must be from 1 to {AUDIT_KEY_ID_MAX}")
        if key_id in keys:
            raise ValueError(f"entry {number}: key id {key_id} appears twice")
        if len(match["key"]) < AUDIT_KEY_MIN_LENGTH:
            raise ValueError(f"entry {number}: key {key_id} is shorter than "
                             f"{AUDIT_KEY_MIN_LENGTH} characters")
        keys[key_id] = match["key"].encode("utf-8")
    return keys


def _syslog_target(raw: str) -> tuple[str, str, int]:
    """Parse ``udp://host:port`` or ``tcp://host:port`` into (protocol, host, port)."""
    value = raw.strip()
    protocol, sep, rest = value.partition("://")
    if not sep or protocol.lower() not in ("udp", "tcp"):
        raise ValueError("must look like udp://host:port or tcp://host:port")
    host, colon, port = rest.rstrip("/").rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("must name a host and a port from 1 to 65535, as udp://host:port "
                         "or tcp://host:port")
    return protocol.lower(), host, int(port)


def _text(raw: str) -> str:
    """Accept any non-empty text."""
    if not raw.strip():
        raise ValueError("cannot be empty")
    return raw.strip()


ROLE_NAMES = ("requester", "technician", "compliance", "admin")


def _roles(raw: str) -> frozenset[str]:
    """Parse comma-separated role names (empty or ``none``: no role)."""
    value = raw.strip().lower()
    if value in {"", "none"}:
        return frozenset()
    roles = frozenset(part.strip() for part in value.split(",") if part.strip())
    unknown = sorted(roles - set(ROLE_NAMES))
    if unknown:
        raise ValueError(f"{', '.join(unknown)} is not a role; use {', '.join(ROLE_NAMES)} or none")
    return roles


ATNA_LISTENER = re.compile(r"^(udp|tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[0-9.]+):([0-9]{1,5})$")


def _atna_listen(raw: str) -> str:
    """Check a list of ATNA listeners such as ``udp://0.0.0.0:514,tls://[::]:6514`` (empty: none)."""
    value = raw.strip()
    if not value:
        return ""
    for number, entry in enumerate(value.split(","), start=1):
        match = ATNA_LISTENER.match(entry.strip())
        if not match:
            raise ValueError(f"listener {number} ({entry.strip()!r}) must look like udp://IP:PORT, "
                             "tcp://IP:PORT or tls://IP:PORT (IPv6 in brackets)")
        try:
            ipaddress.ip_address(match[2].strip("[]"))
        except ValueError:
            raise ValueError(f"listener {number} ({entry.strip()!r}): the host must be an IP address "
                             "to listen on, such as 0.0.0.0 or [::]") from None
        if int(match[3]) > 65535:
            raise ValueError(f"listener {number} ({entry.strip()!r}): the port must be 0 to 65535")
    return value


def _readable_file(raw: str) -> str:
    """Check a file exists and can be read."""
    path = Path(raw.strip())
    if not path.is_file() or not os.access(path, os.R_OK):
        raise ValueError("must name a readable file")
    return str(path)


def _optional(raw: str) -> str:
    """Accept any text, empty included; checked with the other mail settings (``_mail_settings``)."""
    return raw.strip()


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_ALLOWED_NETWORKS = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,127.0.0.0/8,::1/128,fc00::/7"


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Parse a comma- or space-separated list of networks (CIDR) or single addresses."""
    entries = [entry for entry in re.split(r"[\s,]+", text or "") if entry]
    if not entries:
        raise ValueError("no network given: list at least one, such as 10.0.0.0/8")
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry))
        except ValueError as exc:
            hint = ""
            if "host bits set" in str(exc):
                hint = f" (did you mean {ipaddress.ip_network(entry, strict=False)}?)"
            raise ValueError(f"{entry!r} is not a network such as 10.0.0.0/8 or an "
                             f"address{hint}") from None
    return tuple(networks)


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
    Setting("PACSDESK_SESSION_MAX_HOURS", "12", _int_range(1, 168),
            "Hours after logging in at which a session ends however active it is."),
    Setting("PACSDESK_MFA_REQUIRED_ROLES", "admin,compliance", _roles,
            "Roles that must use a second factor (authenticator app); they enrol at their next login. "
            "`none` for no role."),
    Setting("PACSDESK_LDAP_SYNC_MINUTES", "60", _int_range(5, 1440),
            "Minutes between directory syncs, which end the access of people disabled or removed "
            "in the directory or out of every role group."),
    Setting("PACSDESK_ORGANIZATION", "PACS Desk", _text,
            "Organisation name printed on pages and reports."),
    Setting("PACSDESK_DICOM_AE_TITLE", "PACSDESK", _ae_title,
            "Calling AE title used for C-ECHO verification."),
    Setting("PACSDESK_STUDY_RETENTION_APPROVAL_DAYS", "14", _int_range(1, 90),
            "Days an approval of an imaging study review stays valid; after that it must be approved again."),
    Setting("PACSDESK_SECURE_COOKIES", "false", _bool,
            "Mark session cookies Secure; turn on when served over HTTPS."),
    Setting("PACSDESK_PROXY_COUNT", "0", _int_range(0, 5),
            "Number of reverse proxies in front of the app whose X-Forwarded-For is trusted."),
    Setting("PACSDESK_RATELIMIT_STORAGE_URI", "memory://", _text,
            "Where login rate-limit counters live; use `redis://host:6379` with several replicas."),
    Setting("PACSDESK_MAX_UPLOAD_MB", "20", _int_range(1, 1024),
            "Largest attachment accepted, in megabytes."),
    Setting("PACSDESK_MIN_FREE_DISK_MB", "100", _int_range(0, 1_000_000),
            "Free space, in megabytes, below which the instance folder (and SQLite's) counts as full: "
            "`/healthz` answers 503 with `\"database\": \"disk full\"`."),
    Setting("PACSDESK_AUTOCLOSE_DAYS", "7", _int_range(1, 365),
            "Days after which a resolved ticket closes unless the requester reopens it."),
    Setting("PACSDESK_VERIFY_INTERVAL", "300", _int_range(10, 86400),
            "Seconds between scheduled C-ECHO sweeps of all enabled DICOM nodes."),
    Setting("PACSDESK_VERIFY_CONCURRENCY", "256", _int_range(1, 1024),
            "How many nodes a sweep checks at once (one thread runs them all; each open check holds "
            "one socket)."),
    Setting("PACSDESK_VERIFY_TIMEOUT", "5", _float_range(0.5, 120),
            "Seconds one C-ECHO check may take from start to end: name lookup, connect, TLS, "
            "association, echo and release together, whatever the peer does."),
    Setting("PACSDESK_VERIFY_NOW_PER_MINUTE", "6", _int_range(1, 1000),
            "\"Verify now\" checks one user may ask for per minute; more answer 429."),
    Setting("PACSDESK_BUSY_DOWN_MINUTES", "30", _int_range(1, 10080),
            "A node answering `busy` (a transient rejection) is degraded; it is down only when it "
            "has been busy or failing this many minutes without a success."),
    Setting("PACSDESK_DICOM_ALLOWED_NETWORKS", DEFAULT_ALLOWED_NETWORKS, parse_networks,
            "Networks (CIDR, separated by commas) C-ECHO checks may connect to; add the hospital's "
            "own public ranges if nodes live there. Link-local and cloud metadata addresses are "
            "refused whatever this says, after name resolution."),
    Setting("PACSDESK_DICOM_TLS_CERT", None, _readable_file,
            "PEM client certificate TLS nodes are shown when they ask for one (a node's own "
            "certificate takes precedence)."),
    Setting("PACSDESK_DICOM_TLS_KEY", None, _readable_file,
            "PEM private key (unencrypted) of `PACSDESK_DICOM_TLS_CERT`; omit it when the "
            "certificate file holds the key."),
    Setting("PACSDESK_DICOM_TLS_CA_FILE", None, _readable_file,
            "PEM CA bundle TLS nodes' certificates are checked against (default: the system's CAs)."),
    Setting("PACSDESK_DOWN_AFTER_FAILURES", "2", _int_range(1, 100),
            "Consecutive failed checks after which a node is down."),
    Setting("PACSDESK_DEGRADED_LATENCY_MS", "1000", _int_range(1, 120000),
            "A node answering slower than this many milliseconds is degraded."),
    Setting("PACSDESK_AUTO_RESOLVE", "true", _bool,
            "Resolve a node's automatic ticket when the node answers again."),
    Setting("PACSDESK_OUTAGE_GROUP_THRESHOLD", "3", _int_range(1, 10000),
            "When more DICOM nodes than this go down in one sweep, one incident ticket groups theirs."),
    Setting("PACSDESK_BUSINESS_HOURS", "Mon-Fri 07:00-19:00", _business_hours,
            "Local business hours; access outside them is listed in the access-audit report."),
    Setting("PACSDESK_WEB_WORKERS", "auto", _count_or_auto(1, 64, default_web_workers),
            "Web worker processes of `pacsdesk serve` (`--workers`); `auto`: two per core, at most 16."),
    Setting("PACSDESK_WEB_THREADS", "auto", _count_or_auto(1, 64, default_web_threads),
            "Request threads per web worker (`--threads`); `auto`: 4. Each worker's database pool "
            "holds as many connections, and as many again for short bursts."),
    Setting("PACSDESK_WORKER", "true", _bool,
            "Run a job worker beside the web server in `pacsdesk serve` (same as not passing --no-worker)."),
    Setting("PACSDESK_ATNA_LISTEN", "", _atna_listen,
            "Where the PACS's audit messages (IHE ATNA syslog) are received, e.g. "
            "`udp://0.0.0.0:514,tcp://0.0.0.0:601,tls://0.0.0.0:6514`; empty: no receiver. "
            "`pacsdesk serve` supervises the receiver when set."),
    Setting("PACSDESK_ATNA_TLS_CERT", None, _readable_file,
            "PEM server certificate (with its chain) of the `tls://` listeners."),
    Setting("PACSDESK_ATNA_TLS_KEY", None, _readable_file,
            "PEM private key of `PACSDESK_ATNA_TLS_CERT`."),
    Setting("PACSDESK_ATNA_TLS_CLIENT_CA", None, _readable_file,
            "Optional PEM CA bundle: TLS senders must then show a client certificate it signed."),
    Setting("PACSDESK_ATNA_MAX_MESSAGE_BYTES", "65536", _int_range(4096, 16 * 1024 * 1024),
            "Largest audit message accepted, in bytes; larger ones are quarantined as too large."),
    Setting("PACSDESK_ATNA_MAX_CONNECTIONS", "256", _int_range(1, 65536),
            "Open TCP/TLS connections the receiver accepts at once; more are closed at once."),
    Setting("PACSDESK_ATNA_MAX_CONNECTIONS_PER_PEER", "32", _int_range(1, 65536),
            "Open TCP/TLS connections accepted from one sender address."),
    Setting("PACSDESK_ATNA_IDLE_TIMEOUT", "300", _float_range(1, 86400),
            "Seconds after which a silent TCP/TLS connection is closed."),
    Setting("PACSDESK_ATNA_MESSAGE_TIMEOUT", "30", _float_range(1, 3600),
            "Seconds a started message has to arrive whole (slow senders are cut off)."),
    Setting("PACSDESK_ATNA_QUEUE_MESSAGES", "20000", _int_range(100, 10_000_000),
            "Messages held in memory while the database catches up; beyond it TCP senders are "
            "paused and UDP datagrams are dropped (and counted)."),
    Setting("PACSDESK_ATNA_BATCH_MESSAGES", "500", _int_range(1, 100_000),
            "Messages stored per database transaction at most."),
    Setting("PACSDESK_ATNA_PROCESSES", "1", _int_range(1, 64),
            "Receiver processes sharing the listeners (SO_REUSEPORT), one CPU core each."),
    Setting("PACSDESK_ATNA_SILENT_MINUTES", "60", _int_range(1, 10080),
            "Minutes without a message after which an in-service audit source is silent (one ticket)."),
    Setting("PACSDESK_ATNA_BULK_PATIENTS_PER_HOUR", "30", _int_range(1, 100_000),
            "A PACS user opening more distinct patients than this within an hour is an exception."),
    Setting("PACSDESK_AUDIT_KEY", None, parse_audit_keyring,
            "Keys of the audit chain's HMAC, as `id:key` entries separated by commas (a lone key is "
            "id 1); the highest id is the newest. Every replica needs the same keys "
            "(default: the key file).", secret=True),
    Setting("PACSDESK_AUDIT_KEY_FILE", None, _text,
            "File of `id:key` lines holding the audit chain's keys when PACSDESK_AUDIT_KEY is not set "
            "(default: `audit_key` in the instance folder, generated once, owner-readable only)."),
    Setting("PACSDESK_AUDIT_ANCHOR_DIR", None, _text,
            "Folder of the append-only anchor log of the audit chain's verified heads; put it on "
            "separate, write-once or backed-up storage (default: `anchors/` in the instance folder)."),
    Setting("PACSDESK_AUDIT_SYSLOG", None, _syslog_target,
            "Also send each audit chain anchor to this log collector, as RFC 5424 syslog: "
            "`udp://host:port` or `tcp://host:port` (default: none)."),
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


def _check_dicom_tls(values: Mapping[str, Any]) -> None:
    """The global C-ECHO TLS files must load: a certificate with its key, a CA bundle."""
    cert, key, ca_file = (values["PACSDESK_DICOM_TLS_CERT"], values["PACSDESK_DICOM_TLS_KEY"],
                          values["PACSDESK_DICOM_TLS_CA_FILE"])
    if key and not cert:
        raise ConfigError("PACSDESK_DICOM_TLS_KEY: set PACSDESK_DICOM_TLS_CERT too, the certificate "
                          "this key belongs to")
    if ca_file:
        try:
            ssl.create_default_context(cafile=ca_file)
        except ssl.SSLError as exc:
            raise ConfigError(f"PACSDESK_DICOM_TLS_CA_FILE: {ca_file} holds no usable CA "
                              f"certificate ({exc.reason or exc})") from None
    if cert:
        try:
            ssl.create_default_context().load_cert_chain(cert, key, password=_no_password)
        except (ssl.SSLError, ValueError) as exc:
            why = exc.reason if isinstance(exc, ssl.SSLError) else exc
            raise ConfigError(f"PACSDESK_DICOM_TLS_CERT/PACSDESK_DICOM_TLS_KEY: {cert} and "
                              f"{key or cert} are not a certificate and its unencrypted private "
                              f"key ({why})") from None


def _no_password() -> bytes:
    """Refuse an encrypted key instead of prompting on the terminal."""
    raise ValueError("the key is encrypted")


def _check_atna(values: Mapping[str, Any]) -> None:
    """Settings that only make sense together: a TLS listener needs its certificate and key."""
    listen = values.get("PACSDESK_ATNA_LISTEN") or ""
    if "tls://" in listen:
        for name in ("PACSDESK_ATNA_TLS_CERT", "PACSDESK_ATNA_TLS_KEY"):
            if not values.get(name):
                raise ConfigError(f"{name}: required by the tls:// listener in PACSDESK_ATNA_LISTEN")
    per_peer, total = (values.get("PACSDESK_ATNA_MAX_CONNECTIONS_PER_PEER") or 0,
                       values.get("PACSDESK_ATNA_MAX_CONNECTIONS") or 0)
    if per_peer > total:
        raise ConfigError("PACSDESK_ATNA_MAX_CONNECTIONS_PER_PEER: cannot be above "
                          "PACSDESK_ATNA_MAX_CONNECTIONS")


def _audit_key_file(instance_path: Path) -> Path:
    """The instance's audit keyring file, generating key 1 (mode 0600) on first use."""
    key_file = instance_path / "audit_key"
    if not key_file.exists():
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return key_file
        with os.fdopen(fd, "w") as handle:
            handle.write(f"1:{secrets.token_hex(32)}\n")
    return key_file


def read_audit_key_file(path: Path, variable: str) -> dict[int, bytes]:
    """The keys in an audit keyring file; ConfigError naming ``variable`` and the file if unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read the audit key file {path}: "
                          f"{exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{variable}: the audit key file {path} is not UTF-8 text") from None
    try:
        return parse_audit_keyring(text)
    except ValueError as exc:
        raise ConfigError(f"{variable}: the audit key file {path}: {exc}") from None


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
    _check_atna(values)
    _check_dicom_tls(values)
    database_url = (given.get("SQLALCHEMY_DATABASE_URI") or values.pop("PACSDESK_DATABASE_URL")
                    or f"sqlite:///{instance / 'pacsdesk.db'}")
    values.pop("PACSDESK_DATABASE_URL", None)
    secret = given.get("SECRET_KEY") or values.pop("PACSDESK_SECRET_KEY") or _secret_key(instance)
    values.pop("PACSDESK_SECRET_KEY", None)
    if not values["PACSDESK_AUDIT_KEY"]:
        key_file = (Path(values["PACSDESK_AUDIT_KEY_FILE"]).resolve() if values["PACSDESK_AUDIT_KEY_FILE"]
                    else _audit_key_file(instance))
        read_audit_key_file(key_file, "PACSDESK_AUDIT_KEY_FILE")
        values["PACSDESK_AUDIT_KEY_FILE"] = str(key_file)
    values["PACSDESK_AUDIT_ANCHOR_DIR"] = str(Path(values["PACSDESK_AUDIT_ANCHOR_DIR"]
                                                   or instance / "anchors").resolve())
    mail = given.get("PACSDESK_MAIL") or _mail_settings(values, values["PACSDESK_ORGANIZATION"])
    config = {
        **values,
        "PACSDESK_MAIL": mail,
        "SECRET_KEY": secret,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "MAX_CONTENT_LENGTH": (values["PACSDESK_MAX_UPLOAD_MB"] + 1) * 1024 * 1024,
    }
    config["PACSDESK_DIRECTORY"] = _directory(environ, given)
    config.update(given)
    return config


def _directory(environ: Mapping[str, str], given: Mapping[str, Any]) -> Any:
    """The directory configuration (``PACSDESK_LDAP_*``), None for local accounts only."""
    if "PACSDESK_DIRECTORY" in given:
        return given["PACSDESK_DIRECTORY"]
    from core.auth.directory import parse_directory_settings

    return parse_directory_settings(environ)
