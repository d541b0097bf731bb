"""Verify the audit chain for a report, in a second process when the trail is large.

Walking a million events is CPU work in Python; in its own process it runs beside the
report's queries and layout instead of before them. PostgreSQL only: SQLite takes its
write lock for every transaction here, so a second reader would only queue the first.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
from typing import Any

from flask import current_app

from audit.chain import ChainVerification, verify_chain
from core.extensions import db

log = logging.getLogger(__name__)

PARALLEL_FROM = 200_000      # events; below this the process start costs more than it saves


def _child(config: dict[str, Any], connection: Any) -> None:
    """Process entry point: build the app on the same database and verify."""
    from app import create_app

    try:
        app = create_app(config)
        with app.app_context():
            connection.send(verify_chain())
            db.session.remove()
            db.engine.dispose()
    except Exception as exc:  # reported to the parent, which verifies itself
        connection.send(exc.__class__.__name__ + ": " + str(exc)[:200])
    finally:
        connection.close()


def _portable_config() -> dict[str, Any]:
    """The app's settings that can travel to another process."""
    portable = {}
    for key, value in current_app.config.items():
        try:
            pickle.dumps(value)
        except Exception:  # noqa: S112 - settings that cannot travel are rebuilt by the factory
            continue
        portable[key] = value
    return portable


class ChainCheck:
    """``verify_chain()``, started now and collected with ``result()``."""

    def __init__(self, event_count: int) -> None:
        self._process: Any = None
        self._receiver: Any = None
        if event_count < PARALLEL_FROM or db.session.get_bind().dialect.name != "postgresql":
            return
        context = multiprocessing.get_context("spawn")
        self._receiver, sender = context.Pipe(duplex=False)
        self._process = context.Process(target=_child, args=(_portable_config(), sender),
                                        name="report-chain-check", daemon=True)
        self._process.start()
        sender.close()

    def result(self, timeout: float = 600) -> ChainVerification:
        """The verification result; verifies here if the second process failed."""
        if self._process is None:
            return verify_chain()
        outcome: Any = None
        try:
            if self._receiver.poll(timeout):
                outcome = self._receiver.recv()
        except (EOFError, OSError):
            outcome = None
        finally:
            self._process.join(5)
            if self._process.is_alive():
                self._process.terminate()
        if isinstance(outcome, ChainVerification):
            return outcome
        log.warning("chain check in a second process failed (%s); verifying here", outcome)
        return verify_chain()
