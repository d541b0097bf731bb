"""Asset operations: validate, create, update, dispose, list; every change leaves history."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Select, func, or_, select

from audit import record, register_actions
from core.auth.models import User
from core.config import ae_title_problem
from core.extensions import db
from core.timeutil import local_tz, utcnow
from inventory.models import (
    MODALITY_CODES,
    Asset,
    AssetChange,
    AssetKind,
    AssetStatus,
    DicomRole,
    DicomType,
    Sanitisation,
)
from inventory.verification import request_check
from inventory.verification_models import NodeState

register_actions(
    {
        "asset.create": "Asset created",
        "asset.update": "Asset changed",
        "asset.dispose": "Asset disposed",
        "asset.import": "Assets imported from CSV",
        "asset.export": "Asset list exported to CSV",
    }
)

TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
# Words the asset URLs use for pages of their own (/assets/new, /assets/warranty...).
RESERVED_TAGS = frozenset({"new", "warranty", "import", "export.csv"})
HOST_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
CHUNK = 500
INACTIVE_STATUSES = (AssetStatus.RETIRED.value, AssetStatus.DISPOSED.value)
ADDRESS_FIELDS = frozenset({"kind", "hostname", "ip_address", "port", "ae_title", "tls"})
SANITISATION_METHODS = {
    "clear": "logical overwrite of all user-addressable storage",
    "purge": "cryptographic erase, block erase or degaussing",
    "destroy": "shredding, disintegration, pulverisation or incineration",
}
FIELD_LABELS = {
    "asset_tag": "Asset tag", "name": "Name", "kind": "Kind", "status": "Status",
    "location": "Location", "department": "Department", "assigned_user": "Assigned user",
    "assigned_user_id": "Assigned user", "manufacturer": "Manufacturer", "model": "Model",
    "serial_number": "Serial number", "hostname": "Hostname", "ip_address": "IP address",
    "os_version": "OS / firmware", "purchase_date": "Purchase date",
    "warranty_end": "Warranty end", "notes": "Notes", "holds_phi": "Holds patient data",
    "ae_title": "AE title", "port": "Port", "tls": "TLS", "dicom_role": "DICOM role",
    "dicom_type": "DICOM type", "modality": "Modality", "verify_enabled": "Verified automatically",
    "created": "Created", "sanitisation": "Sanitisation",
}


class AssetError(Exception):
    """Bad asset input: one or more (field, message) problems."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{FIELD_LABELS.get(f, f)}: {m}" for f, m in problems))
        self.problems = problems


@dataclass(frozen=True)
class AssetData:
    """Everything a person can set on an asset, as plain values."""

    asset_tag: str
    name: str
    kind: str = AssetKind.WORKSTATION.value
    status: str = AssetStatus.IN_SERVICE.value
    location: str = ""
    department: str = ""
    assigned_user_id: int | None = None
    manufacturer: str = ""
    model: str = ""
    serial_number: str = ""
    hostname: str = ""
    ip_address: str = ""
    os_version: str = ""
    purchase_date: date | None = None
    warranty_end: date | None = None
    notes: str = ""
    holds_phi: bool = False
    ae_title: str | None = None
    port: int | None = None
    tls: bool = False
    dicom_role: str | None = None
    dicom_type: str | None = None
    modality: str | None = None
    verify_enabled: bool = True


DATA_FIELDS = tuple(f.name for f in fields(AssetData))
TEXT_LIMITS = {"name": 200, "location": 200, "department": 120, "manufacturer": 120,
               "model": 120, "serial_number": 120, "os_version": 120, "notes": 10_000}


@dataclass(frozen=True)
class SanitisationData:
    """A NIST SP 800-88 sanitisation record as entered."""

    method: str
    performed_on: date | None
    performed_by: str
    witness: str
    certificate_ref: str = ""


def local_today() -> date:
    """Today's date in the configured time zone."""
    return utcnow().astimezone(local_tz()).date()


def data_of(asset: Asset) -> AssetData:
    """The editable values of an existing asset."""
    return AssetData(**{name: getattr(asset, name) for name in DATA_FIELDS})


