"""Account operations; each writes its audit event and only flushes."""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from flask import Flask, current_app
from sqlalchemy import func, select

from core import audit_sink
from core.auth.models import Role, User
from core.auth.passwords import check_password, hash_password, password_problem
from core.extensions import db
from core.forms import FieldError
from core.registry import app_registry
from core.timeutil import utcnow

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "user.login": "User logged in",
    "user.login_failed": "Failed login attempt",
    "user.locked": "Account locked after repeated failed logins",
    "user.unlocked": "Account unlocked by an administrator",
    "user.created": "Account created",
    "user.updated": "Account details changed",
    "user.role_changed": "Role changed",
    "user.disabled": "Account disabled",
    "user.enabled": "Account re-enabled",
    "user.password_changed": "Password changed",
}

LOCKOUT_THRESHOLD = 5
LOCKOUT_WINDOW = timedelta(minutes=15)
LOCKOUT_DURATION = timedelta(minutes=15)
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")

UserHook = Callable[[User], None]


def _user_created_hooks(app: Flask) -> list[UserHook]:
    """Functions run after an account is created, in the same transaction (training assignments)."""
    return app_registry(app, "user_created_hooks", list)


def register_user_created_hook(app: Flask, hook: UserHook) -> None:
    """Let a package act on every new account (it only flushes)."""
    if hook not in _user_created_hooks(app):
        _user_created_hooks(app).append(hook)


class AccountError(FieldError):
    """An account operation was refused; ``field`` names the form field at fault."""


@dataclass(frozen=True)
class NewUser:
    """What it takes to create an account."""

    username: str
    role: Role
    password: str
    email: str | None = None
    full_name: str = ""
    department: str = ""


def generate_password(length: int = 20) -> str:
    """A random password that satisfies the policy."""
    alphabet = string.ascii_letters + string.digits + "-_.!"
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(length))
        if password_problem(candidate) is None:
            return candidate


def normalise_username(username: str) -> str:
    """Usernames are compared lower-case without surrounding spaces."""
    return username.strip().lower()


def find_user(username: str, for_update: bool = False) -> User | None:
    """Look an account up by username (``for_update`` locks its row until commit)."""
    query = select(User).where(User.username == normalise_username(username))
    if for_update:
        query = query.with_for_update()
    return db.session.execute(query).scalar_one_or_none()


def create_user(new: NewUser, actor: User | None = None) -> User:
    """Create an account and audit it."""
    username = normalise_username(new.username)
    if not USERNAME_RE.match(username):
        raise AccountError(
            "Username: 2-64 characters, lower-case letters, digits, dot, dash or underscore.",
            "username",
        )
    if find_user(username) is not None:
        raise AccountError(f"Username '{username}' is already taken.", "username")
    problem = password_problem(new.password, username)
    if problem:
        raise AccountError(problem, "password")
    user = User(
        username=username,
        role=Role(new.role).value,
        password_hash=hash_password(new.password),
        email=(new.email or None),
        full_name=new.full_name.strip(),
        department=new.department.strip(),
    )
    db.session.add(user)
    db.session.flush()
    audit_sink.record(
        "user.created", object_type="user", object_id=user.id,
        details={"username": username, "role": user.role, "department": user.department},
        **_actor(actor),
    )
    for hook in _user_created_hooks(current_app._get_current_object()):  # type: ignore[attr-defined]
        hook(user)
    return user


def _actor(actor: User | None) -> dict:
    """Audit keyword arguments for an explicit actor (CLI) or the request's user."""
    return {} if actor is None else {"user": actor}


def change_role(user: User, role: Role, actor: User | None = None) -> None:
    """Change a role; the user's open sessions end so the new powers apply at once."""
    if user.role == role.value:
        return
    old = user.role
    user.role = role.value
    user.session_version += 1
    db.session.flush()
    audit_sink.record("user.role_changed", object_type="user", object_id=user.id,
                      details={"username": user.username, "old": old, "new": role.value},
                      **_actor(actor))


def update_profile(user: User, full_name: str, email: str | None, department: str,
                   actor: User | None = None) -> None:
    """Change an account's name, e-mail and department."""
    changes = {}
    for field, value in (("full_name", full_name.strip()), ("email", email or None),
                         ("department", department.strip())):
        if getattr(user, field) != value:
            changes[field] = {"old": getattr(user, field), "new": value}
            setattr(user, field, value)
    if changes:
        db.session.flush()
        audit_sink.record("user.updated", object_type="user", object_id=user.id,
                          details={"username": user.username, "changes": changes},
                          **_actor(actor))


