"""Audit events in people's words: labelled detail fields and object names, never Python values."""

from __future__ import annotations

import json
from typing import Any

from audit.trail.history import tracked_fields
from core import audit_sink
from core.auditing import Tracked

EMPTY = "(none)"
ARROW = " → "
# Detail keys whose plain capitalised form would read badly.
KEY_LABELS = {"id": "Id", "ip": "IP address", "mfa": "Second factor", "sla": "SLA", "url": "Address",
              "name_hmac": "Name (keyed hash)", "user_id": "User", "via": "Through"}
OBJECT_LABELS = {"audit_event": "Audit trail", "ticket": "Ticket", "asset": "Asset", "user": "User",
                 "training_completion": "Training completion", "training_assignment": "Training assignment",
                 "report": "Report", "job": "Job"}


def key_label(key: str) -> str:
    """A detail key as a field name: ``client_address`` reads "Client address"."""
    return KEY_LABELS.get(key, key.replace("_", " ").replace(".", " ").strip().capitalize() or key)


def value_words(value: Any) -> str:
    """A detail value as text: no ``None``, no brackets or quotes of Python or JSON."""
    if value is None or value == "" or value == [] or value == {}:
        return EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(value_words(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{key_label(str(k))}: {value_words(v)}" for k, v in value.items())
    return str(value)


def _parse(details: str | dict | None) -> dict[str, Any]:
    """The details as a dict (text that is not a JSON object becomes one "Details" field)."""
    if isinstance(details, dict):
        return details
    if not details:
        return {}
    try:
        data = json.loads(details)
    except ValueError:
        return {"details": details}
    return data if isinstance(data, dict) else {"details": data}


def _change_words(tracked: dict[str, Tracked], name: str, value: Any) -> str:
    """One changed field's value in words, through its history labels when it has them."""
    spec = tracked.get(name)
    if spec is not None and spec.words is not None and isinstance(value, str) and value:
        return spec.words(value)
    return value_words(value)


def detail_fields(details: str | dict | None, object_type: str | None = None) -> list[tuple[str, str]]:
    """(label, text) per detail; a ``changes`` map gives one "Field: old → new" line per field."""
    fields: list[tuple[str, str]] = []
    tracked = tracked_fields(object_type) if object_type else {}
    for key, value in _parse(details).items():
        if key == "changes" and isinstance(value, dict):
            for name, change in value.items():
                spec = tracked.get(str(name))
                label = spec.label if spec is not None and spec.label else key_label(str(name))
                pair = change if isinstance(change, list) and len(change) == 2 else None
                text = (ARROW.join(_change_words(tracked, name, v) for v in pair) if pair
                        else _change_words(tracked, name, change))
                fields.append((label, text))
        elif value not in (None, "", [], {}):
            fields.append((key_label(key), value_words(value)))
    return fields


def details_text(details: str | dict | None, limit: int = 120, object_type: str | None = None) -> str:
    """The details on one line ("Status: Open → Resolved; Internal: no"), cut at ``limit``."""
    text = "; ".join(f"{label}: {words}" for label, words in detail_fields(details, object_type))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def object_words(object_type: str | None, object_id: Any = None) -> str:
    """An event's object: "Ticket PD-000038", "Audit trail"; empty when the event names none."""
    if not object_type:
        return ""
    label = OBJECT_LABELS.get(object_type, key_label(object_type))
    return label if object_id in (None, "", "None") else f"{label} {object_id}"


def action_words(action: str) -> str:
    """An action's description ("Ticket updated"), the action's name if it has none."""
    return audit_sink.actions().get(action, action)
