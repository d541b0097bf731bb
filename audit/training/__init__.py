"""Workforce training: courses, assignments and completions."""
