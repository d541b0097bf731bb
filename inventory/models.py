"""Assets (workstations, DICOM nodes, servers...) and their change history."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.auditing import AuditSpec, Tracked, choice_words, user_words
from core.extensions import Model, db
from core.timeutil import UTCDateTime, utcnow
from core.types import EnumText


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


def _username(user_id: int | None) -> str | None:
    """A user's username at the time of a change."""
    from core.auth.models import User

    user = db.session.get(User, user_id) if user_id is not None else None
    return user.username if user is not None else None


# Every asset field's name for people (forms, errors, histories).
FIELD_LABELS = {
    "asset_tag": "Asset tag", "name": "Name", "kind": "Kind", "status": "Status",
    "location": "Location", "department": "Department", "assigned_user": "Assigned user",
    "assigned_user_id": "Assigned user", "manufacturer": "Manufacturer", "model": "Model",
    "serial_number": "Serial number", "hostname": "Hostname", "ip_address": "IP address",
    "os_version": "OS / firmware", "purchase_date": "Purchase date",
    "warranty_end": "Warranty end", "notes": "Notes", "holds_phi": "Holds patient data",
    "ae_title": "AE title", "port": "Port", "tls": "TLS", "dicom_role": "DICOM role",
    "dicom_type": "DICOM type", "modality": "Modality", "verify_enabled": "Verified automatically",
    "tls_client_cert": "TLS client certificate", "tls_client_key": "TLS client key",
    "tls_ca_file": "TLS CA file", "created": "Created", "sanitisation": "Sanitisation",
}


# What an asset's history shows: every field a person can set (inventory.asset_rules.AssetData).
ASSET_HISTORY = (
    "asset_tag", "name", "kind", "status", "location", "department", "manufacturer", "model",
    "serial_number", "hostname", "ip_address", "os_version", "purchase_date", "warranty_end", "notes",
    "holds_phi", "ae_title", "port", "tls", "dicom_role", "dicom_type", "modality", "verify_enabled")

# A TLS node's own files (server paths), set by admins only (inventory.services.set_tls_files).
TLS_FILE_FIELDS = ("tls_client_cert", "tls_client_key", "tls_ca_file")


def _field_label(name: str) -> str:
    """A field's name for people."""
    return FIELD_LABELS.get(name, name.replace("_", " ").capitalize())


def _labels(name: str) -> Mapping[Any, str]:
    """The labels of a coded field's values (read when a history is shown)."""
    from inventory import forms

    labels: dict[str, Mapping[Any, str]] = {
        "kind": forms.KIND_LABELS, "status": forms.STATUS_LABELS, "dicom_type": forms.DICOM_TYPE_LABELS,
        "dicom_role": forms.ROLE_LABELS}
    return labels.get(name, {})


def _words(name: str) -> Callable[[str], str] | None:
    """How a kept value of ``name`` reads, for the coded fields."""
    coded = {"kind", "status", "dicom_type", "dicom_role"}
    return choice_words(lambda: _labels(name)) if name in coded else None


class Asset(Model):
    """An inventoried device; never hard-deleted (retired or disposed instead)."""

    __tablename__ = "asset"
    __audit__ = AuditSpec(
        "asset", lambda a: a.asset_tag, history=lambda a: ("asset", a.id),
        tracked=(*(Tracked(name, label=_field_label(name), words=_words(name))
                   for name in (*ASSET_HISTORY, *TLS_FILE_FIELDS)),
                 Tracked("assigned_user_id", "assigned_user", _username, "Assigned user", user_words)),
        created=lambda a: ("created", a.asset_tag))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_tag: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[AssetKind] = mapped_column(EnumText(AssetKind, 20), default=AssetKind.WORKSTATION)
    status: Mapped[AssetStatus] = mapped_column(EnumText(AssetStatus, 20), default=AssetStatus.IN_SERVICE)
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
    dicom_role: Mapped[DicomRole | None] = mapped_column(EnumText(DicomRole, 10))
    dicom_type: Mapped[DicomType | None] = mapped_column(EnumText(DicomType, 30))
    modality: Mapped[str | None] = mapped_column(String(4))
    verify_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    tls_client_cert: Mapped[str | None] = mapped_column(String(500))
    tls_client_key: Mapped[str | None] = mapped_column(String(500))
    tls_ca_file: Mapped[str | None] = mapped_column(String(500))
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
        return self.kind == AssetKind.DICOM_NODE

    @property
    def host(self) -> str:
        """Address used to reach the node: IP address when known, else hostname."""
        return self.ip_address or self.hostname


class Sanitisation(Model):
    """How a disposed asset's media were sanitised (NIST SP 800-88; HIPAA 164.310(d)(2))."""

    __tablename__ = "asset_sanitisation"
    __audit__ = AuditSpec(
        "asset", lambda s: db.session.get_one(Asset, s.asset_id).asset_tag,
        history=lambda s: ("asset", s.asset_id),
        created=lambda s: ("sanitisation", f"{s.method} on {s.performed_on} by {s.performed_by}, witness "
                                          f"{s.witness}, certificate {s.certificate_ref or '-'}"))
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


class AssetImportMapping(Model):
    """The column and value mapping last used for CSV files with one header (offered next time)."""

    __tablename__ = "asset_import_mapping"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    header_key: Mapped[str] = mapped_column(String(64), unique=True)
    header: Mapped[list[str]] = mapped_column(JSON, default=list)
    mapping: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    saved_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
