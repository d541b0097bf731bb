"""PACS Desk helpdesk."""
