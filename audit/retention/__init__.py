"""Retention: record classes, policies, legal holds and retention runs."""
