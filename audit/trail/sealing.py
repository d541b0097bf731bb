"""How an audit event is sealed: its canonical payload, and the keyed hash over it (pure, no Flask).

The payload is the compact JSON array of the event's fields and the previous event's hash
(``json.dumps`` with separators ``(",", ":")`` and ``ensure_ascii=False``), then the id of
the key that seals it. The hash is HMAC-SHA256 of that payload with that key. Events written
before keys existed (key id 0) were sealed with plain SHA-256 over the array without the key
id; they keep verifying that way, and nothing writes key id 0 any more.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from audit.trail.keys import LEGACY_KEY_ID, AuditKey

_enc = json.encoder.encode_basestring  # the JSON encoder's own string quoting (C)


def iso_utc(moment: datetime) -> str:
    """Canonical UTC timestamp with microseconds (``%Y-%m-%dT%H:%M:%S.%fZ``)."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")[:26] + "Z"


def canonical_details(details: Mapping[str, Any] | None) -> str:
    """Serialise details deterministically; this exact text is stored and sealed."""
    return json.dumps(details or {}, sort_keys=True, separators=(",", ":"), default=str,
                      ensure_ascii=False)


def event_payload(seq: int, occurred_at: str, user_id: int | None, username: str | None,
                  user_role: str | None, client_address: str | None, action: str,
                  object_type: str | None, object_id: str | None, outcome: str, details: str,
                  prev_hash: str, key_id: int) -> bytes:
    """The bytes an event's hash covers; ``occurred_at`` is its ``iso_utc`` text.

    Written out field by field (the same text ``json.dumps`` gives): verification calls this
    for every event of the trail.
    """
    return (
        f'[{seq},{_enc(occurred_at)},{"null" if user_id is None else user_id},'
        f'{"null" if username is None else _enc(username)},'
        f'{"null" if user_role is None else _enc(user_role)},'
        f'{"null" if client_address is None else _enc(client_address)},{_enc(action)},'
        f'{"null" if object_type is None else _enc(object_type)},'
        f'{"null" if object_id is None else _enc(object_id)},{_enc(outcome)},{_enc(details)},'
        f'{_enc(prev_hash)}{"]" if key_id == LEGACY_KEY_ID else f",{key_id}]"}'
    ).encode()


def seal(key: AuditKey | None, payload: bytes) -> str:
    """The hash of a payload: HMAC-SHA256 with ``key``, or plain SHA-256 for a legacy event."""
    if key is None:
        return hashlib.sha256(payload).hexdigest()
    return key.mac(payload)


def event_hash(key: AuditKey | None, seq: int, occurred_at: datetime, user_id: int | None,
               username: str | None, user_role: str | None, client_address: str | None,
               action: str, object_type: str | None, object_id: str | None, outcome: str,
               details: str, prev_hash: str) -> str:
    """An event's hash as ``audit.record`` computes it (``key`` None: the legacy SHA-256)."""
    key_id = LEGACY_KEY_ID if key is None else key.key_id
    return seal(key, event_payload(seq, iso_utc(occurred_at), user_id, username, user_role,
                                   client_address, action, object_type, object_id, outcome,
                                   details, prev_hash, key_id))


def checkpoint_payload(from_seq: int | None, through_seq: int, last_hash: str, count: int,
                       run_id: int | None, key_id: int) -> bytes:
    """The bytes a purge checkpoint's keyed hash covers: the range, its boundary, the run."""
    return json.dumps(["audit-purge", from_seq, through_seq, last_hash, count, run_id, key_id],
                      separators=(",", ":")).encode("ascii")
