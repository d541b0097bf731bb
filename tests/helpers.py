"""Test helpers: requirement checks that skip locally but fail where CI demands them."""

from __future__ import annotations

import os
import shutil

import pytest

ANSWER_TIMEOUT = 10.0
"""Timeout for a call that a test expects to be answered: a loaded machine must not make it a timeout."""

OVERRUN = 4.0
"""Seconds a timed-out call may end after its promise in a test, since two suites share two cores in CI.

Every silent or trickling peer in the tests holds far longer than that, so a call that ignored its
timeout still fails; the benchmarks measure how closely the promise is kept.
"""


def require(condition: bool, reason: str, env_flag: str) -> None:
    """Skip when ``condition`` is false, unless ``env_flag`` is set: then fail."""
    if condition:
        return
    if os.environ.get(env_flag) == "1":
        pytest.fail(f"{reason} ({env_flag}=1 makes this a failure, not a skip)")
    pytest.skip(reason)


def require_postgres() -> str:
    """The PostgreSQL test URL, or skip (PACSDESK_TEST_DATABASE_URL unset)."""
    url = os.environ.get("PACSDESK_TEST_DATABASE_URL")
    require(bool(url), "PACSDESK_TEST_DATABASE_URL is not set", "PACSDESK_REQUIRE_POSTGRES")
    assert url
    return url


def require_binary(name: str) -> str:
    """Path of an external program (dcmtk, Orthanc, chromium, slapd), or skip; /usr/sbin counts too."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    require(path is not None, f"{name} is not installed", "PACSDESK_REQUIRE_INTEGRATION")
    assert path
    return path


def fixture_event(object_type: str, *object_ids: object) -> None:
    """Audit rows a fixture wrote directly (the audit hook refuses unaudited changes), in its transaction."""
    from audit import record

    record("test.fixture", object_type=object_type, user=None, username="test-fixture",
           covers=[str(i) for i in object_ids])
