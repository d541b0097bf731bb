"""The second login step: TOTP enrolment, codes at login (each accepted once), recovery codes, reset."""

from __future__ import annotations

import json
import re
from datetime import datetime

from flask import current_app
from sqlalchemy import select

from core import audit_sink
from core.auth import mfa
from core.auth.login import count_failure, locked_message
from core.auth.models import Role, User
from core.auth.passwords import hasher
from core.auth.services import AccountError
from core.extensions import db
from core.timeutil import utcnow

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "user.mfa_enrolment_started": "Authenticator enrolment started",
    "user.mfa_enrolled": "Authenticator enrolled (multi-factor authentication on)",
    "user.mfa_passed": "Second factor accepted at login",
    "user.mfa_failed": "Wrong second-factor code at login",
    "user.mfa_recovery_used": "Recovery code used to log in",
    "user.mfa_reset": "Multi-factor authentication reset by an administrator",
}

RECOVERY_CODES = 10


def mfa_required(user: User) -> bool:
    """Whether the user's role must use a second factor (``PACSDESK_MFA_REQUIRED_ROLES``)."""
    return Role(user.role) in current_app.config["PACSDESK_MFA_REQUIRED_ROLES"]


def _locked(user_id: int) -> User:
    """The account's row, locked until commit (a code is accepted once, even by parallel requests)."""
    return db.session.execute(select(User).where(User.id == user_id).with_for_update()
                              .execution_options(populate_existing=True)).scalar_one()


def start_enrolment(user_id: int) -> User:
    """Give the account a new TOTP secret unless an unconfirmed one is waiting; refuse when enrolled."""
    user = _locked(user_id)
    if user.mfa_enabled:
        raise AccountError("An authenticator is already enrolled; an administrator can reset it.")
    if user.mfa_secret is None:
        user.mfa_secret = mfa.new_secret()
        db.session.flush()
        audit_sink.record("user.mfa_enrolment_started", object_type="user", object_id=user.id, user=user,
                          details={"username": user.username})
    return user


def provisioning(user: User) -> tuple[str, str]:
    """The otpauth URI and its QR code (inline SVG) for the account's pending secret."""
    assert user.mfa_secret is not None
    issuer = f"{current_app.config['PACSDESK_ORGANIZATION']} PACS Desk".removeprefix("PACS Desk ")
    uri = mfa.provisioning_uri(user.mfa_secret, user.username, issuer)
    return uri, mfa.qr_svg(uri)


def confirm_enrolment(user_id: int, code: str, at: datetime | None = None) -> list[str]:
    """Turn MFA on once the first code matches; returns the recovery codes (shown once, stored hashed)."""
    user = _locked(user_id)
    if user.mfa_enabled or user.mfa_secret is None:
        raise AccountError("There is no enrolment waiting for a code; start again.", "code")
    step = mfa.verify_code(user.mfa_secret, code, user.mfa_last_step, at=at)
    if step is None:
        raise AccountError("That code does not match. Check the time on your phone and type the "
                           "6 digits the app shows now.", "code")
    codes = mfa.new_recovery_codes(RECOVERY_CODES)
    user.mfa_last_step = step
    user.mfa_enabled_at = utcnow()
    user.mfa_recovery_hashes = json.dumps([mfa.hash_recovery_code(c, hasher()) for c in codes])
    db.session.flush()
    audit_sink.record("user.mfa_enrolled", object_type="user", object_id=user.id, user=user,
                      details={"username": user.username, "recovery_codes": len(codes)})
    return codes


def verify_login_code(user_id: int, code: str, method: str,
                      at: datetime | None = None) -> tuple[str | None, str]:
    """Check a code at login: (None, factor) when accepted, else (message to show, factor); failures count."""
    user = _locked(user_id)
    now = at or utcnow()
    recovery = len(re.sub(r"[\s-]", "", code)) > mfa.DIGITS
    factor = "recovery code" if recovery else "totp"
    if user.is_disabled or user.is_locked(now) or not user.mfa_enabled or user.mfa_secret is None:
        return locked_message() if user.is_locked(now) else "Log in again.", factor
    if recovery:
        return _recovery(user, code, method, now), factor
    step = mfa.verify_code(user.mfa_secret, code, user.mfa_last_step, at=now)
    if step is None:
        result = count_failure(user, now, "wrong or reused code", method, action="user.mfa_failed")
        return (result.message if result.message == locked_message() else
                "That code is wrong or was already used."), factor
    user.mfa_last_step = step
    db.session.flush()
    audit_sink.record("user.mfa_passed", object_type="user", object_id=user.id, user=user,
                      details={"factor": factor, "method": method})
    return None, factor


def _recovery(user: User, code: str, method: str, now: datetime) -> str | None:
    """Accept a recovery code once: its hash is removed when it is used."""
    hashes = json.loads(user.mfa_recovery_hashes or "[]")
    index = mfa.check_recovery_code(code, hashes, hasher())
    if index is None:
        result = count_failure(user, now, "wrong or used recovery code", method, action="user.mfa_failed")
        return result.message if result.message == locked_message() else \
            "That recovery code is wrong or was already used."
    del hashes[index]
    user.mfa_recovery_hashes = json.dumps(hashes)
    db.session.flush()
    audit_sink.record("user.mfa_recovery_used", object_type="user", object_id=user.id, user=user,
                      details={"remaining": len(hashes), "method": method})
    audit_sink.record("user.mfa_passed", object_type="user", object_id=user.id, user=user,
                      details={"factor": "recovery code", "method": method})
    return None


def recovery_codes_left(user: User) -> int:
    """How many unused recovery codes the account has."""
    return len(json.loads(user.mfa_recovery_hashes or "[]"))


def reset_mfa(user: User, actor: User | None = None) -> None:
    """Remove the account's authenticator and recovery codes; it enrols again; its sessions end."""
    if not user.mfa_enabled and user.mfa_secret is None:
        raise AccountError(f"{user.username} has no authenticator to reset.")
    user.mfa_secret = None
    user.mfa_enabled_at = None
    user.mfa_last_step = None
    user.mfa_recovery_hashes = None
    user.session_version += 1
    db.session.flush()
    audit_sink.record("user.mfa_reset", object_type="user", object_id=user.id,
                      details={"username": user.username}, **({} if actor is None else {"user": actor}))
