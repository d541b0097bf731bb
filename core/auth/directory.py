"""Log in against the hospital directory (Active Directory or OpenLDAP) with ldap3; no Flask, no database.

The service account finds the person and reads their groups; the password is checked by binding
as that person and is never stored. Role groups map to PACS Desk roles; the most privileged wins.

Nested groups: Active Directory answers the "in chain" matching rule 1.2.840.113556.1.4.1941 itself;
other servers (OpenLDAP ignores the rule and matches nothing) get the groups of groups expanded here,
at most ``MAX_NESTING`` levels deep with loop protection. Only the client-side expansion can be
tested against OpenLDAP; the AD rule is used only when the root DSE says the server is AD.
"""

from __future__ import annotations

import re
import ssl
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from ldap3 import BASE, NONE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import (
    LDAPException,
    LDAPInvalidDnError,
    LDAPInvalidFilterError,
    LDAPSocketOpenError,
    LDAPStartTLSError,
)
from ldap3.operation.search import parse_filter
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from core.config import ConfigError, Setting, _bool, _int_range

ROLES = ("admin", "compliance", "technician", "requester")  # most privileged first
PAGE_SIZE = 500
MAX_NESTING = 8
MAX_USERNAME = 256
NOT_ALLOWED = "your account is not allowed to use PACS Desk; ask the PACS team"
AD_CAPABILITIES = {"1.2.840.113556.1.4.800", "1.2.840.113556.1.4.1851"}  # AD, AD LDS
IN_CHAIN = "1.2.840.113556.1.4.1941"
PAGED_RESULTS = "1.2.840.113556.1.4.319"
UF_ACCOUNTDISABLE = 0x2
AD_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
AD_NEVER = {0, 9223372036854775807}


class DirectoryError(Exception):
    """A directory login or listing failed; ``message`` is for the user, ``detail`` for the log."""

    message = "the hospital directory refused the request"

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{self.message}: {detail}" if detail else self.message)
        self.detail = detail


class InvalidCredentials(DirectoryError):
    """Unknown user or wrong password (told apart only in ``detail``)."""

    message = "invalid username or password"


class NotAllowed(DirectoryError):
    """The password is right but the person is in no mapped group."""

    message = NOT_ALLOWED


class AccountDisabled(DirectoryError):
    """The password is right but the directory marks the account disabled or expired."""

    message = "your account is disabled in the hospital directory"


class DirectoryUnavailable(DirectoryError):
    """No URL answered properly: refused, timed out, TLS failure, or the service account refused."""

    message = "the hospital directory cannot be reached"


@dataclass(frozen=True)
class DirectoryConfig:
    """How to reach and read the directory (from the ``PACSDESK_LDAP_*`` settings)."""

    urls: tuple[str, ...]
    bind_dn: str
    bind_password: str = field(repr=False)
    user_base: str
    role_groups: tuple[tuple[str, str], ...]  # (role, group DN)
    user_filter: str = "(sAMAccountName={username})"
    name_attribute: str = "displayName"
    email_attribute: str = "mail"
    department_attribute: str = "department"
    nested_groups: bool = False
    disabled_filter: str | None = None
    ca_file: str | None = None
    allow_plain: bool = False
    timeout: int = 5

    @property
    def username_attribute(self) -> str:
        """The attribute the user filter compares the username with."""
        match = USERNAME_TERM.search(self.user_filter)
        if not match:
            raise ValueError("PACSDESK_LDAP_USER_FILTER: must contain one (attribute={username}) term")
        return match[1]

    @property
    def group_base(self) -> str:
        """The deepest entry above every role group: where the groups of a person are searched."""
        return common_base([dn for _, dn in self.role_groups])


def common_base(dns: list[str]) -> str:
    """The longest DN that every one of ``dns`` ends with (empty when they share none)."""
    parsed = [[f"{a}={v}" for a, v, _ in parse_dn(dn, strip=True)] for dn in dns]
    common: list[str] = []
    for parts in zip(*(reversed(p) for p in parsed), strict=False):
        if len({part.lower() for part in parts}) != 1:
            break
        common.insert(0, parts[0])
    return ",".join(common)


