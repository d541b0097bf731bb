"""Kinds of notification, registered by each package's ``init_app``."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from core.auth.models import Role
from core.notifications.models import Delivery
from core.registry import app_registry, current_app_object

EVERYONE = frozenset(Role)


@dataclass(frozen=True)
class NotificationKind:
    """One kind of notification: who may get it, whether it is on by default, whether it can be turned off.

    A kind that cannot be turned off (``optional=False``: a broken audit chain, account
    changes) is always e-mailed at once and never waits for a digest.
    """

    name: str
    label: str
    roles: frozenset[Role] = EVERYONE
    default_on: bool = True
    optional: bool = True

    @property
    def default(self) -> Delivery:
        """The delivery of a person who chose nothing."""
        return Delivery.IMMEDIATE if self.default_on or not self.optional else Delivery.APP_ONLY

    def applies_to(self, role: str) -> bool:
        """Whether people of ``role`` may receive this kind."""
        return Role(role) in self.roles

    def choices(self) -> tuple[Delivery, ...]:
        """What a person may choose for this kind."""
        return tuple(Delivery) if self.optional else (Delivery.IMMEDIATE,)


def _kinds(app: Flask | None = None) -> dict[str, NotificationKind]:
    """The notification kinds of ``app`` (default: the current app), by name."""
    return app_registry(app or current_app_object(), "notification_kinds", dict)


def register_notification_kind(app: Flask, kind: NotificationKind) -> None:
    """Declare a kind of notification (its name is what ``notify`` is called with)."""
    _kinds(app)[kind.name] = kind


def notification_kinds(app: Flask | None = None) -> dict[str, NotificationKind]:
    """The registered kinds by name."""
    return _kinds(app)


def get_kind(name: str) -> NotificationKind:
    """The registered kind ``name``; ValueError naming it when it is not registered."""
    kind = _kinds().get(name)
    if kind is None:
        raise ValueError(f"unknown notification kind {name!r}: register it with register_notification_kind")
    return kind
