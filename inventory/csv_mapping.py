"""Mappings for CSV files from other tools: columns to fields, their values to codes, dates, delimiters."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping as ReadOnly
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from core.auth.models import User
from core.extensions import db
from inventory.forms import (
    DATE_FORMAT_CHOICES,
    DICOM_TYPE_LABELS,
    KIND_LABELS,
    ROLE_LABELS,
    STATUS_LABELS,
)
from inventory.models import FIELD_LABELS, MODALITY_CODES, AssetImportMapping, AssetKind

COLUMNS = (
    "asset_tag", "name", "kind", "status", "location", "department", "assigned_user",
    "manufacturer", "model", "serial_number", "hostname", "ip_address", "os_version",
    "purchase_date", "warranty_end", "holds_phi", "ae_title", "port", "tls", "dicom_role",
    "dicom_type", "modality", "verify_enabled", "notes",
)
REQUIRED = ("asset_tag", "name", "kind")
EXPORT_ONLY = ("node_state",)
IGNORE = "ignore"
SAVED = "the mapping saved the last time a file with these columns was imported"
ANY = "*"  # in a mapping file: every other column, or every other value of a field
# Fields whose values are codes: a file may give the code, its label, or a value mapped to one.
CODED: dict[str, ReadOnly[Any, str]] = {
    "kind": KIND_LABELS, "status": STATUS_LABELS, "dicom_type": DICOM_TYPE_LABELS,
    "dicom_role": ROLE_LABELS}
DATE_FORMATS = dict(DATE_FORMAT_CHOICES)  # iso, dmy (day first), mdy (month first)
DELIMITERS = {",": "comma (,)", ";": "semicolon (;)", "\t": "tab"}
class MappingError(ValueError):
    """A mapping (file or form) that cannot be used; the message says which part."""


def fold(text: str) -> str:
    """How names and values are compared: case, surrounding and repeated spaces ignored."""
    return " ".join(text.split()).casefold()


def field_name(header: str) -> str:
    """A column name as PACS Desk writes it ("Serial number" -> serial_number)."""
    return re.sub(r"[\s-]+", "_", header.strip().lower())


def field_label(name: str) -> str:
    """A field's name for people, as asset pages show it."""
    return FIELD_LABELS.get(name, name)


@dataclass(frozen=True)
class Mapping:
    """Which field each column fills and which code each written value means.

    ``columns``: header as written -> field or "ignore" ("*": every other column);
    ``values``: field -> value as written -> code ("*": every other value, with a warning).
    """

    columns: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    date_format: str = "iso"
    delimiter: str = ""
    preset: str = ""

    def column_target(self, header: str) -> str | None:
        """The field a column fills, "ignore", or None when neither the mapping nor the name says."""
        folded = {fold(k): v for k, v in self.columns.items()}
        if fold(header) in folded:
            return folded[fold(header)]
        name = field_name(header)
        if name in COLUMNS:
            return name
        if name in EXPORT_ONLY:
            return IGNORE
        return folded.get(ANY)

    def value_code(self, name: str, written: str) -> tuple[str | None, bool]:
        """The code of a coded field's written value and whether it came from the "*" fallback."""
        table = {fold(k): v for k, v in self.values.get(name, {}).items()}
        if fold(written) in table:
            return table[fold(written)], False
        known = known_code(name, written)
        if known is not None:
            return known, False
        if ANY in table and written.strip():
            return table[ANY], True
        return None, False

    def to_json(self) -> dict[str, Any]:
        """The mapping as the JSON a mapping file holds."""
        data: dict[str, Any] = {"columns": dict(self.columns), "values": {
            k: dict(v) for k, v in self.values.items() if v}, "date_format": self.date_format}
        if self.delimiter:
            data["delimiter"] = self.delimiter
        if self.preset:
            data["preset"] = self.preset
        return data

    @classmethod
    def from_json(cls, data: Any) -> Mapping:
        """Read a mapping file's JSON object; raises MappingError naming the bad part."""
        if not isinstance(data, dict):
            raise MappingError("a mapping is a JSON object with \"columns\" and \"values\"")
        unknown = sorted(set(data) - {"columns", "values", "date_format", "delimiter", "preset"})
        if unknown:
            raise MappingError(f"unknown key(s): {', '.join(unknown)} (use columns, values, "
                               f"date_format, delimiter, preset)")
        base = PRESETS[data["preset"]].mapping if data.get("preset") in PRESETS else cls()
        if data.get("preset") and data["preset"] not in PRESETS:
            raise MappingError(f"preset: unknown preset '{data['preset']}' (use one of "
                               f"{', '.join(PRESETS)})")
        columns = {**base.columns, **_text_table(data.get("columns", {}), "columns")}
        for header, target in columns.items():
            if target not in COLUMNS and target != IGNORE:
                raise MappingError(f"columns: '{header}' maps to unknown field '{target}' (use "
                                   f"\"ignore\" or one of {', '.join(COLUMNS)})")
            if header == ANY and target != IGNORE:
                raise MappingError("columns: \"*\" (every other column) can only be \"ignore\"")
        values = {k: dict(v) for k, v in base.values.items()}
        raw_values = data.get("values", {})
        if not isinstance(raw_values, dict):
            raise MappingError("values: an object of fields, each an object of value -> code")
        for name, table in raw_values.items():
            if name not in CODED:
                raise MappingError(f"values: '{name}' has no coded values (use one of "
                                   f"{', '.join(CODED)})")
            for written, code in _text_table(table, f"values.{name}").items():
                if known_code(name, code) != code:
                    raise MappingError(f"values.{name}: '{written}' maps to unknown code '{code}' "
                                       f"(use one of {', '.join(str(c) for c in CODED[name])})")
                values.setdefault(name, {})[written] = code
        date_format = data.get("date_format", base.date_format)
        if date_format not in DATE_FORMATS:
            raise MappingError(f"date_format: '{date_format}' is not one of "
                               f"{', '.join(DATE_FORMATS)}")
        delimiter = data.get("delimiter", "")
        if delimiter and delimiter not in DELIMITERS:
            raise MappingError("delimiter: use \",\", \";\" or \"\\t\" (or leave it out to detect it)")
        return cls(columns, values, date_format, delimiter, str(data.get("preset", base.preset)))


