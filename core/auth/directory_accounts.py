"""Accounts that the hospital directory owns: created at first login, kept in step, ended by the sync.

The sync lists every person in the directory (outside any transaction), then in one transaction
ends the access of each directory account whose person is gone, disabled or out of every role
group, and moves roles that changed. A listing that fails or is cut short changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import select

from core import audit_sink
from core.auth import directory
from core.auth.models import AuthSource, DirectorySyncRun, Role, User
from core.auth.services import (
    AccountError,
    NewUser,
    change_role,
    create_user,
    enable_user,
    find_user,
    update_profile,
)
from core.extensions import db
from core.jobs.registry import JobContext
from core.timeutil import utcnow

log = logging.getLogger("pacsdesk.directory")

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "user.access_ended": "Access ended after a change in the hospital directory",
    "directory.sync": "Directory sync run",
    "directory.sync_failed": "Directory sync failed; nothing was changed",
}

REMOVED = "removed from the directory"
DISABLED = "disabled in the directory"
NO_GROUP = "in no role group"
EXPIRED = "expired in the directory"
DIRECTORY_REASONS = frozenset({REMOVED, DISABLED, NO_GROUP, EXPIRED})


def ended_by_directory(user: User) -> bool:
    """Whether the account was disabled because of the directory (a later good login lifts it)."""
    return user.access_end_reason in DIRECTORY_REASONS


def apply_login(person: directory.DirectoryUser) -> User | None:
    """The account of a person the directory just vouched for: created, or brought up to date.

    None when a local account already has the name (a local account never becomes a
    directory one by logging in).
    """
    assert person.role is not None
    user = find_user(person.username, for_update=True)
    if user is None:
        try:
            return create_user(NewUser(
                username=person.username, role=Role(person.role), password="", email=person.email,
                full_name=person.full_name, department=person.department,
                auth_source=AuthSource.DIRECTORY, directory_dn=person.dn))
        except AccountError:
            log.warning("directory login: the directory's username cannot be an account name")
            return None
    if not user.is_directory:
        return None
    update_profile(user, person.full_name, person.email, person.department, directory_dn=person.dn)
    change_role(user, Role(person.role), source="directory")
    if user.is_disabled and ended_by_directory(user):
        enable_user(user, source="directory")
    return user


def end_access(user: User, reason: str, seen_at: datetime, now: datetime | None = None) -> None:
    """Disable a directory account and end its sessions; ``seen_at`` is when the change was first known."""
    now = now or utcnow()
    user.is_disabled = True
    user.disabled_at = now
    user.access_ended_at = now
    user.directory_missing_since = min(seen_at, now)
    user.access_end_reason = reason
    user.session_version += 1
    db.session.flush()
    audit_sink.record("user.access_ended", object_type="user", object_id=user.id, user=None,
                      details={"username": user.username, "reason": reason,
                               "first_seen": user.directory_missing_since.isoformat()})


@dataclass(frozen=True)
class SyncOutcome:
    """What a sync run did."""

    ok: bool
    listed: int
    ended: int
    role_changes: int
    problem: str | None = None


def _verdict(person: directory.DirectoryUser | None, now: datetime) -> tuple[str | None, datetime]:
    """Why a person's access must end (None: it goes on) and since when that is known."""
    if person is None:
        return REMOVED, now
    if person.expires_at is not None and person.expires_at <= now:
        return EXPIRED, person.expires_at
    if person.disabled:
        return DISABLED, now
    if person.role is None:
        return NO_GROUP, now
    return None, now


def apply_listing(people: Iterable[directory.DirectoryUser], started: datetime) -> SyncOutcome:
    """Bring every active directory account in line with a complete listing (flushes, audits)."""
    by_name = {person.username: person for person in people}
    accounts = db.session.execute(
        select(User).where(User.auth_source == AuthSource.DIRECTORY, User.is_disabled.is_(False))
        .order_by(User.id).with_for_update()).scalars().all()
    if not by_name and accounts:
        return _failed(started, "the directory listed nobody under PACSDESK_LDAP_USER_BASE")
    now = utcnow()
    ended = changed = 0
    for user in accounts:
        person = by_name.get(user.username)
        reason, seen = _verdict(person, now)
        if reason is not None:
            end_access(user, reason, seen, now)
            ended += 1
        elif person is not None and person.role is not None:
            changed += change_role(user, Role(person.role), source="directory")
    outcome = SyncOutcome(True, len(by_name), ended, changed)
    _record_run(started, outcome)
    return outcome


def _failed(started: datetime, problem: str) -> SyncOutcome:
    """Record a failed run: nothing else changes."""
    outcome = SyncOutcome(False, 0, 0, 0, problem)
    _record_run(started, outcome)
    return outcome


def _record_run(started: datetime, outcome: SyncOutcome) -> None:
    """Keep the run and audit it."""
    run = DirectorySyncRun(started_at=started, finished_at=utcnow(), ok=outcome.ok, listed=outcome.listed,
                           ended=outcome.ended, role_changes=outcome.role_changes,
                           problem=outcome.problem)
    db.session.add(run)
    db.session.flush()
    if outcome.ok:
        audit_sink.record("directory.sync", object_type="directory_sync", object_id=run.id, user=None,
                          details={"listed": outcome.listed, "ended": outcome.ended,
                                   "role_changes": outcome.role_changes})
    else:
        audit_sink.record("directory.sync_failed", outcome="failure", object_type="directory_sync",
                          object_id=run.id, user=None, details={"problem": outcome.problem})


def sync_directory(config: directory.DirectoryConfig) -> SyncOutcome:
    """List the directory outside any transaction, then apply the listing (the caller commits)."""
    db.session.rollback()
    started = utcnow()
    try:
        people = list(directory.list_users(config))
    except directory.DirectoryError as exc:
        log.warning("directory sync failed: %s", exc.detail)
        return _failed(started, f"{exc.message}: {exc.detail}"[:2000])
    return apply_listing(people, started)


def sync_job(ctx: JobContext) -> dict[str, Any]:
    """The periodic job: sync with the directory configured, and commit."""
    config = current_app.config.get("PACSDESK_DIRECTORY")
    if config is None:
        return {"skipped": "no directory is configured"}
    outcome = sync_directory(config)
    db.session.commit()
    log.info("directory sync: ok=%s listed=%d ended=%d role changes=%d", outcome.ok, outcome.listed,
             outcome.ended, outcome.role_changes)
    return {"ok": outcome.ok, "listed": outcome.listed, "ended": outcome.ended,
            "role_changes": outcome.role_changes}


def sync_interval(app) -> float:
    """Seconds between syncs (``PACSDESK_LDAP_SYNC_MINUTES``)."""
    return float(app.config["PACSDESK_LDAP_SYNC_MINUTES"] * 60)


def last_runs(limit: int = 5) -> list[DirectorySyncRun]:
    """The latest sync runs, newest first."""
    return list(db.session.execute(select(DirectorySyncRun).order_by(DirectorySyncRun.id.desc())
                                   .limit(limit)).scalars())


def last_good_run() -> DirectorySyncRun | None:
    """The latest sync that completed."""
    return db.session.execute(select(DirectorySyncRun).where(DirectorySyncRun.ok.is_(True))
                              .order_by(DirectorySyncRun.id.desc()).limit(1)).scalar_one_or_none()