@dataclass(frozen=True)
class DirectoryUser:
    """A person as the directory describes them; ``groups`` are the role groups they are in."""

    username: str
    dn: str
    full_name: str
    email: str | None
    department: str
    groups: tuple[str, ...]
    role: str | None
    disabled: bool
    expires_at: datetime | None


# ---- settings -------------------------------------------------------------------------------

USERNAME_TERM = re.compile(r"\(\s*([A-Za-z][A-Za-z0-9-]*)\s*=\s*\{username\}\s*\)")
ATTRIBUTE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)+)$")


def _urls(raw: str) -> tuple[str, ...]:
    """Parse space-separated ``ldaps://host:636`` or ``ldap://host:389`` URLs."""
    urls = tuple(raw.split())
    if not urls:
        raise ValueError("must be one or more ldaps:// or ldap:// URLs separated by spaces")
    for url in urls:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 -- raises on a bad port
        except ValueError:
            raise ValueError(f"{url!r} has an invalid port") from None
        if parts.scheme not in {"ldap", "ldaps"} or not parts.hostname:
            raise ValueError(f"{url!r} must look like ldaps://host:636 or ldap://host:389")
        if parts.path not in {"", "/"} or parts.query or parts.username:
            raise ValueError(f"{url!r} must name only a host and a port")
    return urls


def _dn(raw: str) -> str:
    """Check a distinguished name."""
    value = raw.strip()
    try:
        if not value or not parse_dn(value, strip=True):
            raise ValueError
    except (LDAPInvalidDnError, ValueError):
        raise ValueError("must be a distinguished name such as ou=people,dc=hospital,dc=org") from None
    return value


def _filter(raw: str) -> str:
    """Check an LDAP search filter (RFC 4515)."""
    value = raw.strip()
    if not value.startswith("("):
        raise ValueError("must be an LDAP filter in parentheses, such as (employeeType=left)")
    try:
        parse_filter(value.replace("{username}", "x"), None, False, False, None, False)
    except LDAPInvalidFilterError as exc:
        raise ValueError(f"is not a valid LDAP filter ({exc})") from None
    return value


def _user_filter(raw: str) -> str:
    """Check the user filter: a valid filter holding one ``(attribute={username})`` term."""
    value = _filter(raw)
    if value.count("{username}") != 1 or not USERNAME_TERM.search(value):
        raise ValueError("must contain one (attribute={username}) term, such as (uid={username})")
    return value


def _attribute(raw: str) -> str:
    """Check an attribute name."""
    value = raw.strip()
    if not ATTRIBUTE.match(value):
        raise ValueError("must be an attribute name such as displayName")
    return value


def _role_groups(raw: str) -> tuple[tuple[str, str], ...]:
    """Parse ``role=group DN`` pairs separated by ``;``."""
    pairs = []
    for item in (part.strip() for part in re.split(r"(?<!\\);", raw)):
        if not item:
            continue
        role, sep, dn = item.partition("=")
        role = role.strip().lower()
        if not sep or role not in ROLES:
            raise ValueError(f"{item!r} must be role=group DN with a role among {', '.join(ROLES)}")
        pairs.append((role, _dn(dn)))
    if not pairs:
        raise ValueError("must map at least one role to a group, such as admin=cn=admins,dc=example,dc=org")
    if not common_base([dn for _, dn in pairs]):
        raise ValueError("the groups must share a base entry (such as dc=hospital,dc=org)")
    return tuple(pairs)


def _ca_file(raw: str) -> str:
    """Check a PEM file of CA certificates can be loaded."""
    path = raw.strip()
    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load CA certificates from {path}: {exc}") from None
    return path


def _secret(raw: str) -> str:
    """Accept a non-empty password (an empty one would bind anonymously)."""
    if not raw:
        raise ValueError("cannot be empty (an empty password is an anonymous bind)")
    return raw


