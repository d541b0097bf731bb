"""PACS Desk inventory."""
