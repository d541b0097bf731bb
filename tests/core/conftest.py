"""Core tests log in as any role without an authenticator unless a test asks for MFA."""

from __future__ import annotations

import pytest


@pytest.fixture
def app_config(app_config: dict) -> dict:
    """The shared test configuration with no role required to use a second factor."""
    app_config["PACSDESK_MFA_REQUIRED_ROLES"] = frozenset()
    return app_config
