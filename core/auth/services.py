"""Account operations; each writes its audit event and only flushes."""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from flask import Flask
from sqlalchemy import func, select

from core import audit_sink
from core.auth.models import AuthSource, Role, User
from core.auth.passwords import hash_password, password_problem
from core.extensions import db
from core.forms import FieldError
from core.registry import app_registry, current_app_object
from core.timeutil import utcnow

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "user.unlocked": "Account unlocked by an administrator",
    "user.created": "Account created",
    "user.updated": "Account details changed",
    "user.role_changed": "Role changed",
    "user.disabled": "Account disabled",
    "user.enabled": "Account re-enabled",
    "user.password_changed": "Password changed",
    "user.password_reset": "Password reset by an administrator (one-time password)",
}

LOCKOUT_THRESHOLD = 5
LOCKOUT_WINDOW = timedelta(minutes=15)
LOCKOUT_DURATION = timedelta(minutes=15)
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
DIRECTORY_USERNAME_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")
NO_LOCAL_PASSWORD = "!directory"  # noqa: S105 -- not an Argon2 hash: no password ever matches it
ENDED_BY_ADMIN = "disabled by an administrator"

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
    must_change_password: bool = False
    auth_source: AuthSource = AuthSource.LOCAL
    directory_dn: str | None = None


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
    if for_update:  # and re-read: an object loaded earlier in the session may hold stale counts
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.session.execute(query).scalar_one_or_none()


def create_user(new: NewUser, actor: User | None = None) -> User:
    """Create an account and audit it (a directory account gets no local password)."""
    username = normalise_username(new.username)
    directory = new.auth_source == AuthSource.DIRECTORY
    if not (DIRECTORY_USERNAME_RE if directory else USERNAME_RE).match(username):
        raise AccountError(
            "Username: 2-64 characters, lower-case letters, digits, dot, dash or underscore.",
            "username",
        )
    if find_user(username) is not None:
        raise AccountError(f"Username '{username}' is already taken.", "username")
    if not directory:
        problem = password_problem(new.password, username, (new.full_name, new.email or ""))
        if problem:
            raise AccountError(problem, "password")
    user = User(
        username=username,
        role=Role(new.role),
        password_hash=NO_LOCAL_PASSWORD if directory else hash_password(new.password),
        email=(new.email or None),
        full_name=new.full_name.strip(),
        department=new.department.strip(),
        must_change_password=new.must_change_password and not directory,
        auth_source=new.auth_source,
        directory_dn=new.directory_dn,
    )
    db.session.add(user)
    db.session.flush()
    audit_sink.record(
        "user.created", object_type="user", object_id=user.id,
        details={"username": username, "role": user.role, "department": user.department,
                 "source": user.auth_source},
        **_actor(actor),
    )
    for hook in _user_created_hooks(current_app_object()):
        hook(user)
    return user


def _actor(actor: User | None) -> dict:
    """Audit keyword arguments for an explicit actor (CLI) or the request's user."""
    return {} if actor is None else {"user": actor}


def change_role(user: User, role: Role, actor: User | None = None, source: str = "administrator") -> bool:
    """Change a role (``source``: administrator or directory); the user's open sessions end."""
    if user.role == role:
        return False
    old = user.role
    user.role = role
    user.session_version += 1
    db.session.flush()
    audit_sink.record("user.role_changed", object_type="user", object_id=user.id,
                      details={"username": user.username, "old": old, "new": role.value,
                               "source": source},
                      **_actor(actor))
    return True


def update_profile(user: User, full_name: str, email: str | None, department: str,
                   actor: User | None = None, directory_dn: str | None = None) -> None:
    """Change an account's name, e-mail and department (and a directory account's DN)."""
    changes = {}
    fields = [("full_name", full_name.strip()[:200]), ("email", (email or None) and email[:254]),
              ("department", department.strip()[:120])]
    if directory_dn is not None:
        fields.append(("directory_dn", directory_dn[:1000]))
    for field, value in fields:
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
    now = utcnow()
    user.is_disabled = True
    user.disabled_at = now
    user.access_ended_at = now
    user.access_end_reason = ENDED_BY_ADMIN
    user.directory_missing_since = None
    user.session_version += 1
    db.session.flush()
    audit_sink.record("user.disabled", object_type="user", object_id=user.id,
                      details={"username": user.username}, **_actor(actor))


def enable_user(user: User, actor: User | None = None, source: str = "administrator") -> None:
    """Re-enable a disabled account (``source``: administrator, or directory at a directory login)."""
    if not user.is_disabled:
        return
    user.is_disabled = False
    user.disabled_at = None
    user.access_ended_at = None
    user.access_end_reason = None
    user.directory_missing_since = None
    db.session.flush()
    audit_sink.record("user.enabled", object_type="user", object_id=user.id,
                      details={"username": user.username, "source": source}, **_actor(actor))


def unlock_user(user: User, actor: User | None = None) -> None:
    """Clear a lockout."""
    user.locked_until = None
    user.failed_login_count = 0
    user.first_failed_login_at = None
    db.session.flush()
    audit_sink.record("user.unlocked", object_type="user", object_id=user.id,
                      details={"username": user.username}, **_actor(actor))


def _new_password_hash(user: User, password: str) -> str:
    """The hash of ``password`` for ``user``, after the policy; directory accounts have none."""
    if user.is_directory:
        raise AccountError("The hospital directory manages this account's password; "
                           "change it there.", "password")
    problem = password_problem(password, user.username, (user.full_name, user.email or ""))
    if problem:
        raise AccountError(problem, "password")
    return hash_password(password)


def set_password(user: User, password: str, actor: User | None = None, must_change: bool = False) -> None:
    """Replace a password after checking the policy; ``must_change`` asks for a new one at next login."""
    user.password_hash = _new_password_hash(user, password)
    user.must_change_password = must_change
    user.session_version += 1  # every other session of this account ends
    db.session.flush()
    audit_sink.record("user.password_changed", object_type="user", object_id=user.id,
                      details={"username": user.username, "must_change": must_change},
                      **_actor(actor))


def reset_password(user: User, actor: User | None = None) -> str:
    """Give an account a one-time password (returned to show once) that must be changed at next login."""
    password = generate_password()
    user.password_hash = _new_password_hash(user, password)
    user.must_change_password = True
    user.session_version += 1
    db.session.flush()
    audit_sink.record("user.password_reset", object_type="user", object_id=user.id,
                      details={"username": user.username}, **_actor(actor))
    return password


def count_users() -> int:
    """How many accounts exist."""
    return db.session.execute(select(func.count()).select_from(User)).scalar_one()
