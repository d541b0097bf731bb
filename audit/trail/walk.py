"""The walk over the trail's events: position, link, key and keyed hash of each (the hot path).

The database writes each event's payload (``sealing.event_payload``) as it reads the row, in
C, which is what keeps a full walk over 100,000 events a second: SQLite's ``json_array`` and
PostgreSQL's ``to_json`` quote text exactly as Python's JSON encoder does. That text is only
a shortcut: when its hash does not match, the event is read again and its payload written
by ``sealing.event_payload``, whose answer is the one that counts.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection

from audit.trail.keys import LEGACY_KEY_ID, AuditKey, Keyring
from audit.trail.models import GENESIS_HASH
from audit.trail.sealing import event_payload, iso_utc, seal

ROTATION_ACTION = "audit.key_rotated"
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores a timestamp in SQLite

# Each row the walk reads: seq, payload text (NULL when the database cannot write it), prev_hash,
# key_id, hash, action.
_WALK = {
    "sqlite": (
        "SELECT seq, CASE WHEN typeof(occurred_at) = 'text' AND length(occurred_at) = 26 "
        "AND substr(occurred_at, 11, 1) = ' ' AND typeof(user_id) IN ('integer', 'null') "
        "AND typeof(username) IN ('text', 'null') AND typeof(user_role) IN ('text', 'null') "
        "AND typeof(client_address) IN ('text', 'null') AND typeof(action) = 'text' "
        "AND typeof(object_type) IN ('text', 'null') AND typeof(object_id) IN ('text', 'null') "
        "AND typeof(outcome) = 'text' AND typeof(details) = 'text' AND typeof(prev_hash) = 'text' "
        "THEN rtrim(json_array(seq, substr(occurred_at, 1, 10) || 'T' || substr(occurred_at, 12) "
        "|| 'Z', user_id, username, user_role, client_address, action, object_type, object_id, "
        "outcome, details, prev_hash), ']') "  # ends with the quoted prev_hash: one ']' goes
        "|| CASE WHEN key_id = 0 THEN ']' ELSE ',' || key_id || ']' END END, "
        "prev_hash, key_id, hash, action FROM audit_event WHERE seq >= ? ORDER BY seq"),
    "postgresql": (
        "SELECT seq, '[' || seq || ',' || to_json(to_char(occurred_at AT TIME ZONE 'UTC', "
        """'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text || ','"""
        " || coalesce(user_id::text, 'null') || ',' || coalesce(to_json(username)::text, 'null')"
        " || ',' || coalesce(to_json(user_role)::text, 'null')"
        " || ',' || coalesce(to_json(client_address)::text, 'null') || ',' || to_json(action)::text"
        " || ',' || coalesce(to_json(object_type)::text, 'null')"
        " || ',' || coalesce(to_json(object_id)::text, 'null') || ',' || to_json(outcome)::text"
        " || ',' || to_json(details)::text || ',' || to_json(prev_hash)::text"
        " || CASE WHEN key_id = 0 THEN ']' ELSE ',' || key_id || ']' END, "
        "prev_hash, key_id, hash, action FROM audit_event WHERE seq >= %s ORDER BY seq"),
}
_COLUMNS = ("SELECT seq, occurred_at, user_id, username, user_role, client_address, action, "
            "object_type, object_id, outcome, details, prev_hash, key_id, hash FROM audit_event ")
_RAW = {"sqlite": _COLUMNS + "WHERE seq = ?", "postgresql": _COLUMNS + "WHERE seq = %s"}
_DETAILS = {"sqlite": "SELECT details FROM audit_event WHERE seq = ?",
            "postgresql": "SELECT details FROM audit_event WHERE seq = %s"}


@dataclass(frozen=True)
class Point:
    """A (position, hash) the trail must still hold, and who vouches for it."""

    seq: int
    hash: str
    source: str


class Broken(Exception):
    """A problem found: where, what, and how much of the walk verified before it."""

    def __init__(self, seq: int | None, problem: str, walked: int = 0, head_seq: int = 0,
                 head_hash: str = GENESIS_HASH) -> None:
        super().__init__(problem)
        self.seq = seq
        self.problem = problem
        self.walked = walked
        self.head_seq = head_seq
        self.head_hash = head_hash


def event_rows(conn: Connection, start: int, batch_size: int) -> Generator[list[tuple[Any, ...]], None, None]:
    """Batches of event rows from ``start`` in chain order, as the walk reads them
    (a server-side cursor on PostgreSQL)."""
    raw: Any = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        with raw.cursor(name="pacsdesk_chain_walk") as cursor:
            cursor.itersize = batch_size
            cursor.execute(_WALK["postgresql"], (start,))
            while batch := cursor.fetchmany(batch_size):
                yield batch
        return
    cursor = raw.execute(_WALK["sqlite"], (start,))
    try:
        while batch := cursor.fetchmany(batch_size):
            yield batch
    finally:
        cursor.close()


