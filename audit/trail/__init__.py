"""PACS Desk's own audit trail: events, the keyed chain, search and chain verification."""
