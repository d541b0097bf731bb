"""Password policy (length, then guessability against common and breached-password lists) and Argon2id."""

from __future__ import annotations

import re
from collections.abc import Iterable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app
from zxcvbn import zxcvbn

MIN_LENGTH = 12
MAX_LENGTH = 256
MIN_SCORE = 3  # zxcvbn: 3 "safely unguessable", about 10^8 guesses or more
CHECKED_PREFIX = 100  # zxcvbn's work grows with length; the first 100 characters decide


def _hasher() -> PasswordHasher:
    """The configured Argon2id hasher (tests may lower its cost)."""
    params = current_app.config.get("PASSWORD_HASH_PARAMS") or {}
    return PasswordHasher(**params)


def hasher() -> PasswordHasher:
    """The app's Argon2id hasher, for other secrets hashed like passwords (recovery codes)."""
    return _hasher()


def password_problem(password: str, username: str = "", personal: Iterable[str] = ()) -> str | None:
    """Why ``password`` is not acceptable, or None.

    Besides length, the password is scored with zxcvbn, whose lists (30,000 common and breached
    passwords, names, English words, keyboard patterns, sequences, dates) ship with the package:
    nothing is sent over the network. ``personal`` words (name, e-mail) count as easy to guess.
    """
    if len(password) < MIN_LENGTH:
        return f"Password must be at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Password must be at most {MAX_LENGTH} characters."
    if username and username.lower() in password.lower():
        return "Password must not contain the username."
    if len(set(password)) < 4:
        return "Password is too repetitive."
    inputs = [word for text in (username, *personal) for word in re.split(r"[\W_]+", text) if len(word) > 2]
    if any(len(word) > 3 and word.lower() in password.lower() for word in inputs[1:]):
        return "Password must not contain your name or e-mail address."
    result = zxcvbn(password[:CHECKED_PREFIX], user_inputs=inputs)
    if result["score"] < MIN_SCORE:
        warning = result["feedback"]["warning"] or "It follows a pattern that is easy to guess."
        return (f"Password is too easy to guess: {warning.rstrip('.')}. "
                "Use a few unrelated words, or a longer mix of letters, digits and symbols.")
    return None


def hash_password(password: str) -> str:
    """Hash a password with Argon2id."""
    return _hasher().hash(password)


def check_password(stored_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash``."""
    try:
        return _hasher().verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
