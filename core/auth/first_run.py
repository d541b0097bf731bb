"""The administrator's first-run checklist on the home page; packages add their own steps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app
from flask_login import current_user

from core.config import SETTINGS
from core.registry import app_registry, current_registry


@dataclass(frozen=True)
class FirstRunStep:
    """One thing a new installation needs; ``done`` None means it cannot be checked from here."""

    label: str
    endpoint: str | None
    order: int
    done: Callable[[], bool] | None = None


def register_first_run_step(app: Flask, step: FirstRunStep) -> None:
    """Add a step to the checklist (once per label)."""
    steps: list[FirstRunStep] = app_registry(app, "first_run_steps", list)
    if all(existing.label != step.label for existing in steps):
        steps.append(step)
        steps.sort(key=lambda s: s.order)


def _changed(name: str) -> bool:
    """Whether a setting differs from its default."""
    setting = next(s for s in SETTINGS if s.name == name)
    return current_app.config[name] != (setting.parse(setting.default) if setting.default else None)


def _more_than_one_account() -> bool:
    """Whether anyone but the first administrator has an account, or the directory provides them."""
    from core.auth.services import count_users

    return current_app.config["PACSDESK_DIRECTORY"] is not None or count_users() > 1


def core_steps() -> list[FirstRunStep]:
    """The steps core can check: own password and MFA, organisation, time zone, people."""
    return [
        FirstRunStep("Change the password you were given", "auth.password", 10,
                     lambda: not current_user.must_change_password),
        FirstRunStep("Turn on multi-factor authentication for your account", "auth.account", 20,
                     lambda: bool(current_user.mfa_enabled)),
        FirstRunStep("Set the organisation name (PACSDESK_ORGANIZATION)", None, 30,
                     lambda: _changed("PACSDESK_ORGANIZATION")),
        FirstRunStep("Set the time zone (PACSDESK_TIMEZONE)", None, 40,
                     lambda: _changed("PACSDESK_TIMEZONE")),
        FirstRunStep("Add users, or connect the hospital directory (PACSDESK_LDAP_*)", "auth.users", 50,
                     _more_than_one_account),
        FirstRunStep("Add your DICOM nodes", "inventory.asset_new", 60),
        FirstRunStep("Review the retention policies", "audit.retention_home", 70),
    ]


def checklist() -> dict[str, Any]:
    """The panel's data: each step with its state; ``show`` while a checked step is open."""
    steps: list[FirstRunStep] = current_registry("first_run_steps", list)
    rows = []
    for step in steps:
        if step.endpoint is not None and step.endpoint not in current_app.view_functions:
            continue
        rows.append({"step": step, "done": None if step.done is None else step.done()})
    return {"steps": rows, "show": any(row["done"] is False for row in rows)}


def init_app(app: Flask) -> None:
    """Register core's steps."""
    for step in core_steps():
        register_first_run_step(app, step)
