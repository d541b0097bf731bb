"""Accounts, roles, login and permission checks."""
