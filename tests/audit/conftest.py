"""Fixtures of the compliance tests (frozen clock, tampering, a scratch record class)."""

from tests.audit.compliance_fixtures import frozen, scratch_class, tamper

__all__ = ["frozen", "scratch_class", "tamper"]
