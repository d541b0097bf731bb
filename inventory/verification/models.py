"""Stored C-ECHO checks and each DICOM node's current state."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Float, ForeignKey, Index, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.extensions import Model
from core.timeutil import UTCDateTime, utcnow
from core.types import EnumText
from inventory.verification.dicom import Outcome


class CheckTrigger(StrEnum):
    """What started a check."""

    SCHEDULE = "schedule"
    MANUAL = "manual"
    SAVE = "save"


class NodeStateName(StrEnum):
    """A DICOM node's health as PACS Desk sees it."""

    UP = "up"
    DOWN = "down"
    DEGRADED = "degraded"
    UNKNOWN = "unknown"

    @property
    def label(self) -> str:
        """Text for people."""
        return self.value.capitalize()


class NodeCheck(Model):
    """One C-ECHO check of one node: when, how it ended, how long it took."""

    __tablename__ = "node_check"
    __table_args__ = (Index("ix_node_check_asset_checked", "asset_id", "checked_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("asset.id"))
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    outcome: Mapped[Outcome] = mapped_column(EnumText(Outcome, 30))
    detail: Mapped[str] = mapped_column(Text, default="")
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    trigger: Mapped[CheckTrigger] = mapped_column(EnumText(CheckTrigger, 10), default=CheckTrigger.SCHEDULE)

    @property
    def ok(self) -> bool:
        """Whether the node answered the C-ECHO with success."""
        return self.outcome == "ok"


class NodeState(Model):
    """The current state of one DICOM node (one row per checked node)."""

    __tablename__ = "node_state"

    asset_id: Mapped[int] = mapped_column(ForeignKey("asset.id"), primary_key=True)
    state: Mapped[NodeStateName] = mapped_column(EnumText(NodeStateName, 10), default=NodeStateName.UNKNOWN,
                                                 index=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_ok_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_latency_ms: Mapped[float | None] = mapped_column(Float)  # sweeps start slow nodes first
    down_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # No foreign key: retention may purge old tickets; the ticket's dedup key is the real link.
    open_ticket_id: Mapped[int | None] = mapped_column(Integer)