def hostname_problem(value: str) -> str | None:
    """Why ``value`` is neither an RFC 1123 host name nor an IP address, or None."""
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    if len(value) > 253:
        return "a host name has at most 253 characters"
    labels = value.split(".")
    if any(not HOST_LABEL.match(label) for label in labels):
        return ("not a valid host name: use letters, digits and hyphens in dot-separated "
                "labels of 1-63 characters (no spaces or underscores), or an IP address")
    if all(label.isdigit() for label in labels):
        return "not a valid IP address"
    return None


KIND_VALUES = frozenset(k.value for k in AssetKind)
STATUS_VALUES = frozenset(s.value for s in AssetStatus)
ROLE_VALUES = frozenset(r.value for r in DicomRole)
DICOM_TYPE_VALUES = frozenset(t.value for t in DicomType)


def normalise(data: AssetData, today: date | None = None
              ) -> tuple[AssetData, list[tuple[str, str]]]:
    """Check an asset's values on their own (no database); return them cleaned and the problems."""
    # Surrounding spaces go, except on the AE title, whose own check comes first.
    v = {n: (x.strip() if isinstance(x, str) and n != "ae_title" else x)
         for n, x in vars(data).items()}
    problems: list[tuple[str, str]] = []
    tag = v["asset_tag"]
    if not tag:
        problems.append(("asset_tag", "an asset tag is required"))
    elif not TAG_PATTERN.match(tag):
        problems.append(("asset_tag", "use 1-40 letters, digits, '-', '_' or '.', starting "
                                      "with a letter or digit"))
    elif tag.lower() in RESERVED_TAGS:
        problems.append(("asset_tag", f"'{tag}' is reserved; choose another tag"))
    if not v["name"]:
        problems.append(("name", "a name is required"))
    for name, limit in TEXT_LIMITS.items():
        if len(v[name]) > limit:
            problems.append((name, f"at most {limit} characters"))
    if v["kind"] not in KIND_VALUES:
        problems.append(("kind", f"unknown kind '{v['kind']}' (use one of "
                                 f"{', '.join(k.value for k in AssetKind)})"))
    if v["status"] not in STATUS_VALUES:
        problems.append(("status", f"unknown status '{v['status']}' (use one of "
                                   f"{', '.join(s.value for s in AssetStatus)})"))
    if v["hostname"] and (problem := hostname_problem(v["hostname"])):
        problems.append(("hostname", problem))
    if v["ip_address"]:
        try:
            v["ip_address"] = str(ipaddress.ip_address(v["ip_address"]))
        except ValueError:
            problems.append(("ip_address", f"'{v['ip_address']}' is not an IPv4 or IPv6 "
                                           f"address"))
    today = today or local_today()
    if v["purchase_date"] and v["purchase_date"] > today:
        problems.append(("purchase_date", "the purchase date cannot be in the future"))
    if v["purchase_date"] and v["warranty_end"] and v["warranty_end"] < v["purchase_date"]:
        problems.append(("warranty_end", "the warranty cannot end before the purchase date"))
    if v["kind"] == AssetKind.DICOM_NODE.value:
        _normalise_node(v, problems)
    else:
        v.update(ae_title=None, port=None, tls=False, dicom_role=None, dicom_type=None,
                 modality=None)
    return AssetData(**v), problems


