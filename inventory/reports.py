"""The inventory's part of the reports: its PDF report and its bulk exports."""

from __future__ import annotations

from audit.reports.registry import register_export_actions

register_export_actions({"asset.export": "Asset list exported"})
