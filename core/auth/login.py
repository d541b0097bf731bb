"""Checking a password at login, locally or against the hospital directory, and counting failures.

A password that is right does not log anyone in by itself: the caller then asks for the second
factor when the account has one (see ``second_factor``) and calls ``complete_login``. Failures of
either step count toward the same lockout. Names that belong to no account are counted the same
way, so the lockout message never tells a real account from an unknown one.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from flask import current_app
from sqlalchemy import delete, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from zxcvbn import zxcvbn

from core import audit_sink
from core.auth import directory
from core.auth.models import UnknownLoginName, User
from core.auth.passwords import check_password, hash_password
from core.auth.services import (
    LOCKOUT_DURATION,
    LOCKOUT_THRESHOLD,
    LOCKOUT_WINDOW,
    find_user,
    normalise_username,
)
from core.extensions import db
from core.timeutil import utcnow

log = logging.getLogger("pacsdesk.auth")

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "user.login": "User logged in",
    "user.login_failed": "Failed login attempt",
    "user.locked": "Account locked after repeated failed logins",
}

GENERIC_FAILURE = "Invalid username or password."
MAX_NAME = 256  # longer names are refused before any lookup (the directory allows no more)
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# A typed name is stored in the audit trail only when it looks like a username and not like a
# password: 2-32 characters of letters, digits, dot, dash or underscore; letters all in one case;
# not a digit together with a separator; at most two separators; and no part that zxcvbn knows
# as a common password, a keyboard walk, a sequence, a repeat or a date.
STORABLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,31}$")
PASSWORD_PATTERNS = {"spatial", "sequence", "repeat", "date", "regex"}


class Method(StrEnum):
    """How the password was checked (written into the login events)."""

    LOCAL = "local"
    DIRECTORY = "directory"


@dataclass(frozen=True)
class LoginResult:
    """Outcome of the password step: the user whose password was right, or the message to show."""

    user: User | None
    message: str | None = None
    method: str = Method.LOCAL


def name_is_storable(text: str) -> bool:
    """Whether a name typed at login may be kept as typed (see the rule above), else only its keyed hash."""
    if not STORABLE_NAME.match(text):
        return False
    letters = [c for c in text if c.isalpha()]
    if any(c.isupper() for c in letters) and any(c.islower() for c in letters):
        return False
    separators = sum(c in "._-" for c in text)
    if separators > 2 or (separators and any(c.isdigit() for c in text)):
        return False
    for match in zxcvbn(text.lower())["sequence"]:
        if match["pattern"] in PASSWORD_PATTERNS and len(match["token"]) >= 3:
            return False
        if match.get("dictionary_name") == "passwords" and len(match["token"]) >= 4:
            return False
    return True


def name_key(text: str) -> str:
    """A keyed hash (HMAC-SHA256 with the app's secret key) of a typed name."""
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def typed_name_fields(typed: str) -> dict[str, Any]:
    """Audit fields for a name that belongs to no account: the name, or its hash and 'not stored'."""
    text = typed.strip()
    if name_is_storable(text):
        return {"username": normalise_username(text), "details": {"reason": "unknown user"}}
    return {"username": None,
            "details": {"reason": "unknown user (not stored)", "name_hmac": name_key(text)[:32]}}


def form_problem(username: str, password: str) -> str | None:
    """Why a login form cannot be processed at all (control characters, a name too long), or None."""
    if CONTROL.search(username) or CONTROL.search(password):
        return "The username or password contains a control character (such as NUL); type them again."
    if len(username.strip()) > MAX_NAME:
        return f"The username is longer than {MAX_NAME} characters."
    return None


def record_refused_form(username: str, problem: str) -> None:
    """Audit a login form refused before any check (the name is never stored as typed)."""
    audit_sink.record("user.login_failed", outcome="failure", username=None,
                      details={"reason": problem, "name_hmac": name_key(username)[:32]})


_dummy: list[str] = []


def _burn_password_work(password: str) -> None:
    """Verify against a throw-away hash: every attempt costs one Argon2 verification."""
    if not _dummy:
        _dummy.append(hash_password(secrets.token_hex(16)))
    check_password(_dummy[0], password)


def authenticate(username: str, password: str, config: directory.DirectoryConfig | None) -> LoginResult:
    """Check a password (locally or with the directory, ``config``); audits every failure.

    A directory login ends the database transaction before the directory is asked (a network
    wait never holds a lock) and opens a new one for what follows.
    """
    now = utcnow()
    name = normalise_username(username)
    user = find_user(name) if len(name) <= 64 else None
    if config is not None and (user is None or user.is_directory):
        return _directory_login(name, username, password, user, config, now)
    if user is not None and user.is_directory:
        _burn_password_work(password)
        audit_sink.record("user.login_failed", outcome="failure", user=user, object_type="user",
                          object_id=user.id, details={"reason": "directory not configured",
                                                      "method": Method.DIRECTORY})
        return LoginResult(None, directory.DirectoryUnavailable.message, Method.DIRECTORY)
    if user is None:
        _burn_password_work(password)
        return _count_unknown(username, now, Method.LOCAL)
    # Locked so that parallel wrong passwords (threads, replicas) each count toward the lockout.
    user = find_user(name, for_update=True)
    assert user is not None
    refusal = _refusal(user, now, Method.LOCAL)
    if refusal is not None:
        _burn_password_work(password)
        return refusal
    if not check_password(user.password_hash, password):
        return count_failure(user, now, "wrong password", Method.LOCAL)
    return LoginResult(user, method=Method.LOCAL)


def _refusal(user: User, now: datetime, method: str) -> LoginResult | None:
    """The answer for a disabled or locked account (audited), or None when it may try."""
    if user.is_disabled:
        audit_sink.record("user.login_failed", outcome="failure", user=user, object_type="user",
                          object_id=user.id, details={"reason": "account disabled", "method": method})
        return LoginResult(None, GENERIC_FAILURE, method)
    if user.is_locked(now):
        audit_sink.record("user.login_failed", outcome="failure", user=user, object_type="user",
                          object_id=user.id, details={"reason": "account locked", "method": method})
        return LoginResult(None, locked_message(), method)
    return None


def _directory_login(name: str, typed: str, password: str, user: User | None,
                     config: directory.DirectoryConfig, now: datetime) -> LoginResult:
    """Bind as the person; create or update their account from what the directory says."""
    from core.auth import directory_accounts

    method = Method.DIRECTORY
    if user is not None and not (user.is_disabled and directory_accounts.ended_by_directory(user)):
        refusal = _refusal(user, now, method)
        if refusal is not None:
            _burn_password_work(password)
            return refusal
    elif user is None and _unknown_is_locked(typed, now):
        _burn_password_work(password)
        return _count_unknown(typed, now, method)
    _burn_password_work(password)  # a local account's Argon2 work, so timing shows no difference
    db.session.rollback()  # no transaction (and on SQLite no write lock) across the network wait
    try:
        person = directory.authenticate(config, name, password)
    except directory.InvalidCredentials as exc:
        account = find_user(name, for_update=True) if user is not None else None
        if account is None:
            return _count_unknown(typed, now, method)
        return count_failure(account, now, "wrong password", method, detail=exc.detail)
    except directory.DirectoryUnavailable as exc:
        log.warning("directory login failed: %s", exc.detail)
        fields: dict[str, Any] = ({"user": user, "object_type": "user", "object_id": user.id}
                                  if user is not None else typed_name_fields(typed))
        details = {**fields.pop("details", {}), "reason": "directory unreachable", "method": method}
        audit_sink.record("user.login_failed", outcome="failure", details=details, **fields)
        return LoginResult(None, _sentence(exc.message), method)
    except (directory.NotAllowed, directory.AccountDisabled) as exc:
        account = find_user(name, for_update=True)
        reason = ("in no role group" if isinstance(exc, directory.NotAllowed)
                  else "disabled in the directory")
        if account is not None and account.is_directory:
            if not account.is_disabled:
                directory_accounts.end_access(account, reason, now)
            audit_sink.record("user.login_failed", outcome="failure", user=account, object_type="user",
                              object_id=account.id, details={"reason": reason, "method": method})
        else:
            audit_sink.record("user.login_failed", outcome="failure", username=name,
                              details={"reason": reason, "method": method})
        return LoginResult(None, _sentence(exc.message), method)
    account = directory_accounts.apply_login(person)
    if account is None:
        audit_sink.record("user.login_failed", outcome="failure", username=name,
                          details={"reason": "a local account has this name", "method": method})
        return LoginResult(None, GENERIC_FAILURE, method)
    return LoginResult(account, method=method)


def _sentence(message: str) -> str:
    """A directory message as a sentence for the login page."""
    return message[:1].upper() + message[1:] + "."


def complete_login(user: User, method: str, factor: str) -> None:
    """Both steps passed: clear the failure count, note the time and audit the login."""
    user.failed_login_count = 0
    user.first_failed_login_at = None
    user.locked_until = None
    user.last_login_at = utcnow()
    db.session.flush()
    audit_sink.record("user.login", user=user, object_type="user", object_id=user.id,
                      details={"method": method, "second_factor": factor})


def locked_message() -> str:
    """What a locked-out user is told (the same for every name, real or not)."""
    minutes = int(LOCKOUT_DURATION.total_seconds() // 60)
    return (f"This account is locked after repeated failed logins. Try again in {minutes} "
            "minutes or ask a PACS Desk administrator to unlock it.")


def count_failure(user: User, now: datetime, reason: str, method: str,
                  action: str = "user.login_failed", detail: str = "") -> LoginResult:
    """Record a failed step (``action``) for a row-locked ``user``; lock the account at the threshold."""
    if user.first_failed_login_at is None or now - user.first_failed_login_at > LOCKOUT_WINDOW:
        user.first_failed_login_at = now
        user.failed_login_count = 0
    user.failed_login_count += 1
    details = {"reason": reason, "attempt": user.failed_login_count, "method": method}
    if detail:
        details["detail"] = detail[:300]
    audit_sink.record(action, outcome="failure", user=user, object_type="user", object_id=user.id,
                      details=details)
    if user.failed_login_count >= LOCKOUT_THRESHOLD:
        user.locked_until = now + LOCKOUT_DURATION
        user.failed_login_count = 0
        user.first_failed_login_at = None
        audit_sink.record("user.locked", outcome="failure", user=user, object_type="user",
                          object_id=user.id, details={"until": user.locked_until.isoformat()})
        db.session.flush()
        return LoginResult(None, locked_message(), method)
    db.session.flush()
    return LoginResult(None, GENERIC_FAILURE, method)


def _unknown_row(typed: str) -> UnknownLoginName:
    """The failure counter of a name no account has, created if new, locked until commit."""
    key = name_key(normalise_username(typed))
    dialect = db.session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    db.session.execute(insert(UnknownLoginName).values(name_hash=key, failed_login_count=0)
                       .on_conflict_do_nothing())
    return db.session.execute(select(UnknownLoginName).where(UnknownLoginName.name_hash == key)
                              .with_for_update().execution_options(populate_existing=True)).scalar_one()


def _unknown_is_locked(typed: str, now: datetime) -> bool:
    """Whether a name no account has is 'locked' like an account would be."""
    key = name_key(normalise_username(typed))
    row = db.session.get(UnknownLoginName, key)
    return row is not None and row.locked_until is not None and row.locked_until > now


def _count_unknown(typed: str, now: datetime, method: str) -> LoginResult:
    """Count a failure for a name no account has, exactly as for an account; audit it."""
    _forget_old_unknown_names(now)
    row = _unknown_row(typed)
    fields = typed_name_fields(typed)
    details = {**fields.pop("details"), "method": method}
    if row.locked_until is not None and row.locked_until > now:
        audit_sink.record("user.login_failed", outcome="failure", details=details, **fields)
        return LoginResult(None, locked_message(), method)
    if row.first_failed_login_at is None or now - row.first_failed_login_at > LOCKOUT_WINDOW:
        row.first_failed_login_at = now
        row.failed_login_count = 0
    row.failed_login_count += 1
    details["attempt"] = row.failed_login_count
    audit_sink.record("user.login_failed", outcome="failure", details=details, **fields)
    if row.failed_login_count >= LOCKOUT_THRESHOLD:
        row.locked_until = now + LOCKOUT_DURATION
        row.failed_login_count = 0
        row.first_failed_login_at = None
        db.session.flush()
        return LoginResult(None, locked_message(), method)
    db.session.flush()
    return LoginResult(None, GENERIC_FAILURE, method)


def _forget_old_unknown_names(now: datetime) -> None:
    """Drop counters of unknown names whose window and lock have both passed a day ago."""
    day_ago = now - timedelta(days=1)
    db.session.execute(delete(UnknownLoginName).where(
        or_(UnknownLoginName.first_failed_login_at.is_(None),
            UnknownLoginName.first_failed_login_at < day_ago),
        or_(UnknownLoginName.locked_until.is_(None), UnknownLoginName.locked_until < day_ago)))