def _normalise_node(v: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    """Check and clean the DICOM fields of a node, in place."""
    if not v["hostname"] and not v["ip_address"]:
        problems.append(("hostname", "a DICOM node needs a hostname or an IP address"))
    if v["ae_title"] is None or v["ae_title"] == "":
        problems.append(("ae_title", "a DICOM node needs an AE title"))
    elif problem := ae_title_problem(v["ae_title"]):
        problems.append(("ae_title", problem))
    else:
        v["ae_title"] = v["ae_title"].strip()
    if v["port"] is None:
        problems.append(("port", "a DICOM node needs a port"))
    elif not 1 <= v["port"] <= 65535:
        problems.append(("port", f"the port must be between 1 and 65535 (not {v['port']})"))
    v["dicom_role"] = v["dicom_role"] or DicomRole.BOTH.value
    if v["dicom_role"] not in ROLE_VALUES:
        problems.append(("dicom_role", f"unknown DICOM role '{v['dicom_role']}' (use scp, "
                                       f"scu or both)"))
    dicom_type = v["dicom_type"] or DicomType.OTHER.value
    modality = (v["modality"] or "").upper() or None
    if dicom_type.upper() in MODALITY_CODES:
        dicom_type, modality = DicomType.MODALITY.value, dicom_type.upper()
    if dicom_type not in DICOM_TYPE_VALUES:
        problems.append(("dicom_type", f"unknown DICOM type '{dicom_type}' (use one of "
                                       f"{', '.join(t.value for t in DicomType)}, or a "
                                       f"modality code)"))
    elif dicom_type == DicomType.MODALITY.value:
        if not modality:
            problems.append(("modality", "a modality needs its code (CT, MR, CR, DX, US, MG...)"))
        elif modality not in MODALITY_CODES:
            problems.append(("modality", f"unknown modality code '{modality}' (use one of "
                                         f"{', '.join(MODALITY_CODES)})"))
    else:
        modality = None
    v["dicom_type"], v["modality"] = dicom_type, modality


def find_asset(tag: str) -> Asset | None:
    """The asset with this tag (exact first, then ignoring case)."""
    asset = db.session.scalar(select(Asset).where(Asset.asset_tag == tag))
    if asset is None:
        asset = db.session.scalar(select(Asset).where(func.lower(Asset.asset_tag) == tag.lower()))
    return asset


def endpoint_owner(data: AssetData, exclude_id: int | None = None) -> Asset | None:
    """Another active DICOM node already answering at this host, port and AE title."""
    if data.kind != AssetKind.DICOM_NODE.value or data.port is None or not data.ae_title:
        return None
    hosts = []
    if data.hostname:
        hosts.append(func.lower(Asset.hostname) == data.hostname.lower())
    if data.ip_address:
        hosts.append(Asset.ip_address == data.ip_address)
    query = select(Asset).where(
        Asset.kind == AssetKind.DICOM_NODE.value, Asset.status.not_in(INACTIVE_STATUSES),
        Asset.port == data.port, Asset.ae_title == data.ae_title, or_(*hosts),
    )
    if exclude_id is not None:
        query = query.where(Asset.id != exclude_id)
    return db.session.scalars(query.limit(1)).first()


def endpoint_message(other_tag: str, data: AssetData) -> str:
    """The refusal for a host+port+AE title already in use."""
    return (f"asset {other_tag} already uses host {data.ip_address or data.hostname}, "
            f"port {data.port} and AE title {data.ae_title}")


def _validate(data: AssetData, exclude_id: int | None) -> AssetData:
    """Check values and uniqueness against the database; raise AssetError on any problem."""
    data, problems = normalise(data)
    if not any(f == "asset_tag" for f, _ in problems):
        taken = db.session.scalar(select(Asset.id).where(
            func.lower(Asset.asset_tag) == data.asset_tag.lower(),
            *([Asset.id != exclude_id] if exclude_id is not None else [])))
        if taken is not None:
            problems.append(("asset_tag", f"asset tag {data.asset_tag} is already used by "
                                          f"another asset"))
    if not problems and (other := endpoint_owner(data, exclude_id)) is not None:
        problems.append(("ae_title", endpoint_message(other.asset_tag, data)))
    if data.assigned_user_id is not None and db.session.get(User, data.assigned_user_id) is None:
        problems.append(("assigned_user_id", "no such user"))
    if problems:
        raise AssetError(problems)
    return data


def display_value(name: str, value: Any) -> str:
    """How a field's value is written in the change history."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, date):
        return value.isoformat()
    if name == "assigned_user_id":
        user = db.session.get(User, value)
        return user.username if user else str(value)
    return str(value)


def create_asset(data: AssetData, *, user: User | None) -> Asset:
    """Create an asset after validation; history and audit event included."""
    if data.status == AssetStatus.DISPOSED.value:
        raise AssetError([("status", "an asset is disposed from its own page, not created "
                                     "disposed")])
    data = _validate(data, None)
    asset = Asset(**asdict(data))
    db.session.add(asset)
    db.session.flush()
    db.session.add(AssetChange(asset_id=asset.id, user_id=user.id if user else None,
                               field="created", new_value=asset.asset_tag))
    record("asset.create", object_type="asset", object_id=asset.asset_tag,
           details={"kind": asset.kind, "name": asset.name})
    return asset


def diff(asset: Asset, data: AssetData) -> dict[str, tuple[Any, Any]]:
    """Fields whose value would change: name -> (old, new)."""
    return {n: (getattr(asset, n), getattr(data, n)) for n in DATA_FIELDS
            if getattr(asset, n) != getattr(data, n)}


def apply_changes(asset: Asset, changes: dict[str, tuple[Any, Any]], user_id: int | None) -> None:
    """Set new values and write one history row per changed field."""
    for name, (old, new) in changes.items():
        setattr(asset, name, new)
        db.session.add(AssetChange(asset_id=asset.id, user_id=user_id,
                                   field="assigned_user" if name == "assigned_user_id" else name,
                                   old_value=display_value(name, old),
                                   new_value=display_value(name, new)))


def update_asset(asset: Asset, data: AssetData, *, user: User | None) -> list[str]:
    """Change an asset; returns the changed field names (empty when nothing changed)."""
    if asset.status == AssetStatus.DISPOSED.value:
        raise AssetError([("status", "a disposed asset cannot be changed")])
    if data.status == AssetStatus.DISPOSED.value:
        raise AssetError([("status", "use Dispose to dispose of an asset: it records how its "
                                     "storage was sanitised")])
    data = _validate(data, asset.id)
    changes = diff(asset, data)
    if not changes:
        return []
    audit_changes = {n: [display_value(n, o), display_value(n, v)]
                     for n, (o, v) in changes.items() if n != "notes"}
    apply_changes(asset, changes, user.id if user else None)
    record("asset.update", object_type="asset", object_id=asset.asset_tag,
           details={"fields": sorted(changes), "changes": audit_changes})
    db.session.flush()
    return sorted(changes)


def needs_verification(asset: Asset, changed: Iterable[str]) -> bool:
    """Whether a node's address changed so that it should be checked again."""
    return (asset.is_dicom_node and asset.status not in INACTIVE_STATUSES
            and bool(ADDRESS_FIELDS & set(changed)))


def dispose_asset(asset: Asset, sanitisation: SanitisationData | None, *,
                  user: User | None) -> Asset:
    """Dispose of an asset; one that held patient data needs its sanitisation record."""
    if asset.status == AssetStatus.DISPOSED.value:
        raise AssetError([("status", f"asset {asset.asset_tag} is already disposed")])
    if sanitisation is None or not sanitisation.method:
        if asset.holds_phi:
            raise AssetError([("method", "this asset held patient data: record how its storage "
                                         "was sanitised (HIPAA 164.310(d)(2))")])
        sanitisation = None
    else:
        _check_sanitisation(sanitisation)
    user_id = user.id if user else None
    apply_changes(asset, {"status": (asset.status, AssetStatus.DISPOSED.value),
                          "verify_enabled": (asset.verify_enabled, False)}, user_id)
    details: dict[str, Any] = {"holds_phi": asset.holds_phi}
    if sanitisation is not None:
        db.session.add(Sanitisation(
            asset_id=asset.id, method=sanitisation.method,
            performed_on=sanitisation.performed_on, performed_by=sanitisation.performed_by.strip(),
            witness=sanitisation.witness.strip(),
            certificate_ref=sanitisation.certificate_ref.strip(), recorded_by_id=user_id))
        db.session.add(AssetChange(
            asset_id=asset.id, user_id=user_id, field="sanitisation",
            new_value=f"{sanitisation.method} on {sanitisation.performed_on} by "
                      f"{sanitisation.performed_by.strip()}, witness "
                      f"{sanitisation.witness.strip()}, certificate "
                      f"{sanitisation.certificate_ref.strip() or '-'}"))
        details.update(method=sanitisation.method, certificate_ref=sanitisation.certificate_ref)
    record("asset.dispose", object_type="asset", object_id=asset.asset_tag, details=details)
    db.session.flush()
    return asset


def _check_sanitisation(s: SanitisationData) -> None:
    """Refuse an incomplete or implausible sanitisation record."""
    problems: list[tuple[str, str]] = []
    if s.method not in SANITISATION_METHODS:
        problems.append(("method", "choose clear, purge or destroy (NIST SP 800-88)"))
    if s.performed_on is None:
        problems.append(("performed_on", "the date of sanitisation is required"))
    elif s.performed_on > local_today():
        problems.append(("performed_on", "the date of sanitisation cannot be in the future"))
    if not s.performed_by.strip():
        problems.append(("performed_by", "who sanitised the media is required"))
    if not s.witness.strip():
        problems.append(("witness", "a witness is required"))
    elif s.witness.strip().lower() == s.performed_by.strip().lower():
        problems.append(("witness", "the witness must be someone other than the person who did it"))
    for name in ("performed_by", "witness", "certificate_ref"):
        if len(getattr(s, name)) > 200:
            problems.append((name, "at most 200 characters"))
    if problems:
        raise AssetError(problems)


@dataclass(frozen=True)
class AssetFilters:
    """The list page's filters."""

    kind: str = ""
    status: str = ""
    location: str = ""
    department: str = ""
    node_state: str = ""
    q: str = ""

    def active(self) -> dict[str, str]:
        """The filters that are set."""
        return {k: v for k, v in asdict(self).items() if v}


def asset_query(filters: AssetFilters) -> Select:
    """Assets matching the filters, ordered by tag."""
    query = select(Asset)
    if filters.kind:
        query = query.where(Asset.kind == filters.kind)
    if filters.status:
        query = query.where(Asset.status == filters.status)
    if filters.location:
        query = query.where(func.lower(Asset.location) == filters.location.lower())
    if filters.department:
        query = query.where(func.lower(Asset.department) == filters.department.lower())
    if filters.q:
        text = filters.q.lower()
        columns = (Asset.asset_tag, Asset.name, Asset.hostname, Asset.ip_address,
                   Asset.ae_title, Asset.serial_number, Asset.model, Asset.manufacturer,
                   Asset.location)
        query = query.where(or_(*(func.lower(column).contains(text, autoescape=True)
                                  for column in columns)))
    if filters.node_state:
        query = _filter_node_state(query, filters.node_state)
    return query.order_by(Asset.asset_tag)


def _filter_node_state(query: Select, state: str) -> Select:
    """Keep DICOM nodes in ``state`` (a node never checked is unknown)."""
    query = query.outerjoin(NodeState, NodeState.asset_id == Asset.id).where(
        Asset.kind == AssetKind.DICOM_NODE.value)
    if state == "unknown":
        return query.where(or_(NodeState.state.is_(None), NodeState.state == "unknown"))
    return query.where(NodeState.state == state)


def distinct_values(column: Any) -> list[str]:
    """The non-empty values of a text column, for filter menus."""
    return list(db.session.scalars(select(column).where(column != "").distinct()
                                   .order_by(column)))


def warranty_query(days: int = 90) -> Select:
    """Active assets whose warranty ends within ``days`` (or has just ended today)."""
    today = local_today()
    return (select(Asset)
            .where(Asset.warranty_end.is_not(None), Asset.warranty_end >= today,
                   Asset.warranty_end <= today + timedelta(days=days),
                   Asset.status.not_in(INACTIVE_STATUSES))
            .order_by(Asset.warranty_end, Asset.asset_tag))


def asset_history(asset: Asset) -> list[AssetChange]:
    """The asset's change history, newest first."""
    return list(db.session.scalars(
        select(AssetChange).where(AssetChange.asset_id == asset.id)
        .order_by(AssetChange.changed_at.desc(), AssetChange.id.desc())))


def sanitisation_of(asset: Asset) -> Sanitisation | None:
    """The asset's sanitisation record, if any."""
    return db.session.scalar(select(Sanitisation).where(Sanitisation.asset_id == asset.id))


def record_export(filters: AssetFilters, count: int, *, via: str,
                  username: str | None = None) -> None:
    """Audit an export of the asset list."""
    record("asset.export", object_type="asset", username=username,
           details={"count": count, "filters": filters.active(), "via": via})


def node_states(asset_ids: list[int]) -> dict[int, str]:
    """Known node states by asset id (a node missing here is unknown)."""
    states: dict[int, str] = {}
    for i in range(0, len(asset_ids), CHUNK):
        states.update(db.session.execute(
            select(NodeState.asset_id, NodeState.state)
            .where(NodeState.asset_id.in_(asset_ids[i:i + CHUNK]))).tuples().all())
    return states


def request_checks(asset_ids: list[int]) -> None:
    """Ask for background C-ECHO checks of nodes (after the commit; never blocks)."""
    for asset_id in asset_ids:
        request_check(asset_id)


def count_assets() -> int:
    """How many assets exist (demo refuses to run on real data)."""
    return db.session.scalar(select(func.count(Asset.id))) or 0
