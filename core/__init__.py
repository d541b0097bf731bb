"""Shared infrastructure of PACS Desk: extensions, configuration, accounts, time, CLI."""
