"""Scheduled inventory work: the C-ECHO sweep of every enabled DICOM node."""

from __future__ import annotations

from flask import Flask, current_app

from inventory.verification.services import sweep

SWEEP_JOB = "inventory.sweep"


def sweep_interval(app: Flask) -> float:
    """Seconds between sweeps (PACSDESK_VERIFY_INTERVAL)."""
    return float(app.config["PACSDESK_VERIFY_INTERVAL"])


def sweep_job() -> None:
    """Sweep all nodes (it commits) and log what changed."""
    result = sweep()
    current_app.logger.info(
        "C-ECHO sweep: %d nodes, %d ok, %d failed, %d skipped in %.1f s; down: %s; recovered: %s",
        len(result.results), result.ok, result.failed, len(result.skipped), result.seconds,
        ", ".join(result.went_down) or "none", ", ".join(result.recovered) or "none")