def _secret_file(raw: str) -> str:
    """Read a password from a file, without its final line break."""
    try:
        return _secret(Path(raw.strip()).read_text().rstrip("\r\n"))
    except OSError as exc:
        raise ValueError(f"cannot read {raw.strip()}: {exc.strerror}") from None


DIRECTORY_SETTINGS: tuple[Setting, ...] = (
    Setting("PACSDESK_LDAP_URL", None, _urls,
            "Directory servers, tried in order: `ldaps://host:636` or `ldap://host:389` (StartTLS), "
            "separated by spaces. Unset: local accounts only."),
    Setting("PACSDESK_LDAP_ALLOW_PLAIN", "false", _bool,
            "Use `ldap://` URLs without StartTLS, passwords unencrypted on the network (test labs only)."),
    Setting("PACSDESK_LDAP_CA_FILE", None, _ca_file,
            "PEM file of the CA certificates that sign the directory's certificate (default: system CAs)."),
    Setting("PACSDESK_LDAP_BIND_DN", None, _dn,
            "DN of the read-only service account that finds users and their groups (required)."),
    Setting("PACSDESK_LDAP_BIND_PASSWORD", None, _secret,
            "The service account's password (or use PACSDESK_LDAP_BIND_PASSWORD_FILE)."),
    Setting("PACSDESK_LDAP_BIND_PASSWORD_FILE", None, _secret_file,
            "File holding the service account's password."),
    Setting("PACSDESK_LDAP_USER_BASE", None, _dn,
            "Where users are searched, e.g. `ou=people,dc=hospital,dc=org` (required)."),
    Setting("PACSDESK_LDAP_USER_FILTER", "(sAMAccountName={username})", _user_filter,
            "Filter finding one user; `{username}` is replaced, escaped. OpenLDAP: `(uid={username})`."),
    Setting("PACSDESK_LDAP_NAME_ATTRIBUTE", "displayName", _attribute, "Attribute holding the full name."),
    Setting("PACSDESK_LDAP_EMAIL_ATTRIBUTE", "mail", _attribute, "Attribute holding the e-mail address."),
    Setting("PACSDESK_LDAP_DEPARTMENT_ATTRIBUTE", "department", _attribute,
            "Attribute holding the department (OpenLDAP: `departmentNumber` or `ou`)."),
    Setting("PACSDESK_LDAP_ROLE_GROUPS", None, _role_groups,
            "`role=group DN` pairs separated by `;` (roles: admin, compliance, technician, requester); "
            "a person in several gets the most privileged role (required)."),
    Setting("PACSDESK_LDAP_NESTED_GROUPS", "false", _bool,
            f"Count members of groups inside the role groups too (up to {MAX_NESTING} levels)."),
    Setting("PACSDESK_LDAP_DISABLED_FILTER", None, _filter,
            "Filter marking disabled users, e.g. `(pwdAccountLockedTime=*)` or `(employeeType=left)`; "
            "AD's userAccountControl and accountExpires are always honoured."),
    Setting("PACSDESK_LDAP_TIMEOUT", "5", _int_range(1, 120),
            "Seconds allowed to connect to a directory server and for each answer."),
)

REQUIRED = ("PACSDESK_LDAP_BIND_DN", "PACSDESK_LDAP_USER_BASE", "PACSDESK_LDAP_ROLE_GROUPS")