def _stored_payload(conn: Connection, seq: int) -> bytes | None:
    """The payload of event ``seq`` written by ``sealing.event_payload`` from its stored fields
    (None when a field is not of its type, as no event the application wrote is)."""
    postgres = conn.dialect.name == "postgresql"
    raw: Any = conn.connection.driver_connection
    row = raw.execute(_RAW[conn.dialect.name], (seq,)).fetchone()
    try:
        moment = row[1] if postgres else datetime.strptime(row[1], _SQLITE_TIME).replace(tzinfo=UTC)
        return event_payload(row[0], iso_utc(moment), *row[2:13])
    except (TypeError, ValueError):
        return None


def _details(conn: Connection, seq: int) -> str:
    """The stored details of event ``seq``."""
    raw: Any = conn.connection.driver_connection
    row = raw.execute(_DETAILS[conn.dialect.name], (seq,)).fetchone()
    return row[0] if row and isinstance(row[0], str) else ""


def walk(conn: Connection, ring: Keyring, start: int, prev: str | None, points: dict[int, Point],
         batch_size: int) -> tuple[int, int, str]:
    """Check every event from ``start``: position, link, key, keyed hash, vouched heads.

    ``prev`` is the hash the first event must link to (None: not checked). Returns (events
    walked, head position, head hash); raises Broken at the first problem.
    """
    count, expect = 0, start
    key: AuditKey | None = None
    key_id: int | None = None
    last_hash = prev or GENESIS_HASH

    def broken(seq: int, problem: str) -> Broken:
        return Broken(seq, problem, count, expect - 1 if count else 0, last_hash)

    with closing(event_rows(conn, start, batch_size)) as batches:
        for batch in batches:
            for seq, payload, link, row_key_id, digest, action in batch:
                if seq != expect:
                    raise broken(expect, f"event #{expect} is missing (next found is #{seq})")
                if prev is not None and link != prev:
                    raise broken(seq, f"event #{seq} does not link to the event before it")
                if row_key_id != key_id:
                    try:
                        key_id, key = _switch_key(ring, key_id, seq, row_key_id, action,
                                                  lambda s=seq: _details(conn, s))
                    except Broken as refused:
                        raise broken(seq, refused.problem) from None
                if payload is None or seal(key, payload.encode()) != digest:
                    stored = _stored_payload(conn, seq)
                    if stored is None or seal(key, stored) != digest:
                        raise broken(seq, f"event #{seq} was altered or forged: its "
                                          f"{'hash' if key is None else 'keyed hash'} does not match")
                point = points.get(seq)
                if point is not None and point.hash != digest:
                    raise broken(seq, f"event #{seq} differs from the one {point.source} "
                                      "recorded: the trail was rewritten")
                prev = last_hash = digest
                expect = seq + 1
                count += 1
    if key_id == LEGACY_KEY_ID:
        raise broken(start, f"events #{start} to #{expect - 1} are sealed with the unkeyed legacy "
                            "SHA-256 and no keyed key introduction follows them")
    return count, expect - 1, last_hash


def _switch_key(ring: Keyring, current: int | None, seq: int, new: int, action: str,
                details: Any) -> tuple[int, AuditKey | None]:
    """The key of event ``seq`` when it differs from the one in force; Broken when the change
    is not allowed (``details()`` reads the event's details, needed only for a rotation)."""
    if new == LEGACY_KEY_ID:
        if current is None:
            return new, None
        raise Broken(seq, f"event #{seq} is sealed with the unkeyed legacy SHA-256 after keyed "
                          "events: it was forged or altered")
    key = ring.get(new)
    if key is None:
        raise Broken(seq, f"event #{seq} is sealed with audit key #{new}, which is not in the keyring")
    if current is None:
        return new, key
    if new < current:
        raise Broken(seq, f"event #{seq} is sealed with audit key #{new}, retired when the trail "
                          f"moved to key #{current}")
    try:
        data = json.loads(details()) if action == ROTATION_ACTION else {}
    except ValueError:
        data = {}
    rotated = isinstance(data, dict) and data.get("key_id") == new and \
        data.get("previous_key_id") == current and \
        (current != LEGACY_KEY_ID or data.get("legacy_through_seq") == seq - 1)
    if not rotated:
        raise Broken(seq, f"event #{seq} moves from audit key #{current} to #{new} without a "
                          "recorded key rotation")
    return new, key
