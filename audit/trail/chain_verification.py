"""Chain verification runs: each walk of the hash chain is kept, and a broken one raises a banner."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import url_for
from markupsafe import Markup, escape
from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from audit.trail.chain import record, verify_chain
from core.auth.models import Role
from core.auth.permissions import Permission, has_permission
from core.extensions import db
from core.mail.compose import Notice
from core.navigation import Banner
from core.notifications import notify, users_with_roles
from core.timeutil import UTCDateTime, format_local, utcnow

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "audit.verify": "Audit trail integrity verified",
    "audit.verify_acknowledged": "Broken audit chain acknowledged",
}


class ChainVerificationRun(db.Model):
    """One verification of the audit trail: when, how many events, intact or where broken."""

    __tablename__ = "audit_chain_verification"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    source: Mapped[str] = mapped_column(String(20))            # web, cli or scheduler
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    count: Mapped[int] = mapped_column(BigInteger)
    ok: Mapped[bool] = mapped_column(Boolean)
    head_seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))
    first_bad_seq: Mapped[int | None] = mapped_column(BigInteger)
    problem: Mapped[str | None] = mapped_column(Text)
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AcknowledgeError(ValueError):
    """An acknowledgement was refused."""


def run_verification(source: str, user: Any = None) -> ChainVerificationRun:
    """Walk the chain, keep the result and audit it (flushes; the caller commits)."""
    started = utcnow()
    result = verify_chain()
    run = ChainVerificationRun(
        started_at=started, finished_at=utcnow(), source=source,
        started_by_id=getattr(user, "id", None), count=result.count, ok=result.ok,
        head_seq=result.head_seq, head_hash=result.head_hash,
        first_bad_seq=result.first_bad_seq, problem=result.problem,
    )
    db.session.add(run)
    db.session.flush()
    extra = {} if user is None else {"user": user}
    if not result.ok:
        notify("audit.chain_broken", users_with_roles(Role.ADMIN, Role.COMPLIANCE), Notice(
            subject="Audit trail integrity check failed",
            paragraphs=(f"The verification of the audit trail's hash chain ({source}) found a problem at "
                        f"event {result.first_bad_seq}: the trail may have been altered.",
                        "Open the audit trail, read the verification result and acknowledge it once "
                        "it is investigated."),
            link_path="/audit", link_label="Open the audit trail"))
    record("audit.verify", outcome="success" if result.ok else "failure",
           object_type="audit_event",
           details={"ok": result.ok, "count": result.count, "head_seq": result.head_seq,
                    "head_hash": result.head_hash, "first_bad_seq": result.first_bad_seq,
                    "problem": result.problem, "source": source, "run_id": run.id},
           **extra)
    return run


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
    text = Markup(
        "<strong>Audit trail integrity check failed</strong> on {when} at event #{seq}: {problem} "
        '<a class="alert-link" href="{url}#verification">Review and acknowledge</a>'
    ).format(url=url_for("audit.search_events"), when=escape(format_local(run.started_at)),
             seq=run.first_bad_seq, problem=escape(run.problem or ""))
    return [Banner("danger", text)]
