"""How the PACS access log finds senders in the inventory and reports silent ones, without importing it.

``audit`` never imports a domain. The inventory registers a ``SourceDirectory`` (find the asset
a sender is, by audit source id, host name or IP address; say whether it is in service) and a
``SilenceHandler`` (open one ticket for a silent source, resolve it when messages come back)
in its ``init_app``. Without them every sender is simply unknown and nothing opens tickets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from flask import Flask

from core.registry import app_registry, current_registry


@dataclass(frozen=True)
class SourceAsset:
    """What the PACS access log shows of the asset a sender is."""

    id: int
    tag: str
    name: str
    in_service: bool


@dataclass(frozen=True)
class SilentSource:
    """An audit source that stopped (or resumed) sending: what a ticket needs to say."""

    source_id: int
    label: str
    sender_host: str
    asset: SourceAsset | None
    last_seen: datetime
    silent_since: datetime


class SourceDirectory(Protocol):
    """The inventory's answers about senders of audit messages."""

    def find(self, address: str, host_name: str | None, audit_source_id: str | None) -> SourceAsset | None:
        """The asset that is this sender (audit source id first, then host name, then address)."""

    def by_ids(self, ids: Iterable[int]) -> dict[int, SourceAsset]:
        """The assets with these ids (status as of now)."""

    def page_endpoint(self) -> str:
        """The endpoint of an asset's page, called with ``tag=``."""


class SilenceHandler(Protocol):
    """What happens when an in-service source goes silent, and when it sends again."""

    def source_silent(self, source: SilentSource) -> None:
        """Open (at most) one ticket for the silent source; only flushes."""

    def source_back(self, source: SilentSource, back_at: datetime) -> None:
        """Reply on and resolve the source's open ticket; only flushes."""


@dataclass
class _Slot:
    """The app's source directory and silence handlers."""

    directory: SourceDirectory | None = None
    handlers: list[SilenceHandler] = field(default_factory=list)


def register_source_directory(app: Flask, directory: SourceDirectory) -> None:
    """Let the PACS access log match senders to assets (called by the inventory's ``init_app``)."""
    app_registry(app, "atna_sources", _Slot).directory = directory


def register_silence_handler(app: Flask, handler: SilenceHandler) -> None:
    """Be told when a source goes silent and comes back (called by the inventory's ``init_app``)."""
    slot = app_registry(app, "atna_sources", _Slot)
    if handler not in slot.handlers:
        slot.handlers.append(handler)


def source_directory() -> SourceDirectory | None:
    """The current app's source directory, or None without an inventory."""
    return current_registry("atna_sources", _Slot).directory


def silence_handlers() -> list[SilenceHandler]:
    """The current app's silence handlers."""
    return list(current_registry("atna_sources", _Slot).handlers)
