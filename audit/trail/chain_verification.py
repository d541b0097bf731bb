"""Chain verification runs: each verification is kept and anchored; a broken one raises a banner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from flask import current_app, url_for
from markupsafe import Markup, escape
from sqlalchemy import select

from audit.atna.verify import verify_batches
from audit.trail.anchors import (
    Anchor,
    AnchorError,
    anchor_path,
    append_anchor,
    read_anchor_log,
    send_syslog,
)
from audit.trail.chain import record
from audit.trail.keys import keyring
from audit.trail.models import AuditEvent, ChainVerificationRun
from audit.trail.verify import INCREMENTAL, ChainVerification, verify_chain
from core.auth.models import Role, User
from core.auth.permissions import Permission, has_permission
from core.extensions import db
from core.mail.compose import Notice
from core.navigation import Banner
from core.notifications import notify, users_with_roles
from core.timeutil import format_local, utcnow

__all__ = ["AcknowledgeError", "ChainVerificationRun", "acknowledge_failure", "anchor_head",
           "broken_chain_banner", "head_is_anchored", "keep_verification", "last_verification",
           "run_verification", "unacknowledged_failure"]

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "audit.verify": "Audit trail integrity verified",
    "audit.verify_acknowledged": "Broken audit chain acknowledged",
}


UNCOMMITTED = "not anchored: verified inside a transaction that had not committed yet"


class AcknowledgeError(ValueError):
    """An acknowledgement was refused."""


def run_verification(source: str, user_id: int | None = None, *, full: bool = False,
                     against: str | None = None,
                     announce: Callable[[ChainVerification], None] | None = None
                     ) -> ChainVerificationRun:
    """Verify the trail, anchor an intact head outside the database, keep the run and audit it.

    ``full`` walks every event; otherwise the walk continues from the last verified head.
    ``announce`` gets the result before anything is written (the command line prints it, so
    the trail's state is shown even when the disk is full). Called outside a transaction, as
    jobs and commands do, nothing is held open in the database while the trail is walked and
    the anchor written and sent. Called inside one, the walk sees the transaction's own events,
    which may still roll back: then nothing is anchored. Flushes; the caller commits.
    """
    started = utcnow()
    committed = not db.session().in_transaction()
    result = verify_chain(full=full, against=against)
    # The PACS access log's batches: those sealed after the head verified last time, or all on a full walk.
    since = result.from_seq if result.mode == INCREMENTAL else None
    if result.ok and (problems := verify_batches(since)):
        result = replace(result, ok=False, first_bad_seq=problems[0].audit_seq or result.head_seq,
                         problem="; ".join(map(str, problems[:3])))
    if announce is not None:
        announce(result)
    anchor, note = anchor_head(result) if committed else (None, UNCOMMITTED)
    return keep_verification(result, source, user_id, started, anchor, note)


def anchor_head(result: ChainVerification) -> tuple[Anchor | None, str | None]:
    """Write an intact, non-empty head to the anchor log and the syslog collector.

    Returns the anchor written (None if none was) and what went wrong, if anything.
    """
    if not result.ok or result.head_seq == 0:
        return None, None
    config = current_app.config
    try:
        anchor = append_anchor(anchor_path(config), keyring(), "head", result.head_seq,
                               result.head_hash, result.count, mode=result.mode,
                               from_seq=result.from_seq)
    except AnchorError as exc:
        return None, str(exc)
    target = config.get("PACSDESK_AUDIT_SYSLOG")
    if target:
        try:
            send_syslog(target, anchor)
        except OSError as exc:
            return anchor, (f"anchor #{anchor.n} is in the anchor log but could not be sent to "
                            f"the syslog collector {target[0]}://{target[1]}:{target[2]}: "
                            f"{exc.strerror or exc}")
    return anchor, None


def keep_verification(result: ChainVerification, source: str, user_id: int | None,
                      started: datetime, anchor: Anchor | None = None,
                      anchor_note: str | None = None) -> ChainVerificationRun:
    """Store a verification's result and its ``audit.verify`` event, naming the anchor (flushes)."""
    anchor_n = anchor.n if anchor is not None else None
    run = ChainVerificationRun(
        started_at=started, finished_at=utcnow(), source=source, started_by_id=user_id,
        count=result.count, ok=result.ok, head_seq=result.head_seq, head_hash=result.head_hash,
        first_bad_seq=result.first_bad_seq, problem=result.problem, mode=result.mode,
        from_seq=result.from_seq, walked=result.walked, anchor_n=anchor_n, anchor_note=anchor_note,
    )
    db.session.add(run)
    db.session.flush()
    user = db.session.get(User, user_id) if user_id is not None else None
    extra = {} if user is None else {"user": user}
    if not result.ok:
        notify("audit.chain_broken", users_with_roles(Role.ADMIN, Role.COMPLIANCE), Notice(
            subject="Audit trail integrity check failed",
            paragraphs=(f"The verification of the audit trail's hash chain ({source}) found a problem"
                        + (f" at event {result.first_bad_seq}" if result.first_bad_seq else "")
                        + ": the trail may have been altered.",
                        "Open the audit trail, read the verification result and acknowledge it once "
                        "it is investigated."),
            link_path="/audit", link_label="Open the audit trail"))
    record("audit.verify", outcome="success" if result.ok else "failure",
           object_type="audit_event",
           details={"ok": result.ok, "count": result.count, "head_seq": result.head_seq,
                    "head_hash": result.head_hash, "first_bad_seq": result.first_bad_seq,
                    "problem": result.problem, "source": source, "run_id": run.id,
                    "mode": result.mode, "from_seq": result.from_seq, "walked": result.walked,
                    "anchor_n": anchor_n, "anchor_mac": anchor.mac if anchor else None,
                    "anchor_note": anchor_note, "against_seq": result.against_seq},
           **extra)
    return run


def head_is_anchored() -> bool:
    """Whether nothing but the last verification's own event was written since the last anchor."""
    log = read_anchor_log(anchor_path(current_app.config), keyring(), full=False)
    anchor = log.latest_head()
    if log.problem or anchor is None:
        return False
    rows = db.session.execute(select(AuditEvent.seq, AuditEvent.hash, AuditEvent.action)
                              .where(AuditEvent.seq >= anchor.seq).order_by(AuditEvent.seq)
                              .limit(3)).all()
    return (bool(rows) and (rows[0].seq, rows[0].hash) == (anchor.seq, anchor.hash)
            and (len(rows) == 1 or (len(rows) == 2 and rows[1].action == "audit.verify")))


def last_verification() -> ChainVerificationRun | None:
    """The most recent verification run, if any."""
    return db.session.execute(
        select(ChainVerificationRun).order_by(ChainVerificationRun.id.desc()).limit(1)
    ).scalar_one_or_none()


def unacknowledged_failure() -> ChainVerificationRun | None:
    """The latest run when it found the chain broken and nobody has acknowledged it."""
    last = last_verification()
    if last is None or last.ok or last.acknowledged_at is not None:
        return None
    return last


def acknowledge_failure(run_id: int, user: Any) -> ChainVerificationRun:
    """Record that a person has seen a broken-chain finding (flushes)."""
    run = db.session.get(ChainVerificationRun, run_id)
    if run is None or run.ok:
        raise AcknowledgeError("There is no failed verification with that number.")
    if run.acknowledged_at is not None:
        raise AcknowledgeError(f"Verification #{run.id} was already acknowledged.")
    run.acknowledged_at = utcnow()
    run.acknowledged_by_id = user.id
    db.session.flush()
    record("audit.verify_acknowledged", object_type="audit_verification", object_id=run.id,
           details={"first_bad_seq": run.first_bad_seq, "problem": run.problem})
    return run


def broken_chain_banner(user: Any) -> list[Banner]:
    """A red strip for admins and compliance officers while a broken chain is unacknowledged."""
    if not has_permission(user, Permission.AUDIT_READ):
        return []
    run = unacknowledged_failure()
    if run is None:
        return []
    where = "" if run.first_bad_seq is None else f" at event #{run.first_bad_seq}"
    text = Markup(
        "<strong>Audit trail integrity check failed</strong> on {when}{where}: {problem} "
        '<a class="alert-link" href="{url}#verification">Review and acknowledge</a>'
    ).format(url=url_for("audit.search_events"), when=escape(format_local(run.started_at)),
             where=where, problem=escape(run.problem or ""))
    return [Banner("danger", text)]
