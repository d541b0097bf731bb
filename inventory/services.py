"""Asset operations: validate, create, update, dispose, list; every change leaves history."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Select, func, or_, select

from audit import record
from audit.trail.history import history_of
from audit.trail.models import ObjectChange
from core.auth.models import User
from core.extensions import db
from core.jobs.models import Job
from core.jobs.queue import enqueue
from core.timeutil import utcnow
from inventory.asset_rules import (
    DATA_FIELDS,
    INACTIVE_STATUSES,
    AssetData,
    AssetError,
    SanitisationData,
    check_sanitisation,
    local_today,
    normalise,
)
from inventory.models import TLS_FILE_FIELDS, Asset, AssetKind, AssetStatus, Sanitisation
from inventory.verification.dicom import tls_context
from inventory.verification.models import CheckTrigger, NodeState

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
        "asset.create": "Asset created",
        "asset.update": "Asset changed",
        "asset.dispose": "Asset disposed",
        "asset.export": "Asset list exported to CSV",
        "asset.tls_files": "DICOM node's TLS client certificate, key or CA file changed",
    }

CHUNK = 500
ADDRESS_FIELDS = frozenset({"kind", "hostname", "ip_address", "port", "ae_title", "tls", *TLS_FILE_FIELDS})


def data_of(asset: Asset) -> AssetData:
    """The editable values of an existing asset."""
    return AssetData(**{name: getattr(asset, name) for name in DATA_FIELDS})


def find_asset(tag: str) -> Asset | None:
    """The asset with this tag (exact first, then ignoring case)."""
    asset = db.session.scalar(select(Asset).where(Asset.asset_tag == tag))
    if asset is None:
        asset = db.session.scalar(select(Asset).where(func.lower(Asset.asset_tag) == tag.lower()))
    return asset


def endpoint_owner(data: AssetData, exclude_id: int | None = None) -> Asset | None:
    """Another active DICOM node already answering at this host, port and AE title."""
    if data.kind != AssetKind.DICOM_NODE or data.port is None or not data.ae_title:
        return None
    hosts = []
    if data.hostname:
        hosts.append(func.lower(Asset.hostname) == data.hostname.lower())
    if data.ip_address:
        hosts.append(Asset.ip_address == data.ip_address)
    query = select(Asset).where(
        Asset.kind == AssetKind.DICOM_NODE, Asset.status.not_in(INACTIVE_STATUSES),
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
    if data.status == AssetStatus.DISPOSED:
        raise AssetError([("status", "an asset is disposed from its own page, not created "
                                     "disposed")])
    data = _validate(data, None)
    asset = Asset(**asdict(data))
    db.session.add(asset)
    db.session.flush()
    record("asset.create", object_type="asset", object_id=asset.asset_tag,
           details={"kind": asset.kind, "name": asset.name})
    return asset


def diff(asset: Asset, data: AssetData) -> dict[str, tuple[Any, Any]]:
    """Fields whose value would change: name -> (old, new)."""
    return {n: (getattr(asset, n), getattr(data, n)) for n in DATA_FIELDS
            if getattr(asset, n) != getattr(data, n)}


def apply_changes(asset: Asset, changes: dict[str, tuple[Any, Any]]) -> None:
    """Set new values (the audit hook writes the history lines from them)."""
    for name, (_old, new) in changes.items():
        setattr(asset, name, new)


def update_asset(asset: Asset, data: AssetData, *, user: User | None) -> list[str]:
    """Change an asset; returns the changed field names (empty when nothing changed)."""
    if asset.status == AssetStatus.DISPOSED:
        raise AssetError([("status", "a disposed asset cannot be changed")])
    if data.status == AssetStatus.DISPOSED:
        raise AssetError([("status", "use Dispose to dispose of an asset: it records how its "
                                     "storage was sanitised")])
    data = _validate(data, asset.id)
    changes = diff(asset, data)
    if not changes:
        return []
    audit_changes = {n: [display_value(n, o), display_value(n, v)]
                     for n, (o, v) in changes.items() if n != "notes"}
    apply_changes(asset, changes)
    record("asset.update", object_type="asset", object_id=asset.asset_tag,
           details={"fields": sorted(changes), "changes": audit_changes})
    db.session.flush()
    return sorted(changes)


def _tls_files_problem(cert: str | None, key: str | None, ca_file: str | None) -> tuple[str, str] | None:
    """(field, why) when a TLS file cannot be used: unreadable, not PEM, a key not the certificate's."""
    if key and not cert:
        return "tls_client_key", "a key needs the client certificate it belongs to"
    try:
        if ca_file:
            tls_context(ca_file=ca_file)
        if cert:
            tls_context(client_cert=cert, client_key=key)
    except ValueError as exc:
        text = str(exc)
        field = ("tls_ca_file" if text.startswith("ca_file") else
                 "tls_client_key" if text.startswith("client_key") else "tls_client_cert")
        return field, text
    return None


