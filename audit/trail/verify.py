"""Verification of the audit trail against its keys and its anchors outside the database.

What is checked, in this order (the first problem found is the answer):

1. The anchor log: every entry read is sealed with a known audit key and linked to the
   entry before it (all of it on a full walk, its end back to the last head otherwise), and
   it still holds the last anchor the trail's sealed ``audit.verify`` events say was written.
2. The trail is not behind an anchor: its head is at or after the last anchored head and
   the furthest head an earlier verification recorded (a deleted tail, even all of it).
3. A report's head hash (``against``) is still an event of the trail.
4. Where the walk starts. A missing prefix is accepted only when a retention purge explains
   it: a checkpoint sealed with an audit key, the keyed ``audit.purged`` event in the chain,
   and (full walk) its purge anchor. Full: at the first event. Incremental: at the furthest
   verified head, when the event count shows no gap below it and the stored events at the two
   furthest vouched heads still have their recorded hashes; otherwise it starts over from the
   first event, to name the first one changed.
5. Every event walked: no gap, linked to the event before, sealed with the key in force
   (keys change only at a keyed ``audit.key_rotated`` event; unkeyed legacy events only
   before the one that introduced keys), its keyed hash right, and each anchored head on the
   way still has its anchored hash.

An incremental walk does not re-read the content of events verified before: an event altered
in place below the last verified head is found by the next full walk (nightly).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Row

from audit.trail.anchors import AnchorLog, anchor_path, read_anchor_log
from audit.trail.keys import LEGACY_KEY_ID, Keyring, keyring
from audit.trail.models import GENESIS_HASH, AuditCheckpoint, AuditEvent, ChainVerificationRun
from audit.trail.sealing import checkpoint_payload, iso_utc
from audit.trail.walk import ROTATION_ACTION, Broken, Point, walk
from core.database import snapshot_connection
from core.extensions import db

FULL = "full"
INCREMENTAL = "incremental"
PURGE_ACTION = "audit.purged"
VERIFY_ACTION = "audit.verify"

_EVENTS = AuditEvent.__table__
_CHECKPOINTS = AuditCheckpoint.__table__


@dataclass(frozen=True)
class ChainVerification:
    """The result of a verification: intact or the first problem, and how far it looked."""

    ok: bool
    count: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None
    mode: str = FULL
    from_seq: int | None = None
    walked: int = 0
    against_seq: int | None = None

    def summary(self) -> str:
        """One line a person can read."""
        if self.ok:
            text = f"audit trail intact: {self.count} events, head #{self.head_seq} {self.head_hash}"
            if self.mode == INCREMENTAL and self.from_seq is not None:
                text += f" (incremental: {self.walked} events walked from #{self.from_seq})"
            return text
        where = "" if self.first_bad_seq is None else f" at event #{self.first_bad_seq}"
        return f"audit trail BROKEN{where}: {self.problem}"


def verify_chain(full: bool = True, against: str | None = None,
                 batch_size: int = 20000) -> ChainVerification:
    """Verify the trail (full walk, or incremental from the last verified head).

    ``against`` is a head hash printed in a report: the trail must still hold that event,
    and the walk covers the chain from it to the head. Outside a transaction the walk reads a
    snapshot on a connection of its own (never holding SQLite's write lock); inside one it
    sees the caller's uncommitted events too. The anchor log is read before the snapshot, so
    an anchor written meanwhile never names a head the snapshot cannot see.
    """
    ring = keyring()
    log = read_anchor_log(anchor_path(current_app.config), ring, full=full)
    if db.session().in_transaction():
        return _verify(db.session.connection(), ring, log, full, against, batch_size)
    with _snapshot() as conn:
        return _verify(conn, ring, log, full, against, batch_size)


@contextmanager
def _snapshot() -> Iterator[Connection]:
    """A read snapshot: SQLite's deferred transaction, PostgreSQL's repeatable read."""
    with snapshot_connection() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        yield conn


def _verify(conn: Connection, ring: Keyring, log: AnchorLog, full: bool, against: str | None,
            batch_size: int) -> ChainVerification:
    """Run the checks in order; the first problem ends the verification."""
    mode = FULL if full else INCREMENTAL
    try:
        if log.problem:
            raise Broken(None, f"the anchor log {log.path} does not verify: {log.problem}")
        first, last = conn.execute(select(func.min(_EVENTS.c.seq), func.max(_EVENTS.c.seq))).one()
        log = _check_log_complete(conn, ring, log)
        points = _vouched_heads(conn, log)
        if last is None:
            _check_empty(conn, points)
            return ChainVerification(True, 0, 0, GENESIS_HASH, mode=mode)
        _check_not_behind(last, points)
        against_seq = _find_against(conn, against)
        start, prev, count = _starting_point(conn, ring, log, first, last, points, full)
        if against_seq is not None and against_seq < start:
            start, prev = against_seq, None
        mode = FULL if prev is not None else INCREMENTAL  # an incremental one may have had to start over
        walked, head_seq, head_hash = walk(conn, ring, start, prev, points, batch_size)
        total = walked if mode == FULL or count is None else count
        return ChainVerification(True, total, head_seq, head_hash, mode=mode, from_seq=start,
                                 walked=walked, against_seq=against_seq)
    except Broken as broken:
        return ChainVerification(False, broken.walked, broken.head_seq, broken.head_hash,
                                 broken.seq, broken.problem, mode=mode, walked=broken.walked)


def _count(conn: Connection) -> int:
    """Events in the trail."""
    return conn.execute(select(func.count()).select_from(_EVENTS)).scalar_one()


def _vouched_heads(conn: Connection, log: AnchorLog) -> dict[int, Point]:
    """Heads the trail must still hold: anchored ones, and the furthest intact verification run."""
    points = {seq: Point(seq, a.hash, f"anchor #{a.n} written {a.at}")
              for seq, a in log.heads().items()}
    run = conn.execute(
        select(ChainVerificationRun.id, ChainVerificationRun.head_seq, ChainVerificationRun.head_hash,
               ChainVerificationRun.finished_at)
        .where(ChainVerificationRun.ok.is_(True), ChainVerificationRun.head_seq > 0)
        .order_by(ChainVerificationRun.head_seq.desc()).limit(1)).first()
    if run is not None and run.head_seq not in points:
        points[run.head_seq] = Point(run.head_seq, run.head_hash,
                                      f"verification run #{run.id} on {iso_utc(run.finished_at)}")
    return points


def _check_empty(conn: Connection, points: dict[int, Point]) -> None:
    """An empty trail is intact only if nothing shows it ever held events."""
    if points:
        furthest = points[max(points)]
        raise Broken(1, f"the trail is empty, but {furthest.source} recorded its head at "
                         f"#{furthest.seq}: every event was deleted")
    purged = conn.execute(select(func.max(AuditCheckpoint.purged_through_seq))).scalar()
    if purged is not None:
        raise Broken(purged + 1, f"the trail is empty, but a retention purge through #{purged} "
                                  "shows it held events: the events after it were deleted")


def _check_not_behind(last: int, points: dict[int, Point]) -> None:
    """The head must not be behind a head that was anchored or verified."""
    furthest = points.get(max(points)) if points else None
    if furthest is not None and furthest.seq > last:
        raise Broken(last + 1, f"events #{last + 1} to #{furthest.seq} are missing: the trail ends "
                                f"at #{last}, but {furthest.source} recorded its head at "
                                f"#{furthest.seq}")


def _find_against(conn: Connection, against: str | None) -> int | None:
    """Position of the event whose hash a report printed."""
    if against is None:
        return None
    seq = conn.execute(select(_EVENTS.c.seq).where(_EVENTS.c.hash == against).limit(1)).scalar()
    if seq is None:
        raise Broken(None, f"no event in the trail has the hash {against}: the trail no longer "
                            "holds the head that was printed (removed or rewritten, or purged "
                            "under retention)")
    return int(seq)


def _starting_point(conn: Connection, ring: Keyring, log: AnchorLog, first: int, last: int,
                    points: dict[int, Point], full: bool) -> tuple[int, str | None, int | None]:
    """Where the walk starts, the hash its first event must link to (None: not checked) and,
    for an incremental walk, how many events the trail holds.

    Incremental: at the furthest vouched head, once the sealed purge checkpoint explains a
    missing prefix, the count shows no gap below, and the two furthest vouched heads still
    hold their recorded hashes. Otherwise the walk starts over from the first event, so that
    the result names the first event that was changed.
    """
    kept = sorted((p for p in points.values() if p.seq >= first), key=lambda p: p.seq)
    if full or not kept or len(kept) < len(points):
        return first, _start_of_chain(conn, ring, log, first), None
    _start_of_chain(conn, ring, log, first, anchored=False)
    count = _count(conn)
    if count != last - first + 1:
        return first, _start_of_chain(conn, ring, log, first), None
    for point in kept[-2:]:
        stored = conn.execute(select(_EVENTS.c.hash).where(_EVENTS.c.seq == point.seq)).scalar()
        if stored != point.hash:
            return first, _start_of_chain(conn, ring, log, first), None
    return kept[-1].seq, None, count


def _check_log_complete(conn: Connection, ring: Keyring, log: AnchorLog) -> AnchorLog:
    """The anchor log must still hold the last anchor the trail says was written.

    A sealed ``audit.verify`` event names each anchor written (number and keyed hash): a log
    that lacks it was replaced, cut back or is another folder than the one written to.
    """
    for details in _details_of(conn, VERIFY_ACTION, newest=5):
        number, mac = details.get("anchor_n"), details.get("anchor_mac")
        if not isinstance(number, int) or not isinstance(mac, str):
            continue
        if _log_holds(log, number, mac):
            return log
        log = read_anchor_log(log.path, ring)  # written after the log was first read?
        if _log_holds(log, number, mac):
            return log
        newest = log.entries[-1].n if log.entries else 0
        raise Broken(None, f"the anchor log {log.path} lacks anchor #{number}, which the trail "
                            f"records as written (the log ends at #{newest}): it was replaced or cut "
                            "back, or PACSDESK_AUDIT_ANCHOR_DIR names another folder")
    return log


def _log_holds(log: AnchorLog, number: int, mac: str) -> bool:
    """Whether the log read holds anchor ``number`` with keyed hash ``mac`` (or starts after it)."""
    if log.problem or not log.entries or log.entries[-1].n < number:
        return False
    if log.entries[0].n > number:  # only the log's end was read; it goes past that anchor
        return True
    return any(a.n == number and a.mac == mac for a in log.entries)


def _start_of_chain(conn: Connection, ring: Keyring, log: AnchorLog, first: int,
                    anchored: bool = True) -> str:
    """The hash the first remaining event links to: genesis, or a purge's sealed boundary.

    ``anchored``: the purge must also be in the anchor log (a full walk reads all of it).
    """
    if first == 1:
        return GENESIS_HASH
    boundary = first - 1
    cp = conn.execute(select(_CHECKPOINTS).where(_CHECKPOINTS.c.purged_through_seq == boundary)).first()
    if cp is None:
        raise Broken(first, f"events before #{first} are missing and no retention purge explains it")
    if cp.key_id == LEGACY_KEY_ID:
        _check_legacy_checkpoint(conn, cp, first)
    else:
        _check_keyed_checkpoint(cp, ring, log, first, anchored)
    if _purge_records(conn).get(boundary) != cp.last_purged_hash:
        raise Broken(first, f"the retention checkpoint before #{first} does not match the purge "
                             "recorded in the trail")
    return cp.last_purged_hash


def _check_keyed_checkpoint(cp: Row[Any], ring: Keyring, log: AnchorLog, first: int,
                            anchored: bool) -> None:
    """A purge is accepted when its checkpoint's keyed hash is right and (``anchored``) the
    anchor log has it."""
    key = ring.get(cp.key_id)
    if key is None:
        raise Broken(first, f"the retention checkpoint before #{first} is sealed with audit key "
                             f"#{cp.key_id}, which is not in the keyring")
    expected = key.mac(checkpoint_payload(cp.from_seq, cp.purged_through_seq, cp.last_purged_hash,
                                          cp.purged_count, cp.run_id, cp.key_id))
    if cp.mac != expected:
        raise Broken(first, f"the retention checkpoint before #{first} was forged or altered: its "
                             "keyed hash does not match")
    if not anchored:
        return
    anchor = log.purge_through(cp.purged_through_seq, cp.last_purged_hash)
    if anchor is None:  # the purge may have been anchored after the log was read
        anchor = read_anchor_log(log.path, ring).purge_through(cp.purged_through_seq,
                                                                cp.last_purged_hash)
    if anchor is None:
        raise Broken(first, f"events before #{first} were purged, but the anchor log has no entry "
                             f"for a purge through #{cp.purged_through_seq}")


def _check_legacy_checkpoint(conn: Connection, cp: Row[Any], first: int) -> None:
    """A checkpoint from before keys existed must be the one the keyed key introduction named."""
    for details in _details_of(conn, ROTATION_ACTION):
        if details.get("previous_key_id") == LEGACY_KEY_ID and \
                details.get("purged_through_seq") == cp.purged_through_seq and \
                details.get("purged_hash") == cp.last_purged_hash:
            return
    raise Broken(first, f"the retention checkpoint before #{first} has no keyed hash and is not "
                         "the one recorded when keys were introduced: it was forged")


def _details_of(conn: Connection, action: str, newest: int | None = None) -> Iterator[dict[str, Any]]:
    """The parsed details of the events of ``action``, newest first (an index finds them)."""
    query = (select(_EVENTS.c.details).where(_EVENTS.c.action == action)
             .order_by(_EVENTS.c.occurred_at.desc(), _EVENTS.c.seq.desc()))
    for (text,) in conn.execute(query.limit(newest)):
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if isinstance(data, dict):
            yield data


def _purge_records(conn: Connection) -> dict[int, str]:
    """Purge boundaries vouched for by ``audit.purged`` events still in the chain."""
    return {int(d["through_seq"]): d.get("last_hash", "") for d in _details_of(conn, PURGE_ACTION)
            if isinstance(d.get("through_seq"), int)}
