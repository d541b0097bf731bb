"""What makes asset data valid, checked without the database: tags, addresses, AE titles, dates."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, fields
from datetime import date
from typing import Any

from core.config import ae_title_problem
from core.timeutil import local_tz, utcnow
from inventory.models import FIELD_LABELS, MODALITY_CODES, AssetKind, AssetStatus, DicomRole, DicomType

TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
# Words the asset URLs use for pages of their own (/assets/new, /assets/warranty...).
RESERVED_TAGS = frozenset({"new", "warranty", "import", "export.csv"})
HOST_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
INACTIVE_STATUSES = (AssetStatus.RETIRED, AssetStatus.DISPOSED)
SANITISATION_METHODS = {
    "clear": "logical overwrite of all user-addressable storage",
    "purge": "cryptographic erase, block erase or degaussing",
    "destroy": "shredding, disintegration, pulverisation or incineration",
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
    kind: str = AssetKind.WORKSTATION
    status: str = AssetStatus.IN_SERVICE
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
    v: dict[str, Any] = {n: (x.strip() if isinstance(x, str) and n != "ae_title" else x)
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
    if v["kind"] == AssetKind.DICOM_NODE:
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
    v["dicom_role"] = v["dicom_role"] or DicomRole.BOTH
    if v["dicom_role"] not in ROLE_VALUES:
        problems.append(("dicom_role", f"unknown DICOM role '{v['dicom_role']}' (use scp, "
                                       f"scu or both)"))
    dicom_type = v["dicom_type"] or DicomType.OTHER
    modality = (v["modality"] or "").upper() or None
    if dicom_type.upper() in MODALITY_CODES:
        dicom_type, modality = DicomType.MODALITY, dicom_type.upper()
    if dicom_type not in DICOM_TYPE_VALUES:
        problems.append(("dicom_type", f"unknown DICOM type '{dicom_type}' (use one of "
                                       f"{', '.join(t.value for t in DicomType)}, or a "
                                       f"modality code)"))
    elif dicom_type == DicomType.MODALITY:
        if not modality:
            problems.append(("modality", "a modality needs its code (CT, MR, CR, DX, US, MG...)"))
        elif modality not in MODALITY_CODES:
            problems.append(("modality", f"unknown modality code '{modality}' (use one of "
                                         f"{', '.join(MODALITY_CODES)})"))
    else:
        modality = None
    v["dicom_type"], v["modality"] = dicom_type, modality


def check_sanitisation(s: SanitisationData) -> None:
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