def set_tls_files(asset: Asset, cert: str | None, key: str | None, ca_file: str | None, *,
                  user: User | None) -> list[str]:
    """Set a node's own TLS client certificate, key and CA file (admins); each file is checked.

    Returns the changed field names; the change is in the asset's history and audited as
    ``asset.tls_files``. Empty values mean the global PACSDESK_DICOM_TLS_* files apply.
    """
    values = dict(zip(TLS_FILE_FIELDS, ((v or "").strip() or None for v in (cert, key, ca_file)),
                      strict=True))
    changed = sorted(name for name, value in values.items() if getattr(asset, name) != value)
    if not changed:
        return []
    problem = _tls_files_problem(values["tls_client_cert"], values["tls_client_key"],
                                 values["tls_ca_file"])
    if problem:
        raise AssetError([problem])
    before = {name: getattr(asset, name) for name in changed}
    for name in changed:
        setattr(asset, name, values[name])
    record("asset.tls_files", object_type="asset", object_id=asset.asset_tag,
           details={"fields": changed, "changes": {n: [before[n], values[n]] for n in changed}})
    db.session.flush()
    return changed


def needs_verification(asset: Asset, changed: Iterable[str]) -> bool:
    """Whether a node's address changed so that it should be checked again."""
    return (asset.is_dicom_node and asset.status not in INACTIVE_STATUSES
            and bool(ADDRESS_FIELDS & set(changed)))


def dispose_asset(asset: Asset, sanitisation: SanitisationData | None, *,
                  user: User | None) -> Asset:
    """Dispose of an asset; one that held patient data needs its sanitisation record."""
    if asset.status == AssetStatus.DISPOSED:
        raise AssetError([("status", f"asset {asset.asset_tag} is already disposed")])
    if sanitisation is None or not sanitisation.method:
        if asset.holds_phi:
            raise AssetError([("method", "this asset held patient data: record how its storage "
                                         "was sanitised (HIPAA 164.310(d)(2))")])
        sanitisation = None
    else:
        check_sanitisation(sanitisation)
    user_id = user.id if user else None
    apply_changes(asset, {"status": (asset.status, AssetStatus.DISPOSED),
                          "verify_enabled": (asset.verify_enabled, False)})
    details: dict[str, Any] = {"holds_phi": asset.holds_phi}
    if sanitisation is not None:
        db.session.add(Sanitisation(
            asset_id=asset.id, method=sanitisation.method,
            performed_on=sanitisation.performed_on, performed_by=sanitisation.performed_by.strip(),
            witness=sanitisation.witness.strip(),
            certificate_ref=sanitisation.certificate_ref.strip(), recorded_by_id=user_id))
        details.update(method=sanitisation.method, certificate_ref=sanitisation.certificate_ref)
    record("asset.dispose", object_type="asset", object_id=asset.asset_tag, details=details)
    db.session.flush()
    return asset


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
        Asset.kind == AssetKind.DICOM_NODE)
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


def asset_history(asset: Asset) -> list[ObjectChange]:
    """The asset's change history, newest first."""
    return history_of("asset", asset.id, newest_first=True)


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
            .where(NodeState.asset_id.in_(asset_ids[i:i + CHUNK]))).all())
    return states


VERIFY_JOB = "inventory.verify_node"


MANUAL_CHECK_PRIORITY = 10
SAVE_CHECK_PRIORITY = 50


def manual_checks_last_minute(user_id: int) -> int:
    """How many "Verify now" checks ``user_id`` has queued in the last minute (for its rate limit)."""
    return db.session.execute(select(func.count()).select_from(Job).where(
        Job.kind == VERIFY_JOB, Job.created_by_id == user_id,
        Job.priority == MANUAL_CHECK_PRIORITY,
        Job.created_at >= utcnow() - timedelta(minutes=1))).scalar_one()


def request_checks(asset_ids: list[int], trigger: str, *, user: User | None = None,
                   client_address: str | None = None) -> list[Job]:
    """Queue C-ECHO checks of nodes in the caller's transaction (they run once it commits).

    Nodes whose automatic verification is off are not checked on save; a manual check always is.
    """
    jobs = []
    for i in range(0, len(asset_ids), CHUNK):
        chunk = asset_ids[i:i + CHUNK]
        query = select(Asset.id, Asset.asset_tag).where(Asset.id.in_(chunk))
        if trigger != CheckTrigger.MANUAL:
            query = query.where(Asset.verify_enabled.is_(True))
        for asset_id, tag in db.session.execute(query).all():
            jobs.append(enqueue(VERIFY_JOB, {"asset_id": asset_id, "trigger": trigger,
                                             "client_address": client_address},
                                user_id=user.id if user is not None else None,
                                dedup_key=f"verify:{asset_id}", title=f"C-ECHO of {tag}",
                                priority=MANUAL_CHECK_PRIORITY if trigger == CheckTrigger.MANUAL
                                else SAVE_CHECK_PRIORITY))
    return jobs


def count_assets() -> int:
    """How many assets exist (demo refuses to run on real data)."""
    return db.session.scalar(select(func.count(Asset.id))) or 0
