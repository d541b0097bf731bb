"""Fixtures of the compliance tests (frozen clock, tampering, a scratch record class, test actions)."""

import pytest
from flask import Flask

from core import audit_sink
from tests.audit.compliance_fixtures import TEST_ACTIONS, frozen, scratch_class, tamper

__all__ = ["frozen", "scratch_class", "tamper"]


@pytest.fixture
def app(app: Flask) -> Flask:
    """The app, with the test suite's own audit actions registered."""
    audit_sink.register_actions(app, TEST_ACTIONS)
    return app
