"""PDF compliance reports."""
