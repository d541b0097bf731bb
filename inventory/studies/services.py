"""Imaging retention rules, archive settings and holds as the rules engine sees them (services flush)."""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import select

from audit import record
from audit.retention.holds import STUDY_DATES, active_holds
from audit.retention.models import LegalHold
from core.extensions import db
from core.forms import FieldError
from core.timeutil import to_local, utcnow
from inventory.models import Asset, AssetKind, DicomType
from inventory.studies import rules as rule_engine
from inventory.studies.dimse import Archive
from inventory.studies.models import ArchiveSettings, DeletionMethod, ImagingRule
from inventory.studies.orthanc import OrthancClient
from inventory.studies.rules import Anchor, Hold, Period, Rule, RuleError, RuleKind

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "studies.rule_created": "Imaging retention rule stored at its documented default",
    "studies.rule_set": "Imaging retention rule set",
    "studies.archive_settings": "Archive deletion settings changed",
}

ALL_MODALITIES = ("", "ALL", "*")
ANCHORS = {"study": Anchor.STUDY_DATE, "study_date": Anchor.STUDY_DATE, "last-study": Anchor.LAST_STUDY,
           "last_study": Anchor.LAST_STUDY}
MAX_PASSWORD_FILE_BYTES = 4096


class StudyError(FieldError):
    """An imaging retention operation was refused; ``field`` names the form field or option."""


def mask(identifier: str | None) -> str:
    """A patient identifier reduced to its last four characters: ``•••1234``."""
    value = (identifier or "").strip()
    if not value:
        return ""
    return "•••" + value[-4:] if len(value) > 4 else "•" * len(value)


def rule_state(rule: Rule) -> dict[str, Any]:
    """A rule as plain values (stored with a review and in audit events)."""
    return {"name": rule.name, "kind": str(rule.kind), "modality": rule.modality or "",
            "period": str(rule.period), "period_text": rule.period.text, "anchor": str(rule.anchor),
            "majority_age": rule.majority_age, "source": rule.source}


def rule_from_state(state: dict[str, Any]) -> Rule:
    """A rule stored by ``rule_state`` (with a review), as the engine applies it."""
    return Rule(state["name"], RuleKind(state["kind"]), Period.parse(state["period"]),
                state["modality"] or None, Anchor(state["anchor"]), state["majority_age"],
                state.get("source", ""))


def ensure_default_rules() -> None:
    """Store the documented default rules when none is stored (``pacsdesk setup``; flushes, audited)."""
    if db.session.execute(select(ImagingRule.id).limit(1)).first() is not None:
        return
    for rule in rule_engine.DEFAULT_RULES:
        row = ImagingRule(name=rule.name, kind=rule.kind, modality=rule.modality or "",
                          period=str(rule.period), anchor=rule.anchor, majority_age=rule.majority_age,
                          source=rule.source)
        db.session.add(row)
        db.session.flush()
        record("studies.rule_created", object_type="imaging_rule",
               object_id=f"{row.kind}:{row.modality or 'ALL'}", user=None, details=rule_state(rule))


def list_rules() -> list[ImagingRule]:
    """The stored rules, by modality then kind."""
    return list(db.session.scalars(select(ImagingRule).order_by(ImagingRule.modality, ImagingRule.kind)))


def rules_in_force() -> list[Rule]:
    """The stored rules as the engine applies them."""
    return [row.as_rule() for row in list_rules()]


def _modality(text: str) -> str:
    """A modality code ("" for every modality), or StudyError naming the argument."""
    value = (text or "").strip().upper()
    if value in ALL_MODALITIES:
        return ""
    if not rule_engine.MODALITY_PATTERN.fullmatch(value):
        raise StudyError(f"modality: {text.strip()[:20]!r} is not a DICOM modality code such as CT, MR "
                         "or MG (ALL for every modality)", "modality")
    return value


def _rule_name(kind: RuleKind, modality: str, period: Period, anchor: Anchor, majority: int | None) -> str:
    """A rule's name from its terms."""
    which = modality or "All modalities"
    if kind is RuleKind.MINOR:
        return f"Minors ({which}): until {majority} plus {period.text}"
    if kind is RuleKind.MAMMOGRAPHY:
        return f"Mammography: {period.text}, and as long as any later mammogram"
    after = "the patient's last study" if anchor is Anchor.LAST_STUDY else "the study"
    return f"{which}: {period.text} after {after}"


