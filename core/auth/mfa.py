"""Time-based one-time passwords (RFC 6238) and recovery codes; no Flask, no database.

A code is accepted once: ``verify_code`` returns the time step it matched, the caller stores it,
and codes of that step or earlier are refused afterwards (no replay within the drift window).
"""

from __future__ import annotations

import hmac
import re
import secrets
from datetime import UTC, datetime

import pyotp
import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

INTERVAL = 30  # seconds per time step, what authenticator apps expect
DIGITS = 6
DRIFT_STEPS = 1  # a code from the step before or after the current one is still accepted
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i look-alikes
RECOVERY_GROUPS = (4, 4, 2)
CODE = re.compile(rf"^\d{{{DIGITS}}}$")


def new_secret() -> str:
    """A new random TOTP secret: 32 base32 characters (160 bits, as RFC 4226 recommends)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, username: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL).provisioning_uri(name=username,
                                                                               issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The URI as an inline SVG QR code, drawn here (no external service, no script)."""
    qr = segno.make(uri, error="m", micro=False)
    return qr.svg_inline(scale=4, border=4, dark="#000", light="#fff",
                         title="QR code for an authenticator app")


def current_step(at: datetime | None = None) -> int:
    """The TOTP time step (30-second interval since 1970) at ``at`` or now."""
    return int((at or datetime.now(UTC)).timestamp()) // INTERVAL


def verify_code(secret: str, code: str, last_used_step: int | None, at: datetime | None = None) -> int | None:
    """The time step ``code`` matches (±1 step), or None if wrong, malformed or not newer than the last."""
    code = re.sub(r"[\s-]", "", code or "")
    if not CODE.match(code):
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL)
    now = current_step(at)
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        if last_used_step is not None and step <= last_used_step:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_codes(n: int = 10) -> list[str]:
    """``n`` one-time recovery codes such as ``k7pm-x3qd-9a`` (about 49 bits each)."""
    def one() -> str:
        return "-".join("".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(size))
                        for size in RECOVERY_GROUPS)
    return [one() for _ in range(n)]


def normalise_recovery_code(code: str) -> str:
    """A recovery code as it is hashed: lower case, without dashes or spaces."""
    return re.sub(r"[\s-]", "", code or "").lower()


def hash_recovery_code(code: str, hasher: PasswordHasher | None = None) -> str:
    """Hash a recovery code with Argon2id (pass the app's hasher to use its cost settings)."""
    return (hasher or PasswordHasher()).hash(normalise_recovery_code(code))


def check_recovery_code(code: str, hashes: list[str], hasher: PasswordHasher | None = None) -> int | None:
    """Index of the hash ``code`` matches (the caller then deletes it), or None."""
    normalised = normalise_recovery_code(code)
    if not normalised:
        return None
    hasher = hasher or PasswordHasher()
    for index, stored in enumerate(hashes):
        try:
            if hasher.verify(stored, normalised):
                return index
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            continue
    return None