def parse_directory_settings(environ: Mapping[str, str]) -> DirectoryConfig | None:
    """The directory configuration, None when PACSDESK_LDAP_URL is unset; ConfigError names the variable."""
    if not environ.get("PACSDESK_LDAP_URL", "").strip():
        return None
    values: dict[str, Any] = {}
    for setting in DIRECTORY_SETTINGS:
        raw = environ.get(setting.name)
        if raw is None or (not raw.strip() and setting.default is None):
            raw = setting.default
        if raw is None:
            values[setting.name] = None
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            shown = "" if "PASSWORD" in setting.name and "FILE" not in setting.name else f" (got {raw!r})"
            raise ConfigError(f"{setting.name}: {exc}{shown}") from None
    for name in REQUIRED:
        if values[name] is None:
            raise ConfigError(f"{name}: must be set when PACSDESK_LDAP_URL is set")
    passwords = [values["PACSDESK_LDAP_BIND_PASSWORD"], values["PACSDESK_LDAP_BIND_PASSWORD_FILE"]]
    if passwords.count(None) != 1:
        raise ConfigError("PACSDESK_LDAP_BIND_PASSWORD: set it or PACSDESK_LDAP_BIND_PASSWORD_FILE, not both "
                          "and not neither")
    return DirectoryConfig(
        urls=values["PACSDESK_LDAP_URL"], bind_dn=values["PACSDESK_LDAP_BIND_DN"],
        bind_password=passwords[0] or passwords[1], user_base=values["PACSDESK_LDAP_USER_BASE"],
        role_groups=values["PACSDESK_LDAP_ROLE_GROUPS"], user_filter=values["PACSDESK_LDAP_USER_FILTER"],
        name_attribute=values["PACSDESK_LDAP_NAME_ATTRIBUTE"],
        email_attribute=values["PACSDESK_LDAP_EMAIL_ATTRIBUTE"],
        department_attribute=values["PACSDESK_LDAP_DEPARTMENT_ATTRIBUTE"],
        nested_groups=values["PACSDESK_LDAP_NESTED_GROUPS"],
        disabled_filter=values["PACSDESK_LDAP_DISABLED_FILTER"], ca_file=values["PACSDESK_LDAP_CA_FILE"],
        allow_plain=values["PACSDESK_LDAP_ALLOW_PLAIN"], timeout=values["PACSDESK_LDAP_TIMEOUT"],
    )


# ---- connections ----------------------------------------------------------------------------

class _VerifiedTls(Tls):
    """ldap3's Tls, but OpenSSL checks the chain and the host name, and the failure is kept."""

    def __init__(self, ca_file: str | None) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED)
        self.context = ssl.create_default_context(cafile=ca_file)
        self.failure: str | None = None

    def wrap_socket(self, connection: Connection, do_handshake: bool = False) -> None:
        """Wrap the connection's socket, remembering why the handshake failed."""
        host = connection.server.host
        try:
            connection.socket = self.context.wrap_socket(
                connection.socket, server_hostname=host, do_handshake_on_connect=do_handshake)
        except ssl.SSLCertVerificationError as exc:
            self.failure = _certificate_problem(exc, host)
            raise
        except TimeoutError:
            self.failure = f"no answer within {connection.receive_timeout} s (TLS handshake)"
            raise
        except (ssl.SSLError, OSError) as exc:
            self.failure = f"TLS handshake failed ({exc})"
            raise


def _certificate_problem(exc: ssl.SSLCertVerificationError, host: str) -> str:
    """Say in words why the server's certificate was refused."""
    if exc.verify_code in {62, 64}:  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
        return f"TLS: the server's certificate does not match the host name {host}"
    if exc.verify_code in {2, 18, 19, 20, 21}:
        return "TLS: the server's certificate is not signed by a trusted CA (see PACSDESK_LDAP_CA_FILE)"
    if exc.verify_code == 10:
        return "TLS: the server's certificate has expired"
    return f"TLS: the server's certificate was refused ({exc.verify_message})"


def _reason(exc: BaseException, tls: _VerifiedTls, timeout: int) -> str:
    """Why talking to one server failed, in words for the log."""
    if tls.failure:
        return tls.failure
    text = str(exc)
    if isinstance(exc, LDAPStartTLSError):
        return ("the server refused StartTLS (a plain bind is refused unless "
                "PACSDESK_LDAP_ALLOW_PLAIN=true)")
    if isinstance(exc, ConnectionRefusedError) or "refused" in text.lower():
        return "connection refused"
    if isinstance(exc, LDAPSocketOpenError) and isinstance(exc, TimeoutError):
        return f"no connection within {timeout} s (host down or a firewall drops the traffic)"
    if isinstance(exc, TimeoutError) or "timed out" in text or "timeout" in text.lower():
        return f"no answer within {timeout} s"
    if "Name or service not known" in text or "getaddrinfo" in text:
        return "host name not found"
    return f"{type(exc).__name__}: {text}"