def set_rule(modality: str, period: str, minors_until: int | None, anchor: str, user: Any) -> ImagingRule:
    """Create or change the rule for ``modality`` (flushes and audits).

    With ``minors_until`` it is the minors rule (kept until that age plus the period); MG without it
    is the mammography rule (the period after the patient's latest mammogram); otherwise a period
    after the study date or the patient's last study.
    """
    code = _modality(modality)
    try:
        parsed = Period.parse(period, "period")
    except RuleError as error:
        raise StudyError(str(error), "period") from None
    anchor_value = ANCHORS.get((anchor or "").strip().lower())
    if anchor_value is None:
        raise StudyError(f"anchor: must be study or last-study, not {anchor!r}", "anchor")
    if minors_until is not None:
        kind = RuleKind.MINOR
        if anchor_value is not Anchor.STUDY_DATE:
            raise StudyError("anchor: a minors rule counts from the age of majority, not the last study",
                             "anchor")
    elif code == "MG":
        kind = RuleKind.MAMMOGRAPHY
        if anchor_value is not Anchor.STUDY_DATE:
            raise StudyError("anchor: the mammography rule already counts from the patient's latest "
                             "mammogram", "anchor")
    else:
        kind = RuleKind.PERIOD
    name = _rule_name(kind, code, parsed, anchor_value, minors_until)
    try:
        rule = Rule(name, kind, parsed, code or None, anchor_value, minors_until)
    except RuleError as error:
        field = str(error).split(":")[0]
        raise StudyError(str(error).replace("majority_age", "minors-until"),
                         "minors_until" if field == "majority_age" else field) from None
    row = db.session.execute(select(ImagingRule).where(ImagingRule.kind == kind,
                                                       ImagingRule.modality == code)).scalar_one_or_none()
    old = rule_state(row.as_rule()) if row is not None else None
    if row is None:
        row = ImagingRule(kind=kind, modality=code, source=rule_engine.CHECK_STATE_LAW)
        db.session.add(row)
    row.name, row.period, row.anchor, row.majority_age = name, str(parsed), anchor_value, minors_until
    row.updated_at, row.updated_by_id = utcnow(), getattr(user, "id", None)
    db.session.flush()
    record("studies.rule_set", object_type="imaging_rule", object_id=f"{kind}:{code or 'ALL'}",
           user=user, details={"old": old, "new": rule_state(rule)})
    return row


def archive_nodes() -> list[Asset]:
    """DICOM nodes of type PACS archive, by tag."""
    return list(db.session.scalars(select(Asset).where(Asset.kind == AssetKind.DICOM_NODE,
                                                       Asset.dicom_type == DicomType.PACS_ARCHIVE)
                                   .order_by(Asset.asset_tag)))


def archive_by_tag(tag: str) -> Asset:
    """The PACS archive node with this asset tag, or StudyError naming the archive."""
    asset = db.session.execute(select(Asset).where(Asset.asset_tag == (tag or "").strip())
                               ).scalar_one_or_none()
    if asset is None:
        raise StudyError(f"archive: there is no asset tagged {tag.strip()[:40]!r}", "archive")
    check_archive(asset)
    return asset


def check_archive(asset: Asset) -> None:
    """Refuse an asset that is not a PACS archive node with an address, naming why."""
    if asset.kind != AssetKind.DICOM_NODE or asset.dicom_type != DicomType.PACS_ARCHIVE:
        raise StudyError(f"archive: {asset.asset_tag} is not a DICOM node of type PACS archive", "archive")
    if not asset.host or not asset.port or not asset.ae_title:
        raise StudyError(f"archive: {asset.asset_tag} needs a host, a port and an AE title", "archive")


def settings_for(asset_id: int) -> ArchiveSettings | None:
    """The archive's deletion settings, if stored."""
    return db.session.execute(select(ArchiveSettings).where(ArchiveSettings.asset_id == asset_id)
                              ).scalar_one_or_none()


def settings_by_archive(asset_ids: Iterable[int]) -> dict[int, ArchiveSettings]:
    """The stored deletion settings of these archives, by asset id, in one query."""
    ids = list(asset_ids)
    return {row.asset_id: row for row in db.session.execute(
        select(ArchiveSettings).where(ArchiveSettings.asset_id.in_(ids))).scalars()} if ids else {}


@dataclass(frozen=True)
class ArchiveSettingsData:
    """What a person sets for an archive."""

    method: str
    orthanc_url: str = ""
    orthanc_username: str = ""
    password_file: str = ""
    find_limit: int | None = None
    timeout: int = 30


