"""The audit chain's keys: HMAC-SHA256 keys kept outside the database, by id, with rotation.

Keys come from ``PACSDESK_AUDIT_KEY`` or from a keyring file of ``id:key`` lines
(``PACSDESK_AUDIT_KEY_FILE``, by default ``audit_key`` in the instance folder). The newest key
(highest id) is the one a rotation switches to; every event stores the id of the key that
sealed it, so events sealed with older keys keep verifying as long as their key stays listed.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask

from core.config import AUDIT_KEY_ID_MAX, ConfigError, parse_audit_keyring, read_audit_key_file
from core.registry import app_registry, current_app_object

LEGACY_KEY_ID = 0  # events written before keys existed: plain SHA-256, never written again
_BLOCK = 64        # SHA-256 block size, for the HMAC pads


class AuditKeyError(RuntimeError):
    """An audit key is missing or cannot be written; the message says which and what to do."""


@dataclass(frozen=True)
class AuditKey:
    """One HMAC-SHA256 key with its pads precomputed (verification hashes millions of events)."""

    key_id: int
    _inner: Any = field(repr=False, compare=False)
    _outer: Any = field(repr=False, compare=False)

    def mac(self, payload: bytes) -> str:
        """HMAC-SHA256 of ``payload`` as 64 hex digits (same result as ``hmac.new``)."""
        inner = self._inner.copy()
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def make_key(key_id: int, secret: bytes) -> AuditKey:
    """An AuditKey for ``secret`` (RFC 2104: keys longer than a block are hashed first)."""
    if len(secret) > _BLOCK:
        secret = hashlib.sha256(secret).digest()
    padded = secret.ljust(_BLOCK, b"\0")
    return AuditKey(key_id, hashlib.sha256(bytes(b ^ 0x36 for b in padded)),
                    hashlib.sha256(bytes(b ^ 0x5C for b in padded)))


class Keyring:
    """The keys this process knows, by id; a file keyring is re-read when an unknown id is asked for.

    Re-reading lets a running server pick up a key that ``pacsdesk audit rotate-key`` added
    to the file; keys given in the environment need a restart.
    """

    def __init__(self, keys: Mapping[int, bytes], path: Path | None = None) -> None:
        if not keys:
            raise AuditKeyError("the audit keyring is empty")
        self.path = path
        self._keys = {key_id: make_key(key_id, secret) for key_id, secret in keys.items()}

    @property
    def from_file(self) -> bool:
        """Whether the keys come from a keyring file (rotate-key can add one there)."""
        return self.path is not None

    @property
    def newest(self) -> AuditKey:
        """The key with the highest id."""
        return self._keys[max(self._keys)]

    def get(self, key_id: int) -> AuditKey | None:
        """The key with ``key_id``, re-reading a keyring file once when it is not known."""
        key = self._keys.get(key_id)
        if key is None and self.path is not None:
            self.reload()
            key = self._keys.get(key_id)
        return key

    def require(self, key_id: int, what: str) -> AuditKey:
        """The key with ``key_id``, or AuditKeyError saying ``what`` needs it."""
        key = self.get(key_id)
        if key is None:
            raise AuditKeyError(f"audit key #{key_id}, which {what}, is not in the keyring "
                                f"({self.source()}); every process needs the same keys")
        return key

    def reload(self) -> None:
        """Read the keyring file again."""
        if self.path is not None:
            try:
                self._keys = {k: make_key(k, s)
                              for k, s in read_audit_key_file(self.path, "PACSDESK_AUDIT_KEY_FILE").items()}
            except ConfigError as exc:
                raise AuditKeyError(str(exc)) from None

    def source(self) -> str:
        """Where the keys come from, for messages (never the keys)."""
        return f"the key file {self.path}" if self.path is not None else "PACSDESK_AUDIT_KEY"


def keyring_from_config(config: Mapping[str, Any]) -> Keyring:
    """The keyring the configuration names: the environment's keys, or the key file's."""
    given = config.get("PACSDESK_AUDIT_KEY")
    if given:
        return Keyring(parse_audit_keyring(given) if isinstance(given, str) else given)
    path = config.get("PACSDESK_AUDIT_KEY_FILE")
    if not path:
        raise AuditKeyError("no audit key: set PACSDESK_AUDIT_KEY or PACSDESK_AUDIT_KEY_FILE")
    try:
        return Keyring(read_audit_key_file(Path(path), "PACSDESK_AUDIT_KEY_FILE"), Path(path))
    except ConfigError as exc:
        raise AuditKeyError(str(exc)) from None


@dataclass
class _KeyringSlot:
    """Where an app keeps its keyring once loaded."""

    keyring: Keyring | None = None


def keyring(app: Flask | None = None) -> Keyring:
    """The app's keyring (loaded on first use)."""
    target = app or current_app_object()
    slot = app_registry(target, "audit_keyring", _KeyringSlot)
    if slot.keyring is None:
        slot.keyring = keyring_from_config(target.config)
    return slot.keyring


def new_key_line(key_id: int) -> str:
    """A fresh ``id:key`` entry (256 random bits as 64 hex digits)."""
    if not 1 <= key_id <= AUDIT_KEY_ID_MAX:
        raise AuditKeyError(f"key id {key_id} is out of range (1 to {AUDIT_KEY_ID_MAX})")
    return f"{key_id}:{secrets.token_hex(32)}"


def add_key_to_file(ring: Keyring) -> int:
    """Append a new newest key to the keyring file (atomically, mode 0600); its id."""
    if ring.path is None:
        raise AuditKeyError("the audit keys come from PACSDESK_AUDIT_KEY, which this command "
                            "cannot change")
    path = ring.path
    folder = os.open(path.parent, os.O_RDONLY)  # the folder's lock serialises rotations
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        ring.reload()
        key_id = ring.newest.key_id + 1
        text = path.read_text(encoding="utf-8")
        if text and not text.endswith("\n"):
            text += "\n"
        temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text + new_key_line(key_id) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
            os.fsync(folder)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise AuditKeyError(f"cannot write the audit key file {path}: {exc.strerror or exc}") from None
        ring.reload()
    finally:
        os.close(folder)
    return key_id