def _open(config: DirectoryConfig, url: str) -> Connection:
    """Connect to one URL, secure it and bind as the service account, or raise with the reason."""
    parts = urlsplit(url)
    secure = parts.scheme == "ldaps"
    try:
        tls = _VerifiedTls(config.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise DirectoryUnavailable(f"{url}: cannot load PACSDESK_LDAP_CA_FILE ({exc})") from None
    assert parts.hostname is not None  # _urls refuses a URL without one
    server = Server(parts.hostname, port=parts.port or (636 if secure else 389), use_ssl=secure, tls=tls,
                    get_info=NONE, connect_timeout=config.timeout)
    conn = Connection(server, user=config.bind_dn, password=config.bind_password, read_only=True,
                      receive_timeout=config.timeout, auto_referrals=False, raise_exceptions=False)
    try:
        conn.open()
        if not secure and not config.allow_plain:
            conn.start_tls()
        if conn.bind():
            return conn
        problem = f"the service account (PACSDESK_LDAP_BIND_DN) was refused: {conn.result['description']}"
    except LDAPException as exc:
        problem = _reason(exc, tls, config.timeout)
    with suppress(LDAPException, OSError):
        conn.unbind()
    raise DirectoryUnavailable(f"{url}: {problem}")


@contextmanager
def _connection(config: DirectoryConfig) -> Iterator[Connection]:
    """A service-account connection to the first URL that works; unbound afterwards."""
    failures = []
    for url in config.urls:
        try:
            conn = _open(config, url)
            break
        except DirectoryUnavailable as exc:
            failures.append(exc.detail)
    else:
        raise DirectoryUnavailable("; ".join(failures))
    try:
        yield conn
    except LDAPException as exc:
        raise DirectoryUnavailable(f"{conn.server.name}: {_reason(exc, conn.server.tls, config.timeout)}") \
            from None
    finally:
        with suppress(LDAPException, OSError):
            conn.unbind()


def _search(conn: Connection, base: str, query: str, attributes: list[str],
            scope: Literal["BASE", "LEVEL", "SUBTREE"] = SUBTREE,
            paged: bool = False, missing_ok: bool = False) -> Iterator[dict]:
    """Entries found; any result but success raises (a partial list must never look complete)."""
    cookie = None
    while True:
        conn.search(base, query, scope, attributes=attributes or ["1.1"],
                    paged_size=PAGE_SIZE if paged else None, paged_cookie=cookie)
        result = conn.result
        if result["result"] == 32 and missing_ok:  # noSuchObject
            return
        if result["result"] != 0:
            raise DirectoryUnavailable(f"{conn.server.name}: the search under {base} failed: "
                                       f"{result['description']} {result['message']}".rstrip())
        yield from (entry for entry in conn.response or [] if entry["type"] == "searchResEntry")
        cookie = result.get("controls", {}).get(PAGED_RESULTS, {}).get("value", {}).get("cookie")
        if not paged or not cookie:
            return


# ---- users and groups -----------------------------------------------------------------------

@lru_cache(maxsize=65536)
def dn_key(dn: str) -> str:
    """A DN in one spelling for comparisons (attribute types and values compared without case)."""
    try:
        return "".join(f"{a.lower()}={v.lower()}{sep}" for a, v, sep in parse_dn(dn, strip=True))
    except LDAPInvalidDnError:
        return dn.strip().lower()


def _values(entry: dict, name: str) -> list[str]:
    """An attribute's values as text (absent: empty list)."""
    return [value.decode("utf-8", "replace") for value in entry["raw_attributes"].get(name, [])]


def _first(entry: dict, name: str) -> str:
    """An attribute's first value, or an empty string."""
    values = _values(entry, name)
    return values[0].strip() if values else ""


def _expires_at(entry: dict) -> datetime | None:
    """AD's accountExpires (100 ns intervals since 1601; 0 and 2**63-1 mean never)."""
    try:
        ticks = int(_first(entry, "accountExpires"))
    except ValueError:
        return None
    if ticks in AD_NEVER:
        return None
    try:
        return AD_EPOCH + timedelta(microseconds=ticks // 10)
    except OverflowError:
        return None


def _user_attributes(config: DirectoryConfig) -> list[str]:
    """Attributes read for each user."""
    return [config.username_attribute, config.name_attribute, config.email_attribute,
            config.department_attribute, "memberOf", "userAccountControl", "accountExpires"]


def _make_user(config: DirectoryConfig, entry: dict, groups: set[str], disabled_by_filter: bool,
               now: datetime) -> DirectoryUser:
    """Build a DirectoryUser from a search entry and the role groups found for it."""
    mapped = tuple(dn for _, dn in config.role_groups if dn_key(dn) in groups)
    roles = {role for role, dn in config.role_groups if dn in mapped}
    try:
        control = int(_first(entry, "userAccountControl") or 0)
    except ValueError:
        control = 0
    expires_at = _expires_at(entry)
    disabled = bool(control & UF_ACCOUNTDISABLE) or disabled_by_filter or (
        expires_at is not None and expires_at <= now)
    return DirectoryUser(
        username=_first(entry, config.username_attribute).lower(), dn=entry["dn"],
        full_name=_first(entry, config.name_attribute), email=_first(entry, config.email_attribute) or None,
        department=_first(entry, config.department_attribute), groups=mapped,
        role=next((role for role in ROLES if role in roles), None), disabled=disabled, expires_at=expires_at)


def _groups_containing(conn: Connection, config: DirectoryConfig, dns: list[str]) -> set[str]:
    """Keys of the groups (under the group base) that list any of ``dns`` as a member."""
    found: set[str] = set()
    for start in range(0, len(dns), 50):
        terms = "".join(f"(member={v})(uniqueMember={v})"
                        for v in (escape_filter_chars(dn) for dn in dns[start:start + 50]))
        found |= {dn_key(e["dn"]) for e in _search(conn, config.group_base, f"(|{terms})", [])}
    return found


def _is_active_directory(conn: Connection) -> bool:
    """Whether the root DSE says this is Active Directory (which implements the in-chain rule)."""
    entries = list(_search(conn, "", "(objectClass=*)", ["supportedCapabilities"], scope=BASE))
    return bool(entries) and bool(AD_CAPABILITIES & set(_values(entries[0], "supportedCapabilities")))


def _groups_of(conn: Connection, config: DirectoryConfig, entry: dict) -> set[str]:
    """Keys of every group the user is in: memberOf or a member search, then nested groups."""
    dn = entry["dn"]
    if config.nested_groups and _is_active_directory(conn):
        query = f"(member:{IN_CHAIN}:={escape_filter_chars(dn)})"
        return {dn_key(e["dn"]) for e in _search(conn, config.group_base, query, [], paged=True)}
    groups = {dn_key(g) for g in _values(entry, "memberOf")} or _groups_containing(conn, config, [dn])
    frontier = set(groups)
    for _ in range(MAX_NESTING if config.nested_groups else 0):
        frontier = _groups_containing(conn, config, sorted(frontier)) - groups if frontier else set()
        groups |= frontier
    return groups


def _matches_filter(conn: Connection, dn: str, query: str) -> bool:
    """Whether the entry ``dn`` matches ``query``."""
    return any(True for _ in _search(conn, dn, query, [], scope=BASE, missing_ok=True))


USERNAME_REFUSED = re.compile(r"[\x00-\x1f\x7f]")


def _check_username(username: str) -> str:
    """The username to look up, or InvalidCredentials before any network traffic."""
    name = unicodedata.normalize("NFC", username or "").strip()
    if not name:
        raise InvalidCredentials("empty username")
    if len(name) > MAX_USERNAME:
        raise InvalidCredentials(f"username longer than {MAX_USERNAME} characters")
    if USERNAME_REFUSED.search(name) or any(unicodedata.category(c) == "Cc" for c in name):
        raise InvalidCredentials("username with control characters")
    return name


def _same_work_as_a_person(conn: Connection, config: DirectoryConfig, password: str) -> None:
    """For a name that matches nobody, ask what a real login asks (groups, disabled filter, a bind),
    about an entry that does not exist, so the answer takes about as long."""
    nobody = f"cn=pacsdesk-no-such-person,{config.user_base}"
    _groups_containing(conn, config, [nobody])
    if config.disabled_filter is not None:
        _matches_filter(conn, nobody, config.disabled_filter)
    conn.rebind(user=nobody, password=password)


def authenticate(config: DirectoryConfig, username: str, password: str) -> DirectoryUser:
    """Check a person's password against the directory and return who they are and their role."""
    name = _check_username(username)
    if not password:
        raise InvalidCredentials("empty password (an anonymous bind, never a login)")
    query = config.user_filter.replace("{username}", escape_filter_chars(name))
    with _connection(config) as conn:
        entries = list(_search(conn, config.user_base, query, _user_attributes(config)))
        if len(entries) != 1:
            _same_work_as_a_person(conn, config, password)
            raise InvalidCredentials("unknown user" if not entries else "several directory entries match")
        entry = entries[0]
        groups = _groups_of(conn, config, entry)
        disabled = config.disabled_filter is not None and _matches_filter(conn, entry["dn"],
                                                                          config.disabled_filter)
        user = _make_user(config, entry, groups, disabled, datetime.now(UTC))
        if not conn.rebind(user=entry["dn"], password=password):
            # AD explains refusals in the message: "data 52e" wrong password, 775 locked, 773 must change.
            raise InvalidCredentials(f"wrong password ({conn.result['description']} "
                                     f"{conn.result['message']})".replace(" )", ")"))
    if user.disabled:
        expired = f", expired {user.expires_at:%Y-%m-%d %H:%M} UTC" if user.expires_at else ""
        raise AccountDisabled(f"the directory marks the account disabled{expired}")
    if user.role is None:
        raise NotAllowed("in no mapped role group")
    return user


def _role_group_members(conn: Connection, config: DirectoryConfig, users: set[str]) -> dict[str, set[str]]:
    """For each user key, the keys of the role groups containing it; each group read once."""
    members_of: dict[str, list[str]] = {}

    def members(group: str) -> list[str]:
        key = dn_key(group)
        if key not in members_of:
            found = list(_search(conn, group, "(objectClass=*)", ["member", "uniqueMember"], scope=BASE,
                                 missing_ok=True))
            values = [v for e in found for v in _values(e, "member") + _values(e, "uniqueMember")]
            members_of[key] = [re.sub(r"#'[01]*'B$", "", v) for v in values]
        return members_of[key]

    result: dict[str, set[str]] = {}
    for _, group in config.role_groups:
        seen, level = {dn_key(group)}, [group]
        for depth in range(MAX_NESTING + 1):
            deeper = []
            for member in (m for g in level for m in members(g)):
                key = dn_key(member)
                if key in users:
                    result.setdefault(key, set()).add(dn_key(group))
                elif config.nested_groups and depth < MAX_NESTING and key not in seen:
                    seen.add(key)
                    deeper.append(member)
            level = deeper
    return result


def list_users(config: DirectoryConfig) -> Iterator[DirectoryUser]:
    """Every user under the user base with role and disabled state (paged), for the sync job."""
    every = config.user_filter.replace("{username}", "*")
    with _connection(config) as conn:
        entries = list(_search(conn, config.user_base, every, _user_attributes(config), paged=True))
        disabled: set[str] = set()
        if config.disabled_filter:
            query = f"(&{every}{config.disabled_filter})"
            disabled = {dn_key(e["dn"]) for e in _search(conn, config.user_base, query, [], paged=True)}
        groups = _role_group_members(conn, config, {dn_key(e["dn"]) for e in entries})
    now = datetime.now(UTC)
    for entry in entries:
        key = dn_key(entry["dn"])
        yield _make_user(config, entry, groups.get(key, set()), key in disabled, now)