def save_settings(asset_id: int, data: ArchiveSettingsData, user: Any) -> ArchiveSettings:
    """Store an archive's deletion method and query settings after checking them (flushes, audits)."""
    asset = db.session.get(Asset, asset_id)
    if asset is None:
        raise StudyError(f"archive: there is no asset #{asset_id}", "archive")
    check_archive(asset)
    try:
        method = DeletionMethod(data.method)
    except ValueError:
        raise StudyError(f"method: must be one of {', '.join(DeletionMethod)}", "method") from None
    if data.find_limit is not None and not 1 <= data.find_limit <= 1_000_000:
        raise StudyError("find_limit: the archive's result limit is a whole number from 1 to 1000000",
                         "find_limit")
    if not 1 <= data.timeout <= 600:
        raise StudyError("timeout: give 1 to 600 seconds", "timeout")
    url = data.orthanc_url.strip()
    if method is DeletionMethod.ORTHANC_REST:
        try:
            OrthancClient(url, data.orthanc_username.strip())
        except ValueError as error:
            raise StudyError(f"orthanc_url: {error}", "orthanc_url") from None
        if data.password_file.strip():
            read_password(data.password_file.strip())
    row = settings_for(asset_id)
    if row is None:
        row = ArchiveSettings(asset_id=asset_id)
        db.session.add(row)
    row.method, row.orthanc_url, row.orthanc_username = method, url, data.orthanc_username.strip()
    row.password_file, row.find_limit, row.timeout = data.password_file.strip(), data.find_limit, data.timeout
    row.updated_at, row.updated_by_id = utcnow(), getattr(user, "id", None)
    db.session.flush()
    record("studies.archive_settings", object_type="study_archive", object_id=asset_id, user=user,
           details={"archive": asset.asset_tag, "method": str(method), "orthanc_url": url,
                    "username": row.orthanc_username, "password_file": row.password_file,
                    "find_limit": data.find_limit, "timeout": data.timeout})
    return row


def read_password(path: str) -> str:
    """The password kept in ``path`` (first line), or StudyError naming the field."""
    file = Path(path)
    try:
        info = file.stat()
        if not stat.S_ISREG(info.st_mode):
            raise StudyError(f"password_file: {path} is not a file", "password_file")
        if info.st_size > MAX_PASSWORD_FILE_BYTES:
            raise StudyError(f"password_file: {path} is larger than a password file", "password_file")
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise StudyError(f"password_file: {path} cannot be read ({error.strerror})",
                         "password_file") from None
    except UnicodeDecodeError:
        raise StudyError(f"password_file: {path} is not UTF-8 text", "password_file") from None
    return text.splitlines()[0] if text else ""


def archive_of(asset: Asset, settings: ArchiveSettings | None) -> Archive:
    """How PACS Desk calls this archive over DICOM."""
    return Archive(asset.host, int(asset.port or 0), asset.ae_title or "",
                   current_app.config["PACSDESK_DICOM_AE_TITLE"],
                   float(settings.timeout if settings else 30), settings.find_limit if settings else None)


def orthanc_of(settings: ArchiveSettings) -> OrthancClient:
    """The REST client of an Orthanc archive, its password read from the file now."""
    password = read_password(settings.password_file) if settings.password_file else ""
    return OrthancClient(settings.orthanc_url, settings.orthanc_username, password,
                         float(settings.timeout))


def _local_day(value: Any) -> date | None:
    """A stored instant as the local calendar day."""
    local = to_local(value)
    return local.date() if local is not None else None


def study_holds() -> list[tuple[LegalHold, Hold]]:
    """Legal holds in force that cover imaging studies, with their terms for the rules engine."""
    found = []
    for hold in active_holds():
        label = f"Legal hold #{hold.id}"
        if hold.object_type == "patient":
            found.append((hold, Hold(label, patient_id=hold.object_key)))
        elif hold.object_type == "accession":
            found.append((hold, Hold(label, accession_number=hold.object_key)))
        elif hold.object_type == "study":
            found.append((hold, Hold(label, study_uid=hold.object_key)))
        elif hold.object_type == STUDY_DATES:
            found.append((hold, Hold(label, date_from=_local_day(hold.start), date_to=_local_day(hold.end))))
    return found


def hold_state(hold: LegalHold) -> dict[str, Any]:
    """A hold as stored with a review: number, reason, scope (patient IDs masked)."""
    key = hold.object_key or ""
    shown = mask(key) if hold.object_type == "patient" else key
    return {"id": hold.id, "reason": hold.reason, "type": hold.object_type, "key": shown,
            "start": start.isoformat() if (start := _local_day(hold.start)) else None,
            "end": end.isoformat() if (end := _local_day(hold.end)) else None}