def _text_table(table: Any, where: str) -> dict[str, str]:
    """A JSON object of text to text, or MappingError naming ``where``."""
    if not isinstance(table, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
        raise MappingError(f"{where}: an object of text to text")
    return dict(table)


def known_code(name: str, written: str) -> str | None:
    """A coded field's code from its code or its label as asset pages show it, else None."""
    labels = CODED[name]
    text = fold(written)
    for code, label in labels.items():
        if text in (str(code), fold(label), fold(str(code).replace("_", " "))):
            return str(code)
    if name == "kind" and text in ("dicom", "node"):
        return AssetKind.DICOM_NODE.value
    if name == "dicom_type" and written.strip().upper() in MODALITY_CODES:
        return written.strip().upper()  # a modality code: the node is a modality of that kind
    return None


@dataclass(frozen=True)
class Preset:
    """A ready mapping for another tool's export, chosen when a file's header has its markers."""

    key: str
    title: str
    markers: tuple[str, ...]
    mapping: Mapping


WORKSTATION_TYPES = {"Desktop": "workstation", "Laptop": "workstation", "Workstation": "workstation",
                     "Server": "server", "Printer": "printer", ANY: "other"}
PRESETS = {preset.key: preset for preset in (
    Preset("snipe-it", "Snipe-IT asset export", ("asset tag", "category", "status"), Mapping(
        columns={"Asset Tag": "asset_tag", "Asset Name": "name", "Name": "name", "Category": "kind",
                 "Status": "status", "Location": "location", "Department": "department",
                 "Manufacturer": "manufacturer", "Model": "model", "Serial": "serial_number",
                 "Serial Number": "serial_number", "Purchased": "purchase_date",
                 "Purchase Date": "purchase_date", "Warranty Expires": "warranty_end",
                 "Notes": "notes", ANY: IGNORE},
        values={"status": {"Ready to Deploy": "in_service", "Deployed": "in_service",
                           "Pending": "in_maintenance", "Archived": "retired",
                           "Broken": "out_of_service", "Lost/Stolen": "retired"},
                "kind": dict(WORKSTATION_TYPES)},
        preset="snipe-it")),
    Preset("glpi", "GLPI computer export", ("name", "entity", "inventory number"), Mapping(
        columns={"Inventory number": "asset_tag", "Name": "name", "Type": "kind", "Status": "status",
                 "Manufacturer": "manufacturer", "Model": "model", "Serial number": "serial_number",
                 "Operating system - Name": "os_version", "Location": "location", ANY: IGNORE},
        values={"kind": dict(WORKSTATION_TYPES)},
        preset="glpi")),
)}


def detect_preset(header: list[str]) -> Preset | None:
    """The preset whose marker columns are all in the header, if any."""
    names = {fold(h) for h in header}
    return next((p for p in PRESETS.values() if set(p.markers) <= names), None)


def is_native(header: list[str]) -> bool:
    """Whether every column is one PACS Desk writes (its own export imports without questions)."""
    return all(field_name(h) in COLUMNS or field_name(h) in EXPORT_ONLY for h in header)


def header_key(header: list[str]) -> str:
    """The key a saved mapping is found by: the header's column names, compared as ``fold`` does."""
    return hashlib.sha256("\x1f".join(fold(h) for h in header).encode()).hexdigest()


def saved_mapping(header: list[str]) -> AssetImportMapping | None:
    """The mapping saved the last time a file with this header was imported."""
    return db.session.scalar(select(AssetImportMapping).where(
        AssetImportMapping.header_key == header_key(header)))


def save_mapping(header: list[str], mapping: Mapping, user: User | None) -> None:
    """Remember a mapping for the next file with this header (flushes; the caller commits)."""
    row = saved_mapping(header) or AssetImportMapping(header_key=header_key(header))
    row.header = list(header)
    row.mapping = mapping.to_json()
    row.saved_by_id = user.id if user is not None else None
    db.session.add(row)
    db.session.flush()


def choose_mapping(header: list[str]) -> tuple[Mapping, str]:
    """The mapping a file starts with and where it came from: saved, a preset, or the names."""
    saved = saved_mapping(header)
    if saved is not None:
        try:
            return Mapping.from_json(saved.mapping), SAVED
        except MappingError:
            pass  # a saved mapping from an older version: start again from a preset
    preset = detect_preset(header)
    if preset is not None:
        return preset.mapping, f"the {preset.title} preset"
    return Mapping(), "the column names"