def disable_user(user: User, actor: User | None = None) -> None:
    """Disable an account and end its sessions (HIPAA termination procedures)."""
    if actor is not None and actor.id == user.id:
        raise AccountError("You cannot disable your own account.")
    if user.is_disabled:
        return
    user.is_disabled = True
    user.disabled_at = utcnow()
    user.session_version += 1
    db.session.flush()
    audit_sink.record("user.disabled", object_type="user", object_id=user.id,
                      details={"username": user.username}, **_actor(actor))


def enable_user(user: User, actor: User | None = None) -> None:
    """Re-enable a disabled account."""
    if not user.is_disabled:
        return
    user.is_disabled = False
    user.disabled_at = None
    db.session.flush()
    audit_sink.record("user.enabled", object_type="user", object_id=user.id,
                      details={"username": user.username}, **_actor(actor))


def unlock_user(user: User, actor: User | None = None) -> None:
    """Clear a lockout."""
    user.locked_until = None
    user.failed_login_count = 0
    user.first_failed_login_at = None
    db.session.flush()
    audit_sink.record("user.unlocked", object_type="user", object_id=user.id,
                      details={"username": user.username}, **_actor(actor))


def set_password(user: User, password: str, actor: User | None = None) -> None:
    """Replace a password after checking the policy."""
    problem = password_problem(password, user.username)
    if problem:
        raise AccountError(problem, "password")
    user.password_hash = hash_password(password)
    user.session_version += 1  # every other session of this account ends
    db.session.flush()
    audit_sink.record("user.password_changed", object_type="user", object_id=user.id,
                      details={"username": user.username}, **_actor(actor))


@dataclass(frozen=True)
class LoginResult:
    """Outcome of a login attempt."""

    user: User | None
    message: str | None = None


GENERIC_FAILURE = "Invalid username or password."


def authenticate(username: str, password: str) -> LoginResult:
    """Check credentials, count failures, lock after 5 in 15 minutes; audits every attempt."""
    now = utcnow()
    name = normalise_username(username)[:64]
    # Locked so that parallel wrong passwords (threads, replicas) each count toward the lockout.
    user = find_user(name, for_update=True)
    if user is None:
        check_password(_dummy_hash(), password)
        audit_sink.record("user.login_failed", outcome="failure", username=name,
                          details={"reason": "unknown user"})
        return LoginResult(None, GENERIC_FAILURE)
    if user.is_disabled:
        audit_sink.record("user.login_failed", outcome="failure", user=user,
                          object_type="user", object_id=user.id,
                          details={"reason": "account disabled"})
        return LoginResult(None, GENERIC_FAILURE)
    if user.is_locked(now):
        audit_sink.record("user.login_failed", outcome="failure", user=user,
                          object_type="user", object_id=user.id,
                          details={"reason": "account locked"})
        return LoginResult(None, _locked_message())
    if not check_password(user.password_hash, password):
        return _count_failure(user, now)
    user.failed_login_count = 0
    user.first_failed_login_at = None
    user.locked_until = None
    user.last_login_at = now
    db.session.flush()
    audit_sink.record("user.login", user=user, object_type="user", object_id=user.id)
    return LoginResult(user)


def _locked_message() -> str:
    """What a locked-out user is told."""
    minutes = int(LOCKOUT_DURATION.total_seconds() // 60)
    return (f"This account is locked after repeated failed logins. Try again in {minutes} "
            "minutes or ask a PACS Desk administrator to unlock it.")


def _count_failure(user: User, now) -> LoginResult:
    """Record a wrong password and lock the account at the threshold."""
    if user.first_failed_login_at is None or now - user.first_failed_login_at > LOCKOUT_WINDOW:
        user.first_failed_login_at = now
        user.failed_login_count = 0
    user.failed_login_count += 1
    audit_sink.record("user.login_failed", outcome="failure", user=user, object_type="user",
                      object_id=user.id,
                      details={"reason": "wrong password", "attempt": user.failed_login_count})
    if user.failed_login_count >= LOCKOUT_THRESHOLD:
        user.locked_until = now + LOCKOUT_DURATION
        user.failed_login_count = 0
        user.first_failed_login_at = None
        audit_sink.record("user.locked", outcome="failure", user=user, object_type="user",
                          object_id=user.id,
                          details={"until": user.locked_until.isoformat()})
        db.session.flush()
        return LoginResult(None, _locked_message())
    db.session.flush()
    return LoginResult(None, GENERIC_FAILURE)


_dummy: list[str] = []


def _dummy_hash() -> str:
    """A hash to verify against for unknown users, so timing does not reveal usernames."""
    if not _dummy:
        _dummy.append(hash_password(secrets.token_hex(16)))
    return _dummy[0]


def count_users() -> int:
    """How many accounts exist."""
    return db.session.execute(select(func.count()).select_from(User)).scalar_one()
