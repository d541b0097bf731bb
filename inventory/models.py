"""Assets (workstations, DICOM nodes, servers...) and their change history."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.extensions import db
from core.timeutil import UTCDateTime, utcnow


class AssetKind(StrEnum):
    """What an asset is."""

    WORKSTATION = "workstation"
    DICOM_NODE = "dicom_node"
    SERVER = "server"
    NETWORK_DEVICE = "network_device"
    PRINTER = "printer"
    OTHER = "other"


class AssetStatus(StrEnum):
    """Where an asset is in its life."""

    IN_SERVICE = "in_service"
    IN_MAINTENANCE = "in_maintenance"
    OUT_OF_SERVICE = "out_of_service"
    RETIRED = "retired"
    DISPOSED = "disposed"


class DicomRole(StrEnum):
    """Whether a DICOM node provides (SCP), uses (SCU) or both."""

    SCP = "scp"
    SCU = "scu"
    BOTH = "both"


class DicomType(StrEnum):
    """What kind of DICOM node."""

    MODALITY = "modality"
    PACS_ARCHIVE = "pacs_archive"
    ROUTER = "router"
    VIEWING_WORKSTATION = "viewing_workstation"
    RIS_BROKER = "ris_broker"
    OTHER = "other"


MODALITY_CODES = ("CT", "MR", "CR", "DX", "US", "MG", "NM", "PT", "XA", "RF", "OT")


class Asset(db.Model):
    """An inventoried device; never hard-deleted (retired or disposed instead)."""

    __tablename__ = "asset"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_tag: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20), default=AssetKind.WORKSTATION.value)
    status: Mapped[str] = mapped_column(String(20), default=AssetStatus.IN_SERVICE.value)
    location: Mapped[str] = mapped_column(String(200), default="")
    department: Mapped[str] = mapped_column(String(120), default="")
    assigned_user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    manufacturer: Mapped[str] = mapped_column(String(120), default="")
    model: Mapped[str] = mapped_column(String(120), default="")
    serial_number: Mapped[str] = mapped_column(String(120), default="")
    hostname: Mapped[str] = mapped_column(String(253), default="")
    ip_address: Mapped[str] = mapped_column(String(45), default="")
    os_version: Mapped[str] = mapped_column(String(120), default="")
    purchase_date: Mapped[date | None] = mapped_column(Date)
    warranty_end: Mapped[date | None] = mapped_column(Date)
    notes: Mapped[str] = mapped_column(Text, default="")
    holds_phi: Mapped[bool] = mapped_column(Boolean, default=False)
    # DICOM node fields (kind == dicom_node)
    ae_title: Mapped[str | None] = mapped_column(String(16))
    port: Mapped[int | None] = mapped_column(Integer)
    tls: Mapped[bool] = mapped_column(Boolean, default=False)
    dicom_role: Mapped[str | None] = mapped_column(String(10))
    dicom_type: Mapped[str | None] = mapped_column(String(30))
    modality: Mapped[str | None] = mapped_column(String(4))
    verify_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    assigned_user = relationship("User", foreign_keys=[assigned_user_id])

    __table_args__ = (
        Index("ix_asset_kind_status", "kind", "status"),
        Index("ix_asset_endpoint", "hostname", "ip_address", "port", "ae_title"),
        Index("ix_asset_warranty_end", "warranty_end"),
    )

    @property
    def is_dicom_node(self) -> bool:
        """Whether this asset is a DICOM node."""
        return self.kind == AssetKind.DICOM_NODE.value

    @property
    def host(self) -> str:
        """Address used to reach the node: IP address when known, else hostname."""
        return self.ip_address or self.hostname


class AssetChange(db.Model):
    """One change to an asset: who, when, which field, old and new value."""

    __tablename__ = "asset_change"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("asset.id"), index=True)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    field: Mapped[str] = mapped_column(String(40))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)

    user = relationship("User")


class Sanitisation(db.Model):
    """How a disposed asset's media were sanitised (NIST SP 800-88; HIPAA 164.310(d)(2))."""

    __tablename__ = "asset_sanitisation"
    __table_args__ = (UniqueConstraint("asset_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("asset.id"))
    method: Mapped[str] = mapped_column(String(10))  # clear, purge, destroy
    performed_on: Mapped[date] = mapped_column(Date)
    performed_by: Mapped[str] = mapped_column(String(200))
    witness: Mapped[str] = mapped_column(String(200))
    certificate_ref: Mapped[str] = mapped_column(String(200), default="")
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
