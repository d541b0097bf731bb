"""Verify the audit chain for a report, in a second process when the trail is large.

Walking a million events is CPU work in Python; in its own process it runs beside the
report's queries and layout instead of before them. PostgreSQL only: SQLite takes its
write lock for every transaction here, so a second reader would only queue the first.
The second process is ``python -m audit.reports.chaincheck``: settings in on stdin, the
result out on stdout (both pickled), so nothing of the calling program is re-run.
"""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
from typing import Any

from flask import current_app

from audit.trail.chain import ChainVerification, verify_chain
from core.extensions import db

log = logging.getLogger(__name__)

PARALLEL_FROM = 200_000      # events; below this the process start costs more than it saves


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
        self._process: subprocess.Popen[bytes] | None = None
        if event_count < PARALLEL_FROM or db.session.get_bind().dialect.name != "postgresql":
            return
        self._process = subprocess.Popen(
            [sys.executable, "-m", "audit.reports.chaincheck"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self._process.stdin is not None
        self._process.stdin.write(pickle.dumps(_portable_config()))
        self._process.stdin.close()
        self._process.stdin = None  # sent: communicate() must not touch it again

    def result(self, timeout: float = 600) -> ChainVerification:
        """The verification result; verifies here if the second process failed."""
        if self._process is None:
            return verify_chain()
        outcome: Any = None
        try:
            output, _ = self._process.communicate(timeout=timeout)
            outcome = pickle.loads(output) if output else None  # noqa: S301 - our own child
        except (subprocess.TimeoutExpired, pickle.UnpicklingError, EOFError) as exc:
            self._process.kill()
            outcome = repr(exc)
        if isinstance(outcome, ChainVerification):
            return outcome
        log.warning("chain check in a second process failed (%s); verifying here", outcome)
        return verify_chain()


def main() -> None:
    """Child entry point: build the app on the same database, verify, print the pickled result."""
    from app import create_app

    config = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - from the parent process
    app = create_app(config)
    with app.app_context():
        result: Any = verify_chain()
        db.session.remove()
        db.engine.dispose()
    sys.stdout.buffer.write(pickle.dumps(result))


if __name__ == "__main__":
    main()
